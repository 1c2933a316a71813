// Package cli is the tenancy command: the reference service (serve), tenant
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
// serve runs the reference service (internal/service) on the toolkit's library API: the CLI is
// one of its callers, not where the toolkit's behaviour lives.
package cli
