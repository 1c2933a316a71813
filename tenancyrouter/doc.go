// Package tenancyrouter serves database-model tenants, each from its own database: one pgx pool per
// tenant, opened on first use (concurrent first requests open one), under a cap on open pools and a
// budget of connections that are never exceeded; the least recently used idle pool makes room for
// a new one, idle pools close after IdleTimeout, a pool evicted while in use drains. A tenant whose
// database cannot be reached, or opens no connection within AcquireTimeout, fails fast
// (tenancy.ErrTenantUnavailable) once its breaker opens, without slowing the others; a request
// that finds every connection busy, or no room for a pool, within AcquireTimeout gets
// tenancy.ErrCapacityExhausted.
//
//	router, _ := tenancyrouter.New(&tenancyrouter.Config{Servers: tenancycatalog.Servers{"default": runtimeURL}})
//	defer router.Close()
//	db, _ := tenancypgx.New(runtime, &tenancypgx.Config{Key: key, Router: router})
//
// Its Servers are the runtime role's URLs (tenancy_app), never the migration role's: SQL inside a
// transaction has the rights of this login. tenancypgx acquires connections through Acquire with
// a Check of its own (the login role and binding key), run once per pool; another caller's Check
// never counts as it. Lease gives a tenant's pool to code that runs its own work on it.
package tenancyrouter
