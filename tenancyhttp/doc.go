// Package tenancyhttp resolves the tenant of each HTTP request and refuses the requests that
// name none, with application/problem+json bodies (RFC 9457).
//
// Choose where the tenant's name comes from, in order; nothing is trusted by default:
//
//	mw, err := tenancyhttp.Middleware(store, &tenancyhttp.Config{
//		Resolvers: []tenancyhttp.Resolver{
//			tenancyhttp.FromSubdomain("example.com"), // acme.example.com
//			tenancyhttp.FromDomain(),                 // shop.acme.com, registered in the catalog
//			tenancyhttp.FromHeader("X-Tenant", netip.MustParsePrefix("10.0.0.0/8")), // internal callers only
//			tenancyhttp.FromPath("/t/"),              // /t/acme/projects, served as /projects
//		},
//		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, // may set X-Forwarded-Host
//	})
//	http.ListenAndServe(":8080", mw(app))
//
// Inside app, tenancy.MustFromContext(r.Context()) is the tenant. store is a tenancy.Store, usually
// a tenancycache.Lookup so that a request costs no query.
//
// Hosts are normalized strictly by NormalizeHost (lower case, port and one trailing dot removed,
// IDNA to ASCII); IP literals, the bare base domain, reserved labels (www, api, ...), malformed and
// empty hosts, and ports outside 1–65535 never name a tenant. X-Forwarded-Host counts only from
// TrustedProxies, and then its last value on its last line (the nearest proxy's): a client's own
// line never names the tenant. Refusals: 400 no or reserved tenant, 404 unknown (or deleted),
// 403 suspended, 503 when the catalog cannot answer — never served, never reported as unknown.
// ProblemFor and WriteProblem give handlers the same error bodies; ProblemFor also turns what
// PostgreSQL refuses because of a request's values (data exceptions, constraint violations) into
// 400 or 409, never 500.
//
// After Middleware, RateLimit limits each tenant's request rate (a tenancyrate.Limiter, in memory
// or on Redis; 429 with Retry-After and RateLimit headers) and ConcurrencyLimit keeps each
// tenant's requests in flight under a bound (503 with Retry-After), so a noisy tenant cannot
// slow the others:
//
//	rl, _ := tenancyhttp.RateLimit(&tenancyhttp.RateLimitConfig{Limiter: limiter})
//	bh, _ := tenancyhttp.ConcurrencyLimit(&tenancyhttp.ConcurrencyConfig{PerTenant: 32})
//	http.ListenAndServe(":8080", mw(rl(bh(app))))
//
// To log with the tenant, build the logger with tenancy.NewLogHandler and log with the request's
// context.
package tenancyhttp
