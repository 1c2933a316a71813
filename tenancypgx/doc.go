// Package tenancypgx binds work to a tenant on PostgreSQL, with pgx v5: transactions (DB.Tx), the
// single-statement helpers and SQLTx for database/sql, the runtime pool they run on, and the guard
// of the runtime role. The catalog is tenancycatalog's, the pool router for database tenants
// tenancyrouter's, provisioning tenancyprovision's and the isolation audit tenancyaudit's.
//
// # Transactions bound to the tenant
//
// Application code is written once, against one call; the tenant comes from the context:
//
//	db, _ := tenancypgx.New(runtime, &tenancypgx.Config{Key: key})
//	err := db.Tx(ctx, func(tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ($1)`, name) // tenant_id filled in
//		return err
//	})
//	var n int
//	err = db.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&n) // one round trip, this tenant's rows
//
// Two logins. The migration role (the owner: catalog, migrations, provisioning, the change
// listener) and the runtime role tenancy_app, which tenant transactions run as: a login that is
// not a superuser, has no BYPASSRLS or CREATEROLE and is a member of no role, so SQL inside a
// transaction — an injection included — can never become anyone else (RESET ROLE stays
// tenancy_app). NewRuntimePool opens its pool (RuntimeURL derives its URL from the migration
// role's) and refuses an unsafe login (ErrUnsafeRuntimeRole); so does a DB's first transaction.
//
//	admin, _ := pgxpool.New(ctx, databaseURL)            // the migration role
//	tenancycatalog.MigrateCatalog(ctx, admin)
//	catalog, _ := tenancycatalog.NewCatalog(admin, nil)
//	key, _ := catalog.BindingKey(ctx)                     // only the owner can read it
//	url, _ := tenancypgx.RuntimeURL(databaseURL)          // the same server, as tenancy_app
//	runtime, _ := tenancypgx.NewRuntimePool(ctx, url, nil) // may point at PgBouncer
//	db, _ := tenancypgx.New(runtime, &tenancypgx.Config{Key: key})
//
// Every transaction sets app.tenant_id and app.tenant_proof, the HMAC of the id under the
// catalog's binding key (BindingKey), local to the transaction; BEGIN and the scoping travel in
// one round trip. Policies trust the tenant only through tenancy.current_tenant(), which checks
// the proof against the key — a table only its owner reads — so setting app.tenant_id to another
// tenant from inside is an error, never that tenant's rows. The unit of work ends with
// tenancy.reset_session() in the COMMIT's round trip (or after the ROLLBACK): held cursors,
// LISTEN, session advisory locks, session settings (RESET ALL), sequence state and temporary
// objects and statements prepared with SQL's PREPARE are gone, so the pooled connection goes back
// as it came; one that cannot be reset is closed. The reset's answer carries an HMAC of a fresh
// nonce under the binding key (tenancy.reset_session_proven), so a stand-in that SQL in the unit
// prepared under the reset statement's name cannot pass for it: the connection is closed (Tx and
// SQLTx send the reset and COMMIT as unnamed statements, which SQL cannot replace at all). A
// database tenant's connections serve no other tenant, so its units end with tenancy.end_unit:
// the same refusals, clearing and proof, without what only the next tenant needs (reseeding
// random(), counting the driver's statements). A unit of work that ends its own transaction (a
// COMMIT inside fn: what follows runs unbound) or changes a role (PostgreSQL lets a role ALTER
// itself) is refused and rolled back, with SQLSTATE TNCY1 or TNCY2, and its connection closed; a
// new runtime connection that starts with role defaults (its session's own settings are
// checked) is refused (ErrRoleDefaults) after removing them. Defaults a unit left before failing,
// or before ending its own session, are removed from a connection each DB opens for that on its
// first unit (one per pool, and per Router server). Runtime connections ask for no
// local_preload_libraries at start-up, which beats any role default, so no default can stop them
// from starting. GuardRuntimeRole, run in one
// instance on the migration role's pool, removes any left anyway and reports a changed password.
// A unit that DEALLOCATEs the driver's statements gets its connection closed.
// pgx's simple protocol is refused (it would show the proof in pg_stat_activity). The runtime
// role has no TEMP privilege at all. Without a tenant in the context, Tx and
// the helpers return tenancy.ErrNoTenant before any SQL runs. SQLTx gives database/sql users a
// *sql.Tx with the same guarantees.
//
// Behind PgBouncer in transaction mode, point the runtime pool (and the Router's Servers) at the
// pooler and keep the migration role's URL direct: NewRuntimePool notices the pooler and stops
// pgx from preparing statements by name. Give PgBouncer the connect_query of the README (which
// calls tenancy.check_session() with exit_on_error on): a server connection it opens that started
// with role defaults then ends itself.
//
// # Tenant tables
//
// A migration turns a table into a tenant table with one call, installed by MigrateCatalog:
//
//	CREATE TABLE projects (tenant_id uuid NOT NULL, id uuid DEFAULT gen_random_uuid(), name text,
//	                       PRIMARY KEY (tenant_id, id));
//	SELECT tenancy.isolate('projects');
//
// isolate gives tenant_id a default of the transaction's tenant, indexes it, enables and FORCEs
// row-level security with one policy (USING and WITH CHECK, on tenancy.current_tenant()) for
// every command, and grants the runtime role the table. It grants no sequence: a serial column
// becomes an identity column (which needs no grant) going on from the same value, because a
// sequence's last_value counts every tenant's rows. No tenant matches no row and refuses every
// insert; a forged one is an error. Lead unique keys and foreign keys with tenant_id so they
// reveal nothing across tenants. Reference data every tenant reads is declared shared,
//
//	SELECT tenancy.share('plans');
//
// which leaves the runtime role SELECT only. The package tenancyaudit (tenancy doctor) lists every
// hole it finds, by the meaning of each policy, not its text.
//
// # Schema and database tenants
//
// Tx sets search_path to a schema tenant's schema alone (made by tenancyprovision.Provision), and
// serves a database tenant from its own pool through a tenancyrouter.Router:
//
//	router, _ := tenancyrouter.New(&tenancyrouter.Config{Servers: tenancycatalog.Servers{"default": runtimeURL}})
//	defer router.Close()
//	db, _ := tenancypgx.New(runtime, &tenancypgx.Config{Key: key, Router: router, Store: lookups})
//
// With Config.Store (a tenancycache.Lookup), each transaction reads the tenant's current status, so
// work holding an old context stops when its tenant is suspended or deleted.
//
// # Tenants that move
//
// A tenant may move between placements while it is served (tenancymove). Every scoping statement
// of a unit that may write takes the tenant's move barrier shared, without waiting, and reads
// the fence of the placement (tenancy.fences); it refuses the tenant (SQLSTATE TNCY3) before the
// unit runs while a move's switch holds the barrier — the unit waits and is tried again, at most
// Config.MoveWait, then tenancy.ErrTenantMoving, nothing written — and once the fence says the
// tenant moved: with a Config.Store the tenant is looked up again (a lookup cache that has not
// heard of the switch is told) and the unit runs in the new placement. fn runs at most once.
// Reads are served through a switch when they say they only read:
//
//	err := db.ReadTx(ctx, func(tx pgx.Tx) error { … })                                 // BEGIN READ ONLY
//	err = db.QueryRow(ctx, `SELECT count(*) FROM projects`, tenancypgx.ReadOnly).Scan(&n) // as pgx takes a QueryExecMode
//
// # Traces
//
// Under a recording OpenTelemetry span in ctx (otelhttp's, say), Tx, ReadTx, SQLTx and the
// single-statement helpers start a child span (tenancy.Tx, tenancy.ReadTx, tenancy.SQLTx,
// tenancy.Query) with tenant.id, tenant.slug, tenant.isolation and db.system, and the unit's error
// as its status; without one they start none.
package tenancypgx
