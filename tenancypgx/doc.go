// Package tenancypgx is the PostgreSQL side of tenancy, on pgx v5: transactions bound to a
// tenant (DB.Tx), the tenant catalog, its in-process lookup cache, change notifications that keep
// every instance's cache current, and the isolation audit behind `tenancy doctor`.
//
// # Transactions bound to the tenant
//
// Application code is written once, against one call; the tenant comes from the context:
//
//	db, _ := tenancypgx.New(pool, nil)
//	err := db.Tx(ctx, func(tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ($1)`, name) // tenant_id filled in
//		return err
//	})
//	var n int
//	err = db.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&n) // one round trip, this tenant's rows
//
// Tx runs as the runtime role (tenancy_app by default: NOLOGIN, not a superuser, no BYPASSRLS,
// owner of nothing) with app.tenant_id set; both are local to the transaction, so nothing leaks to
// the next user of a pooled connection, and it works behind PgBouncer in transaction mode. BEGIN
// and the scoping travel in one round trip. Without a tenant in the context, Tx and the helpers
// return tenancy.ErrNoTenant before any SQL runs. SQLTx gives database/sql users a *sql.Tx with the
// same guarantees. Code inside Tx is trusted not to RESET ROLE; for a wall against that too, let
// the pool log in as a runtime role itself (Config.PoolRoleIsRuntime).
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
// row-level security with one policy (USING and WITH CHECK) for every command, and grants the
// runtime role what it needs. A missing or empty tenant setting matches no row and refuses every
// insert. Lead unique keys and foreign keys with tenant_id so they reveal nothing across tenants.
// Audit (tenancy doctor) lists every hole it finds: tables without RLS, FORCE or a complete
// policy, keys without tenant_id, views without security_invoker, a runtime role that bypasses
// RLS, SECURITY DEFINER functions without a search_path.
//
// # Schema and database tenants
//
// Catalog.Provision makes a schema tenant's schema (tenant_ and its ID's hex) or a database
// tenant's database (copied from a migrated template) and applies the tenant line
// (tenancymigrate) before the tenant is active. Tx sets search_path to a schema tenant's schema
// alone, and serves a database tenant from its own pool through a Router: one pool per tenant,
// opened on first use, under a cap on pools and a budget of connections that are never exceeded,
// with idle reaping, LRU eviction, draining, and a per-tenant breaker that fails a tenant with an
// unreachable database fast (tenancy.ErrTenantUnavailable) without slowing the others.
//
//	router, _ := tenancypgx.NewRouter(&tenancypgx.RouterConfig{Servers: tenancypgx.Servers{"default": url}})
//	defer router.Close()
//	db, _ := tenancypgx.New(pool, &tenancypgx.Config{Router: router})
//
// # The catalog
//
// The catalog lives in the schema "tenancy" and is created by embedded, versioned migrations;
// MigrateCatalog applies them under an advisory lock, so many instances may start at once:
//
//	if _, err := tenancypgx.MigrateCatalog(ctx, pool); err != nil { ... }
//	catalog, _ := tenancypgx.NewCatalog(pool, nil)
//	acme, err := catalog.Create(ctx, &tenancypgx.CreateOpts{Slug: "acme", Name: "Acme Inc"})
//
// Request paths look tenants up through a CachedStore (bounded, TTL, a short negative TTL for
// unknown names, one query for N concurrent misses) that Catalog.Watch keeps current: every change
// to a tenant or its domains is NOTIFYed at commit and drops the stale entries on every instance
// within milliseconds; if the listener's connection breaks, the cache is purged on reconnect.
//
//	cache, _ := tenancypgx.NewCachedStore(catalog, nil)
//	go catalog.Watch(ctx, cache, nil)
//	t, err := cache.TenantBySlug(ctx, "acme") // tenancy.ErrTenantNotFound, or a real error: never confused
//
// EnsureDatabase creates the database a URL names when it is missing.
package tenancypgx
