// Package tenancyredis is the Redis side of tenancy, on go-redis v9: a distributed rate limiter
// for limits shared by many instances of a service.
//
//	rdb, _ := tenancyredis.NewClient("redis://127.0.0.1:6379/0") // timeouts of milliseconds
//	// or a Redis Cluster from its seed nodes: rdb, _ := tenancyredis.Connect("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
//	limiter, _ := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Instances: 4})
//	res, err := limiter.Allow(ctx, tenant.ID, policy.For(tenant))
//
// The Limiter runs tenancyrate's GCRA in one Lua script: one key per tenant and limit, with the
// tenant in a {hash tag} (Redis Cluster and Valkey put it on one slot), one round trip (EVALSHA),
// on Redis's own clock. While Redis cannot answer, LimiterConfig.OnFailure decides — by default
// the local memory limiter with the limit divided by Instances, or fail-open, or fail-closed —
// each such decision is counted (Stats), and Redis is asked again a second later. It accepts any
// redis.Scripter: *redis.Client, *redis.ClusterClient, redis.UniversalClient. The Limiter, Cache
// and CatalogStore are tested on a three-master Redis Cluster as on one server.
//
// Cache is a tenancycache.Store on Redis (a flush is one INCR of the tenant's generation), and
// CatalogStore a second level of tenant lookups shared by the instances, dropped whole on every
// catalog change. A drop Redis cannot take (down, flapping, refusing writes) never leaves an old
// answer in service: until a drop succeeds — retried in the background — every lookup goes to
// the catalog, so a suspended tenant is refused at once on every instance (Stats counts the
// bypassed lookups and failed drops).
package tenancyredis
