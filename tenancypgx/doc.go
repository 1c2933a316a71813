// Package tenancypgx is the PostgreSQL side of tenancy, on pgx v5: the tenant catalog, its
// in-process lookup cache, and change notifications that keep every instance's cache current.
//
// The catalog lives in the schema "tenancy" of your database and is created by embedded, versioned
// migrations; MigrateCatalog applies them under an advisory lock, so many instances may start at once:
//
//	pool, _ := pgxpool.New(ctx, url)
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
