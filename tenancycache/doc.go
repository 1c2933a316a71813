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
// with a Get, Set or flush in one round trip.
package tenancycache
