// Package tenancyrate limits request rates per tenant with GCRA (the generic cell rate
// algorithm): one 8-byte state per key, exact bursts and steady rates, "retry after" to the
// nanosecond — where the reference article keeps a list of timestamps per tenant.
//
//	limiter, _ := tenancyrate.NewMemoryLimiter(nil)           // bounded, no allocation per decision
//	policy := &tenancyrate.Policy{}                            // free: 100/min, pro: 1000/min, …
//	res, err := limiter.Allow(ctx, tenant.ID, policy.For(tenant))
//	if !res.Allowed { /* 429, Retry-After: res.RetryAfter */ }
//
// A tenant's limit is its own override (Tenant.RateLimit, `tenancy tenant set-limit acme
// 500/min`) or its plan's. Limits read and print as "100/min", "5/s", "1000/h", "50/10s", with an
// optional ",burst=N". tenancyredis.Limiter is the same algorithm on Redis, for limits shared by
// many instances; tenancyhttp.RateLimit puts either in front of handlers. MemoryLimiter.AllowAt
// takes the time as an argument, so tests never sleep.
package tenancyrate
