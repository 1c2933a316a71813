// Package tenancytest helps tests prove tenant isolation against the real services, for this
// project and for yours.
//
// NewEnv gives a test a database of its own with the catalog, your tenant migration line, a pool
// router and a DB; NewTenant provisions a tenant of any isolation model (a database tenant copies
// the migrated template); everything is dropped when the test ends, so tests run in parallel.
//
//	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: os.DirFS("migrations/tenant")})
//	a, b := env.Pair(t, tenancy.IsolationSchema)
//	err := env.DB.Tx(tenancytest.Context(a), func(tx pgx.Tx) error { … })
//
// RequireIsolated is the reference article's "most critical test", done so it cannot be fooled:
// give it how your code creates data and how it reads it, and it runs both as A and B of every
// model, failing with the model and the item when B lists, counts or reads anything of A's — and
// failing too when A cannot see its own, or nothing was made.
//
//	tenancytest.RequireIsolated(t, env, tenancytest.Isolated{
//		Create: func(ctx context.Context, db *tenancypgx.DB) ([]string, error) { … return ids, nil },
//		List:   func(ctx context.Context, db *tenancypgx.DB) ([]string, error) { … },
//		Get:    func(ctx context.Context, db *tenancypgx.DB, id string) (bool, error) { … },
//	})
//
// RequireIsolatedHTTP does the same through your HTTP API (see the reference service's
// TestReferenceServiceIsIsolated in internal/service), and RequireIsolatedJobs for your River job
// handlers (each tenant's job, run by a real River client with tenancyriver's middleware, must
// see its tenant's items and none of another's). LimiterSuite and CacheStoreSuite are
// the behaviour suites a tenancyrate.Limiter or tenancycache.Store must pass; StartRedis and
// StartPostgres run a private redis-server or PostgreSQL a test may stop or restart (with the
// catalog in one of its databases: PrivatePostgres.NewCatalog),
// StartPgBouncer a private PgBouncer in transaction mode; RoundTrips counts what a go-redis client
// sends.
//
// Env has two pools, as a real deployment does: Pool logs in as the migration role (catalog,
// migrations), Runtime as the runtime role tenant transactions run as — superusers and table
// owners bypass row-level security, so isolation is only proven as the runtime role.
// NewRuntimePool, WithKey and NewDB give your own tests the same on a catalog of NewCatalog.
// NewDatabase, NewCatalog, RuntimeServers, UniqueName, AdminURL and RedisURL are the building
// blocks (TEST_DATABASE_URL, TEST_REDIS_URL).
package tenancytest
