// Package service is the reference service that `tenancy serve` runs: a multi-tenant projects and
// tasks API built on the toolkit's public packages only, as a user would build theirs. It is
// internal: the CLI and the tests use it; the benchmarks start the tenancy binary.
//
// The service (NewServer) resolves tenants from subdomains of --base-domain and from custom
// domains, limits each tenant's rate and requests in flight, serves the projects and tasks API
// (shared, schema and database tenants alike) and GET /whoami (the tenant's id, slug, name, plan,
// status and isolation: its placement is on the admin API only), GET /healthz with readiness
// (database, catalog change listener, Redis when configured), and the admin API under
// /admin/tenants when --admin-token is set:
//
//	GET    /admin/tenants[?status=S&all=1&limit=N&after=SLUG]
//	POST   /admin/tenants {"slug","name","plan","isolation","domains"}
//	GET    /admin/tenants/{slug}             DELETE /admin/tenants/{slug}
//	PATCH  /admin/tenants/{slug} {"name","plan"}
//	POST   /admin/tenants/{slug}/suspend     POST /admin/tenants/{slug}/resume
//	POST   /admin/tenants/{slug}/domains {"domain"}   DELETE /admin/tenants/{slug}/domains/{domain}
//	POST   /admin/tenants/{slug}/provision   PUT /admin/tenants/{slug}/rate-limit {"rate_limit"}
//	POST   /admin/tenants/{slug}/move {"to","server"} (202: runs in the background) or {"action": "resume"|"abort"|"finalize"}
//	GET    /admin/stats                      lookup caches, pool router, cache and Redis limiter counters
//
// The admin API, /metrics and the console answer 404 on a tenant's host (its subdomain, or a custom
// domain whose DNS the tenant may control): operators call them on the service's own name.
//
// The tenant list is paged by slug: at most limit tenants (100 by default, 1000 at most) after
// the slug after, and a Link header (rel="next") to the next page while one may follow.
//
// With the admin token set, /console/ is the operator console (console.go): server-rendered pages
// (html/template, embedded; no JavaScript) that list, search and filter the tenants, show one
// tenant (placement, domains, plan and limit, recent requests and refusals, pool, migrations,
// last move) and do the admin API's operations through forms, destructive ones after a
// confirmation page. Operators sign in with the admin token (10 attempts a minute per address);
// sessions are recorded in the catalog, so signing out ends them everywhere, and their cookie is
// signed with a key derived from the token; forms carry a CSRF token bound to the session, posts
// from another site are refused, every page is sent under Content-Security-Policy: default-src
// 'self', and no tenant's host (subdomain or custom domain) serves the console.
package service
