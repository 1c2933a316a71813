// Package tenancyriver makes River jobs (github.com/riverqueue/river) keep their tenant from the
// moment they are enqueued to the moment they run, with the guarantees of a request.
//
// Add Jobs' middleware to the River client:
//
//	jobs, err := tenancyriver.New(&tenancyriver.Config{Store: lookups}) // the cached lookup requests use
//	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
//		Schema:     tenancyriver.Schema, // where Migrate made River's tables
//		PollOnly:   true,                // see below: River's channels are open to tenants' SQL
//		Workers:    workers,
//		Middleware: jobs.Middleware(),
//		Queues:     map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 10}},
//	})
//
// Inserting a job from a context that carries a tenant (a request's, behind tenancyhttp) records
// the tenant's ID in the job's metadata (MetadataKey); inserting one without a tenant fails with
// tenancy.ErrNoTenant unless its kind is declared in Config.TenantLess, and metadata that names
// another tenant than the context's fails with ErrForgedTenant. When the job runs, the worker
// middleware looks its tenant up again and puts it in the job's context, so db.Tx in the worker
// is bound to it:
//
//   - an active tenant's job runs;
//   - a suspended (or provisioning) tenant's job is snoozed for Config.SuspendedSnooze, without
//     using an attempt, and runs once the tenant is resumed;
//   - a deleted tenant's job is cancelled (ErrTenantDeleted);
//   - a job naming a tenant the catalog does not have, or none when its kind needs one, is
//     discarded at once (ErrUnknownTenant, tenancy.ErrNoTenant);
//   - a catalog that cannot answer fails the attempt, which River retries.
//
// Each outcome is counted (Stats). Fairness, two ways, so one tenant's flood of jobs leaves the
// workers to the others: a tenant's jobs beyond Config.FloodAfter in a FloodWindow (100 in 10 s)
// are inserted at River's lowest priority, so other tenants' jobs are fetched first while the
// flood still runs at full speed when no one else has work; and at most Config.PerTenant jobs of
// one tenant run at once in a client (with Config.Limiter and Policy, also at most at its
// tenancyrate rate) — a job over either is snoozed, not failed. In
// TestOneTenantsFloodDoesNotStarveAnother (400 jobs of 20 ms of one tenant queued first, 6
// workers) another tenant's job started after about 0.8 s with 371 (the limit alone) or 299
// (the demotion alone) of the 400 still to run; with neither it ran after all 400, at 2.5 s.
// The demotion is what keeps the wait flat: with the running limit alone, each of the flood's
// queued jobs is fetched and snoozed once before a newer job of another tenant comes up, so the
// wait grows with the flood (3 s behind 2,000 jobs, 41 s behind 20,000, in a review); demoted, it
// is the time to fetch the flood's first FloodAfter (bench jobs: 36 ms behind 10,000). Both are
// per process: with several clients, a tenant may run PerTenant jobs in each.
//
// Transactional enqueue: a job enqueued inside a tenant's unit of work (Enqueue, in db.Tx) is a
// row of the tenant's own outbox table (add OutboxMigration to the tenant line), so it commits or
// rolls back with the tenant's data in every isolation model, and the runtime role needs no grant
// on River's tables. An Outbox moves committed rows into River: right after the unit in
// Outbox.Tx, on the commit's notification (shared and schema tenants) in Outbox.Run, and in a
// sweep of every tenant every minute, which recovers the rows a crash left between commit and
// drain. A row is never moved before its commit and leaves its outbox only once its job is in
// River: exactly once for shared and schema tenants (the row is deleted in the transaction that
// inserts the job), at least once for database tenants, whose outbox is in another database
// (each job carries its row's ID in its metadata under OutboxKey). The drains bind each tenant
// (the outbox is a tenant table: row-level security holds for an owner that is not a
// superuser). A row refused for good — a kind OutboxConfig.Kinds does not list or no worker
// knows, options River cannot take — stays in the outbox, logged once, and blocks none of the
// tenant's later jobs; a failure that may pass (the database, the network, the drain's time)
// stops the drain and leaves the rows for the next. A drain takes each row once, in order, so
// refused rows cannot make it go round. SQL in a tenant's unit can write any row into its own
// outbox: Kinds (required) lists the kinds tenants may enqueue, never a tenant-less one. Announcements of commits are coalesced per
// tenant and only wake drains of shared and schema tenants; each drain has a timeout, and the
// sweep runs beside them, draining several tenants at once (OutboxConfig.SweepConcurrency), so a
// tenant whose database does not answer holds up one drain, not the sweep. With OutboxConfig.DB (the runtime DB) database tenants' outboxes are
// drained through its pooled connections; without it, each such drain opens a connection.
//
// Set river.Config.PollOnly. River listens for commands — cancel a running job, pause every
// queue, resign the leader — on LISTEN/NOTIFY channels of its database, and NOTIFY needs no
// privilege: in the catalog's database, where shared and schema tenants' units of work run, SQL
// of any tenant could cancel other tenants' jobs or pause all of them. Polling (with a shorter
// FetchPollInterval, e.g. 100 ms) listens to nothing.
//
// Migrate creates River's tables with River's own migrator in the catalog's database, in a schema
// of their own (Schema). River's client logs in as the migration role; the runtime role, which
// tenants' units of work use, has no privilege on River's schema.
package tenancyriver
