// Package tenancymigrate applies versioned SQL migrations across a multi-tenant database: a shared
// line applied once, and a tenant line applied to the shared schema (for every shared-model
// tenant at once) and to every schema-model tenant's schema — in parallel, each tenant in its own
// transaction under its own lock, resumable, with the state of every tenant in one ledger table
// of the catalog.
//
//	m, err := tenancymigrate.New(pool, &tenancymigrate.Config{
//		Shared: os.DirFS("migrations/shared"), // 0001_plans.sql, …
//		Tenant: os.DirFS("migrations/tenant"), // 0001_projects.sql, 0002_tasks.sql, …
//	})
//	res, err := m.Migrate(ctx, nil) // shared line, then every tenant; a *MigrateError lists failures
//	pending, err := m.Pending(ctx)  // one query, whatever the number of tenants
//
// Tenant-line files are written unqualified (CREATE TABLE projects …; SELECT
// tenancy.isolate('projects')): they run with search_path set to the target's schema. Versions run
// 1, 2, 3, … without gaps. A failing tenant keeps its previous version and the error (Status), the
// run goes on with the others, and running again applies only what is still pending. Two runners
// never migrate one tenant at once: the second skips it and says so.
//
// Migrator implements tenancyprovision.TenantMigrator, so tenancyprovision.Provision applies the tenant line to
// a new tenant's schema before the tenant is made active.
//
// Why not goose: goose keeps a version table in each target, so "is anything pending?" over
// 1,000 schemas is 1,000 queries where the ledger here needs one; it needs database/sql and a
// connection-wide search_path, where this package scopes search_path to each transaction; and its
// lock is per database, where a run here locks each tenant.
package tenancymigrate
