// Package tenancymetrics exports the toolkit's statistics to Prometheus (client_golang): requests
// by tenant and outcome, their latency by tenant, and, read at each scrape, the lookup cache's,
// the pool router's, the tenant-scoped cache's, the Redis limiter's and the catalog second level's
// counters, and (at most every Config.CatalogEvery) the tenants by status and isolation and the
// tenant line's targets by state.
//
//	metrics, _ := tenancymetrics.New(&tenancymetrics.Config{Lookup: lookups, Router: router})
//	prometheus.MustRegister(metrics)
//	handler := metrics.Middleware(tenancyMiddleware(rateLimit(bulkhead(app))))
//	http.Handle("/metrics", promhttp.Handler()) // behind your operators' authentication
//
// Cardinality is bounded by design: a tenant has series of its own (tenant="<slug>") only while it
// is among the Config.TopTenants busiest of the last Config.Window; every other tenant's requests
// count under tenant="_other", those refused before a tenant was resolved under "_none". The
// busiest are counted in bounded memory (at most ten counters per tenant chosen), and a tenant
// that leaves them has its series removed, so a million tenants never make a million series.
//
// The outcome label is served, or why the request was refused: no_tenant, reserved, unknown,
// suspended, not_ready, rate_limited, busy, unavailable, moving — from the problem tenancyhttp
// wrote (the middleware's response writer is a tenancyhttp.Observer) — or client_error and error
// by status for the application's own.
package tenancymetrics
