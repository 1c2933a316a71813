// Package tenancytest helps tests that need the real services: NewDatabase gives each test a
// database of its own on the PostgreSQL of TEST_DATABASE_URL (default: the local server as
// postgres) and drops it when the test ends, so tests run in parallel and leave nothing behind.
// NewCatalog does the same and migrates the tenant catalog in it. UniqueName names schemas and Redis
// key prefixes the same way; RedisURL reads TEST_REDIS_URL.
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		pool, _ := pgxpool.New(ctx, tenancytest.NewDatabase(t))
//		defer pool.Close()
//		...
//	}
package tenancytest
