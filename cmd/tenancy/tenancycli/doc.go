// Package tenancycli is the tenancy command: the reference service (serve), tenant
// administration (tenant, migrate) and the isolation audit (doctor). Run calls it with arguments and writers, so it is tested like
// any function; cmd/tenancy only wires it to the process.
//
//	tenancy serve --demo                         # the reference service on :8080, local PostgreSQL
//	tenancy tenant create acme --domain shop.acme.com
//	tenancy tenant create globex --isolation schema --migrations ./db   # or database [--server ALIAS]
//	tenancy tenant list --json
//	tenancy tenant update acme --plan pro
//	tenancy tenant set-limit acme 500/min
//	tenancy tenant suspend acme                  # refused on every instance within a second
//	tenancy tenant delete acme && tenancy tenant delete acme --purge --yes
//	tenancy migrate --shared --tenant --migrations ./db   # the catalog, your shared line, every tenant
//	tenancy migrate status --migrations ./db
//	tenancy doctor                               # isolation holes, catalog and tenant databases
//	tenancy uninstall --yes                      # every schema, database and template made, then the catalog
//
// --migrations (TENANCY_MIGRATIONS) names your lines (a directory with shared/ and tenant/), or
// "demo" for the reference service's; without it, commands apply the catalog alone, and creating a
// schema or database tenant is refused when its peers carry a tenant line.
//
// Every command reads --database-url or TENANCY_DATABASE_URL (default: DefaultDatabaseURL), the
// migration role's direct URL, and --servers or TENANCY_SERVERS for database tenants; tenant and
// migrate commands create the database and catalog when missing. serve also reads --runtime-url
// (TENANCY_RUNTIME_URL) and --runtime-servers (TENANCY_RUNTIME_SERVERS), where tenant
// transactions log in as tenancy_app — a PgBouncer in transaction mode may stand there — by
// default the direct URLs with the user tenancy_app. Errors are one line on stderr; the exit code
// is 1 when a command fails and 2 when it is called wrongly.
//
// The service (NewServer) resolves tenants from subdomains of --base-domain and from custom
// domains, limits each tenant's rate and requests in flight, serves the projects and tasks API
// (shared, schema and database tenants alike) and GET /whoami (the tenant's id, slug, name, plan,
// status and isolation: its placement is on the admin API only), GET /healthz with readiness
// (database, catalog change listener, Redis when configured), and the admin API under
// /admin/tenants when --admin-token is set:
//
//	GET    /admin/tenants[?status=S&all=1]   POST /admin/tenants {"slug","name","plan","isolation","domains"}
//	GET    /admin/tenants/{slug}             DELETE /admin/tenants/{slug}
//	PATCH  /admin/tenants/{slug} {"name","plan"}
//	POST   /admin/tenants/{slug}/suspend     POST /admin/tenants/{slug}/resume
//	POST   /admin/tenants/{slug}/domains {"domain"}   DELETE /admin/tenants/{slug}/domains/{domain}
//	POST   /admin/tenants/{slug}/provision   PUT /admin/tenants/{slug}/rate-limit {"rate_limit"}
//	GET    /admin/stats                      lookup caches, pool router, cache and Redis limiter counters
package tenancycli
