package tenancytest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// NewCatalog gives t a database of its own (NewDatabase) with the tenant catalog migrated, and
// returns a pool on it (closed when t ends) and the catalog.
func NewCatalog(t testing.TB) (*pgxpool.Pool, *tenancycatalog.Catalog) {
	t.Helper()
	return catalogAt(t, NewDatabase(t))
}

// NewCatalog creates database on the private server (if it is not there), migrates the tenant
// catalog into it and returns a pool on it as postgres (closed when the test ends) and the
// catalog.
func (p *PrivatePostgres) NewCatalog(database string) (*pgxpool.Pool, *tenancycatalog.Catalog) {
	p.t.Helper()
	url := p.URL(database)
	if _, err := tenancyprovision.EnsureDatabase(context.Background(), url); err != nil {
		p.t.Fatalf("tenancytest: %v", err)
	}
	return catalogAt(p.t, url)
}

// catalogAt migrates the tenant catalog into the database at url and returns a pool on it
// (closed when t ends) and the catalog.
func catalogAt(t testing.TB, url string) (*pgxpool.Pool, *tenancycatalog.Catalog) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := tenancycatalog.MigrateCatalog(ctx, pool); err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	return pool, cat
}

// NewRuntimePool returns a pool on the database of admin (a pool of NewCatalog) that logs in as
// the runtime role, as tenant transactions must, adjusted by configure when it is not nil; it is
// closed when t ends.
func NewRuntimePool(t testing.TB, admin *pgxpool.Pool, configure func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	url, err := tenancypgx.RuntimeURL(admin.Config().ConnString())
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	pool, err := tenancypgx.NewRuntimePool(context.Background(), url, &tenancypgx.RuntimePoolOpts{Configure: configure})
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// WithKey returns a copy of cfg (nil for none) with Key set to the binding key of admin's catalog.
func WithKey(t testing.TB, admin *pgxpool.Pool, cfg *tenancypgx.Config) *tenancypgx.Config {
	t.Helper()
	c := tenancypgx.Config{}
	if cfg != nil {
		c = *cfg
	}
	key, err := tenancycatalog.ReadBindingKey(context.Background(), admin)
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	c.Key = key
	return &c
}

// NewDB returns a DB on a runtime pool (NewRuntimePool) of admin's database, with the catalog's
// binding key and the rest of cfg (nil for none); it is closed when t ends.
func NewDB(t testing.TB, admin *pgxpool.Pool, cfg *tenancypgx.Config) *tenancypgx.DB {
	t.Helper()
	db, err := tenancypgx.New(NewRuntimePool(t, admin, nil), WithKey(t, admin, cfg))
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// RuntimeServers returns servers with each URL's login replaced by the runtime role
// (tenancypgx.RuntimeURL): what a Router's pools log in with.
func RuntimeServers(t testing.TB, servers tenancycatalog.Servers) tenancycatalog.Servers {
	t.Helper()
	out := tenancycatalog.Servers{}
	for alias, url := range servers {
		r, err := tenancypgx.RuntimeURL(url)
		if err != nil {
			t.Fatalf("tenancytest: %v", err)
		}
		out[alias] = r
	}
	return out
}

// CreateTenant creates an active shared-model tenant slug with domains in cat, failing the test
// when it cannot.
func CreateTenant(t testing.TB, cat *tenancycatalog.Catalog, slug string, domains ...string) *tenancy.Tenant {
	t.Helper()
	tn, err := cat.Create(context.Background(), &tenancycatalog.CreateOpts{Slug: slug, Domains: domains})
	if err != nil {
		t.Fatalf("tenancytest: create %s: %v", slug, err)
	}
	return tn
}

// WaitFor polls cond until it holds, failing the test with what when it does not within limit.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// NewRouter returns a pool router on cfg, closed when the test ends. Without cfg.Servers it
// serves the local server's databases as the runtime role (RuntimeServers of AdminURL). Left
// zero, AcquireTimeout and ConnectTimeout are 30 seconds (testTimeouts). The runtime role exists
// on the local server once it returns (RuntimeRole).
func NewRouter(t testing.TB, cfg tenancyrouter.Config) *tenancyrouter.Router {
	t.Helper()
	RuntimeRole(t)
	testTimeouts(&cfg)
	if cfg.Servers == nil {
		cfg.Servers = RuntimeServers(t, tenancycatalog.Servers{tenancycatalog.DefaultServer: AdminURL()})
	}
	r, err := tenancyrouter.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// DropTenantDatabases drops what the catalog at url made on the local server outside its own
// database: the databases of its database tenants, and the template database of lines. It is for
// test cleanups, and does nothing where there is no catalog.
func DropTenantDatabases(t testing.TB, url string, lines *tenancymigrate.Config) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return
	}
	defer pool.Close()
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		return
	}
	byServer, err := cat.TenantDatabases(ctx)
	if err != nil {
		return // no catalog: nothing was made
	}
	for _, names := range byServer {
		for _, n := range names {
			DropDatabase(t, n)
		}
	}
	if m, err := tenancymigrate.New(pool, lines); err == nil {
		_ = tenancyprovision.DropTemplate(ctx, cat, tenancycatalog.DefaultServer, m)
	}
}

// RuntimeRole makes sure the runtime role exists on the local server (AdminURL), for a test that
// logs in as it without a catalog of its own: on a server no catalog migration has run on yet, it
// migrates a catalog (NewCatalog), which creates the role. Roles belong to the whole server, and
// the role stays.
func RuntimeRole(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	var exists bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1 AND rolcanlogin)`, tenancycatalog.DefaultRole).Scan(&exists)
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	if !exists {
		NewCatalog(t)
	}
}

// testTimeouts sets cfg's AcquireTimeout and ConnectTimeout, when zero, to 30 seconds instead of
// the router's 2: a test suite loads its machine far more than a service does, a connection slow
// to open counts toward the tenant's breaker, and a slow connection is not what most tests check.
func testTimeouts(cfg *tenancyrouter.Config) {
	for _, d := range []*time.Duration{&cfg.AcquireTimeout, &cfg.ConnectTimeout} {
		if *d == 0 {
			*d = 30 * time.Second
		}
	}
}
