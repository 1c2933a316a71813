// Package tenancycache is a tenant-scoped cache: the tenant comes from the context, so a handler
// cannot read or write another tenant's entries by passing the wrong ID — where the reference
// article's TenantCache takes the tenant by hand and builds prefix:tenant:key, which lets tenant
// "a:b" with key "c" meet tenant "a" with key "b:c".
//
//	store, _ := tenancycache.NewMemoryStore(nil) // or tenancyredis.NewCache(rdb, nil)
//	cache, _ := tenancycache.New(store, nil)
//	stats, err := tenancycache.GetOrLoad(ctx, cache, "stats", time.Minute, loadStats) // one load for N misses
//	cache.FlushTenant(ctx)                          // constant time, this tenant only
//	cache.ForTenant(id).FlushTenant(ctx)            // admin tools name the tenant explicitly
//
// Key(tenant, key) is the stored form and is injective (a fuzz test proves it). Flushing bumps the
// tenant's generation: entries of the old one are never read again, and a load that began before
// a flush cannot bring back what the flush dropped. MemoryStore is bounded in bytes overall and
// per tenant, so a noisy tenant evicts its own entries; tenancyredis.Cache is the same on Redis,
// with a Get, Set or flush in one round trip. Cache.Forget is the flush for
// tenancycatalog.Catalog.OnDeleted: a deleted tenant's entries go with it.
//
// # The tenant lookup cache
//
// Lookup puts an in-process cache in front of any tenancy.Store (the catalog, or its Redis second
// level): bounded, with a TTL, a short negative TTL for unknown names, and one load for N
// concurrent misses. It is a tenancy.Invalidator: tenancycatalog.Catalog.Watch keeps it current,
// so a change reaches every instance within milliseconds.
//
//	lookups, _ := tenancycache.NewLookup(catalog, nil)
//	go catalog.Watch(ctx, lookups, nil)
//	t, err := lookups.TenantBySlug(ctx, "acme") // tenancy.ErrTenantNotFound, or a real error: never confused
//	if err == nil {
//		err = t.Err() // a suspended, deleted or provisioning tenant is found, and refused here
//	}
//
// Like every tenancy.Store it returns a tenant whatever its status: the HTTP middleware and
// tenancypgx (with Config.Store) refuse what Tenant.Err refuses; code that looks tenants up
// itself — a job, a script — must do the same.
package tenancycache
