package tenancyriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// The transactional outbox: a job enqueued inside a tenant's unit of work (db.Tx) is a row of the
// tenant's own table tenancy_job_outbox, written in that transaction — so it commits or rolls
// back with the tenant's data, in every isolation model, and the runtime role needs no grant on
// River's tables. After the commit, the Outbox moves the rows into River (Drain, right after the
// unit in Outbox.Tx; on the commit's notification for shared and schema tenants, in Run; and
// every SweepEvery for every tenant, which recovers rows a crash left between the commit and the
// drain). A row is never seen before its commit, and leaves its outbox only once its job is in
// River: shared and schema tenants' outboxes are in River's database, and a row is deleted in
// the transaction that inserts its job (exactly once); a database tenant's outbox is in its own
// database, and its rows are deleted after their jobs are inserted (at least once: a crash
// between the two inserts the jobs again on the next drain; each job carries its row's ID in its
// metadata under OutboxKey for a worker that must not do its work twice).

// OutboxTable is the outbox's name in every placement.
const OutboxTable = "tenancy_job_outbox"

// OutboxKey is the metadata key of a job that came through the outbox: its row's ID there.
const OutboxKey = "tenancy_outbox"

// outboxChannel is where an enqueue's commit is announced in the catalog's database.
const outboxChannel = "tenancy_job_outbox"

// OutboxMigration makes the outbox: add it to your tenant migration line as a file of its own
// (NNNN_job_outbox.sql), so every placement — the shared schema, each tenant schema, each tenant
// database — has one, isolated like any tenant table.
const OutboxMigration = `-- The tenant's jobs, enqueued in its transactions, waiting to be moved into River (tenancyriver).
CREATE TABLE tenancy_job_outbox (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    kind       text        NOT NULL,
    args       jsonb       NOT NULL,
    opts       jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id)
);
SELECT tenancy.isolate('tenancy_job_outbox');
`

// outboxOpts are the insert options an outbox row keeps.
type outboxOpts struct {
	Queue       string          `json:"queue,omitempty"`
	Priority    int             `json:"priority,omitempty"`
	MaxAttempts int             `json:"max_attempts,omitempty"`
	ScheduledAt *time.Time      `json:"scheduled_at,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

// Enqueue records a job in the outbox of ctx's tenant, in tx — a transaction of that tenant's
// unit of work (db.Tx): the job commits or rolls back with it, and reaches River after the
// commit (see Outbox). The args' own InsertOpts apply, then opts' fields that are set; unique
// jobs are not supported through the outbox.
func Enqueue(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	t, ok := tenancy.FromContext(ctx)
	if !ok {
		return fmt.Errorf("%w: tenancyriver.Enqueue runs in a tenant's unit of work", tenancy.ErrNoTenant)
	}
	o := river.InsertOpts{}
	if withOpts, ok := args.(river.JobArgsWithInsertOpts); ok {
		o = withOpts.InsertOpts()
	}
	if opts != nil {
		if opts.Queue != "" {
			o.Queue = opts.Queue
		}
		if opts.Priority != 0 {
			o.Priority = opts.Priority
		}
		if opts.MaxAttempts != 0 {
			o.MaxAttempts = opts.MaxAttempts
		}
		if !opts.ScheduledAt.IsZero() {
			o.ScheduledAt = opts.ScheduledAt
		}
		if opts.Tags != nil {
			o.Tags = opts.Tags
		}
		if opts.Metadata != nil {
			o.Metadata = opts.Metadata
		}
		if !uniqueEmpty(opts.UniqueOpts) {
			return errors.New("tenancyriver: Enqueue: unique jobs are not supported through the outbox")
		}
	}
	if !uniqueEmpty(o.UniqueOpts) {
		return errors.New("tenancyriver: Enqueue: unique jobs are not supported through the outbox")
	}
	if named, has := tenantIn(o.Metadata); has && named != t.ID {
		return fmt.Errorf("%w: job %s", ErrForgedTenant, args.Kind())
	}
	encoded, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("tenancyriver: job %s: %w", args.Kind(), err)
	}
	keep := outboxOpts{Queue: o.Queue, Priority: o.Priority, MaxAttempts: o.MaxAttempts, Tags: o.Tags, Metadata: o.Metadata}
	if !o.ScheduledAt.IsZero() {
		at := o.ScheduledAt
		keep.ScheduledAt = &at
	}
	kept, err := json.Marshal(keep)
	if err != nil {
		return err
	}
	// The tenant's own table, by the unit's search_path: its schema, the shared one, its database.
	if _, err := tx.Exec(ctx, `INSERT INTO tenancy_job_outbox (tenant_id, kind, args, opts) VALUES ($1, $2, $3, $4)`,
		t.ID, args.Kind(), encoded, kept); err != nil {
		return fmt.Errorf("tenancyriver: enqueue %s: %w", args.Kind(), err)
	}
	// Heard at commit by Outbox.Run, for a placement in the catalog's database.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, outboxChannel, t.ID); err != nil {
		return fmt.Errorf("tenancyriver: enqueue %s: %w", args.Kind(), err)
	}
	return nil
}

func uniqueEmpty(u river.UniqueOpts) bool {
	return !u.ByArgs && u.ByPeriod == 0 && !u.ByQueue && u.ByState == nil && !u.ExcludeKind
}

// isUUID reports whether s is a UUID in its text form (a notification's payload is only that).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'):
			return false
		}
	}
	return true
}

// OutboxConfig configures an Outbox. Client and Catalog are required.
type OutboxConfig struct {
	// Client inserts the jobs into River: the application's client, with Jobs' middleware, on
	// the catalog's database.
	Client *river.Client[pgx.Tx]
	// Catalog finds the tenants and their placements; its pool (the migration role) reads and
	// empties the outboxes.
	Catalog *tenancycatalog.Catalog
	// SharedSchema is the schema of the shared tenants' tables (tenancymigrate.Migrator's
	// SharedSchema). Defaults to "public".
	SharedSchema string
	// SweepEvery is how often Run drains every tenant's outbox. Defaults to a minute.
	SweepEvery time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Outbox moves jobs enqueued in tenants' transactions (Enqueue) into River after they commit.
type Outbox struct {
	cfg OutboxConfig
}

// NewOutbox returns an Outbox.
func NewOutbox(cfg *OutboxConfig) (*Outbox, error) {
	if cfg == nil || cfg.Client == nil || cfg.Catalog == nil {
		return nil, errors.New("tenancyriver: NewOutbox needs Client and Catalog")
	}
	o := &Outbox{cfg: *cfg}
	if o.cfg.SharedSchema == "" {
		o.cfg.SharedSchema = "public"
	}
	if o.cfg.SweepEvery <= 0 {
		o.cfg.SweepEvery = time.Minute
	}
	if o.cfg.Logger == nil {
		o.cfg.Logger = slog.Default()
	}
	return o, nil
}

// Unit runs units of work: *tenancypgx.DB.
type Unit interface {
	Tx(ctx context.Context, fn func(pgx.Tx) error) error
}

// Tx runs fn in db.Tx for ctx's tenant and, once it committed, moves the jobs fn enqueued into
// River: when Tx returns nil they are in River — or, if that failed (logged), in the outbox, for
// Run's next drain.
func (o *Outbox) Tx(ctx context.Context, db Unit, fn func(pgx.Tx) error) error {
	t, ok := tenancy.FromContext(ctx)
	if !ok {
		return tenancy.ErrNoTenant
	}
	if err := db.Tx(ctx, fn); err != nil {
		return err
	}
	if _, err := o.Drain(ctx, t); err != nil {
		o.cfg.Logger.WarnContext(ctx, "tenancyriver: jobs committed but not yet moved into River; the outbox keeps them", "tenant", t.Slug, "err", err)
	}
	return nil
}

// drainBatch is how many rows one drain transaction moves.
const drainBatch = 500

// Drain moves tenant t's committed jobs from its outbox into River and returns how many it moved.
// Concurrent drains of one tenant each take rows no other holds.
func (o *Outbox) Drain(ctx context.Context, t *tenancy.Tenant) (int, error) {
	ctx = tenancy.WithTenant(ctx, t)
	total := 0
	for {
		var n int
		var err error
		if t.Isolation == tenancy.IsolationDatabase {
			n, err = o.drainDatabase(ctx, t)
		} else {
			n, err = o.drainCatalog(ctx, t)
		}
		total += n
		if err != nil || n < drainBatch {
			return total, err
		}
	}
}

// outboxIdent is the outbox of a tenant whose placement is in the catalog's database.
func (o *Outbox) outboxIdent(t *tenancy.Tenant) pgx.Identifier {
	if t.Isolation == tenancy.IsolationSchema {
		return pgx.Identifier{tenancycatalog.SchemaName(t.ID), OutboxTable}
	}
	return pgx.Identifier{o.cfg.SharedSchema, OutboxTable}
}

type outboxRow struct {
	id, kind string
	args     []byte
	opts     outboxOpts
}

// drainCatalog moves a batch of a shared or schema tenant's rows in one transaction with their
// jobs' insertion: exactly once.
func (o *Outbox) drainCatalog(ctx context.Context, t *tenancy.Tenant) (int, error) {
	tx, err := o.cfg.Catalog.Pool().Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	table := o.outboxIdent(t).Sanitize()
	rows, err := tx.Query(ctx, `DELETE FROM `+table+` WHERE tenant_id = $1 AND id IN (
		SELECT id FROM `+table+` WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING id::text, kind, args, opts`, t.ID, drainBatch)
	if err != nil {
		return 0, fmt.Errorf("tenancyriver: the outbox of %s: %w", t.Slug, err)
	}
	batch, err := collectOutbox(rows)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	if _, err := o.cfg.Client.InsertManyTx(ctx, tx, o.params(batch)); err != nil {
		return 0, fmt.Errorf("tenancyriver: the jobs of %s into River: %w", t.Slug, err)
	}
	return len(batch), tx.Commit(ctx)
}

// drainDatabase moves a batch of a database tenant's rows: their jobs are inserted, then the rows
// deleted (at least once).
func (o *Outbox) drainDatabase(ctx context.Context, t *tenancy.Tenant) (int, error) {
	cfg, err := o.cfg.Catalog.Servers().ConnConfig(t.Server, t.Database)
	if err != nil {
		return 0, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("tenancyriver: the database of %s: %w", t.Slug, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `SELECT id::text, kind, args, opts FROM `+OutboxTable+`
		WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`, t.ID, drainBatch)
	if err != nil {
		return 0, fmt.Errorf("tenancyriver: the outbox of %s: %w", t.Slug, err)
	}
	batch, err := collectOutbox(rows)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	if _, err := o.cfg.Client.InsertMany(ctx, o.params(batch)); err != nil {
		return 0, fmt.Errorf("tenancyriver: the jobs of %s into River: %w", t.Slug, err)
	}
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.id
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+OutboxTable+` WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, t.ID, ids); err != nil {
		return 0, fmt.Errorf("tenancyriver: the outbox of %s: %w", t.Slug, err)
	}
	return len(batch), tx.Commit(ctx)
}

func collectOutbox(rows pgx.Rows) ([]outboxRow, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
		var row outboxRow
		var opts []byte
		if err := r.Scan(&row.id, &row.kind, &row.args, &opts); err != nil {
			return row, err
		}
		return row, json.Unmarshal(opts, &row.opts)
	})
}

// params are the River insertions of outbox rows, each marked with its row's ID.
func (o *Outbox) params(batch []outboxRow) []river.InsertManyParams {
	out := make([]river.InsertManyParams, len(batch))
	for i, r := range batch {
		m := map[string]json.RawMessage{}
		if len(r.opts.Metadata) > 0 {
			_ = json.Unmarshal(r.opts.Metadata, &m) // written by Enqueue: an object
		}
		id, _ := json.Marshal(r.id)
		m[OutboxKey] = id
		meta, _ := json.Marshal(m)
		opts := &river.InsertOpts{Queue: r.opts.Queue, Priority: r.opts.Priority, MaxAttempts: r.opts.MaxAttempts,
			Tags: r.opts.Tags, Metadata: meta}
		if r.opts.ScheduledAt != nil {
			opts.ScheduledAt = *r.opts.ScheduledAt
		}
		out[i] = river.InsertManyParams{Args: rawArgs{kind: r.kind, raw: r.args}, InsertOpts: opts}
	}
	return out
}

// rawArgs are a job's arguments as the outbox kept them.
type rawArgs struct {
	kind string
	raw  json.RawMessage
}

func (a rawArgs) Kind() string                 { return a.kind }
func (a rawArgs) MarshalJSON() ([]byte, error) { return a.raw, nil }

// Sweep drains every tenant whose outbox holds jobs: the shared outbox in one query, then each
// schema and database tenant's. It returns how many jobs it moved, and the tenants' errors
// joined (one tenant's failure does not stop the others').
func (o *Outbox) Sweep(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	drain := func(t *tenancy.Tenant) {
		n, err := o.Drain(ctx, t)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	var ids []string
	rows, err := o.cfg.Catalog.Pool().Query(ctx, `SELECT DISTINCT tenant_id::text FROM `+pgx.Identifier{o.cfg.SharedSchema, OutboxTable}.Sanitize())
	if err == nil {
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("tenancyriver: the shared outbox: %w", err))
	}
	for _, id := range ids {
		t, err := o.cfg.Catalog.TenantByID(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t.Isolation == tenancy.IsolationShared { // a tenant that moved away takes its rows with it
			drain(t)
		}
	}
	for _, iso := range []tenancy.Isolation{tenancy.IsolationSchema, tenancy.IsolationDatabase} {
		err := o.cfg.Catalog.Each(ctx, &tenancycatalog.ListOpts{Isolation: iso}, func(t *tenancy.Tenant) error {
			if t.Status == tenancy.StatusActive || t.Status == tenancy.StatusSuspended {
				drain(t)
			}
			return ctx.Err()
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// Run drains a shared or schema tenant's outbox as soon as a commit that enqueued into it is
// announced, and sweeps every tenant's every SweepEvery (and once at start), until ctx ends.
func (o *Outbox) Run(ctx context.Context) error {
	sweep := time.NewTicker(o.cfg.SweepEvery)
	defer sweep.Stop()
	heard := make(chan string, 1024)
	go o.listen(ctx, heard)
	if _, err := o.Sweep(ctx); err != nil && ctx.Err() == nil {
		o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox sweep", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sweep.C:
			if _, err := o.Sweep(ctx); err != nil && ctx.Err() == nil {
				o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox sweep", "err", err)
			}
		case id := <-heard:
			t, err := o.cfg.Catalog.TenantByID(ctx, id)
			if err == nil {
				_, err = o.Drain(ctx, t)
			}
			if err != nil && ctx.Err() == nil && !errors.Is(err, tenancy.ErrTenantNotFound) {
				o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox drain", "tenant_id", id, "err", err)
			}
		}
	}
}

// listen passes on the tenant IDs announced on the outbox channel, reconnecting after a failure.
func (o *Outbox) listen(ctx context.Context, heard chan<- string) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := o.cfg.Catalog.Pool().Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, `LISTEN `+outboxChannel); err != nil {
				return err
			}
			defer conn.Exec(context.WithoutCancel(ctx), `UNLISTEN `+outboxChannel)
			for {
				n, err := conn.Conn().WaitForNotification(ctx)
				if err != nil {
					return err
				}
				if !isUUID(n.Payload) { // anyone may notify: only a tenant ID is heard
					continue
				}
				select {
				case heard <- n.Payload:
				default: // a burst: the next sweep finds what is dropped here
				}
			}
		}()
		if err != nil && ctx.Err() == nil {
			o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox listener", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
