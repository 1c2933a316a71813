package tenancytest

import (
	"context"
	"fmt"
	"io/fs"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// Env is a database of the test's own with the catalog, a tenant migration line applied to the
// shared schema, and everything needed to make tenants of the three isolation models and run
// transactions as them. Everything it makes is dropped when the test ends.
type Env struct {
	// Pool logs in as the migration role: the catalog, migrations, provisioning.
	Pool *pgxpool.Pool
	// Runtime logs in as the runtime role: DB's transactions run on it.
	Runtime  *pgxpool.Pool
	Catalog  *tenancycatalog.Catalog
	Migrator *tenancymigrate.Migrator
	Router   *tenancyrouter.Router
	DB       *tenancypgx.DB

	n atomic.Int64
}

// EnvOpts configures NewEnv.
type EnvOpts struct {
	// Tenant is the tenant migration line (NNNN_name.sql files calling tenancy.isolate). Required.
	Tenant fs.FS
	// Router tunes the pool router of database tenants. Defaults to the router's defaults, but
	// for AcquireTimeout and ConnectTimeout: left zero, they are 30 seconds (as NewRouter's), since
	// a test suite loads its machine far more than a service does and a slow connection is not
	// what an isolation test checks.
	Router *tenancyrouter.Config
	// DB tunes the DB (its Key and Router are set by NewEnv). Defaults to nil.
	DB *tenancypgx.Config
}

// Models are the three isolation models, in the order the helpers run them.
var Models = []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationSchema, tenancy.IsolationDatabase}

// NewEnv makes an Env for t.
func NewEnv(t testing.TB, opts *EnvOpts) *Env {
	t.Helper()
	if opts == nil || opts.Tenant == nil {
		t.Fatal("tenancytest: NewEnv needs EnvOpts.Tenant, the tenant migration line")
	}
	ctx := context.Background()
	pool, cat := NewCatalog(t)
	e := &Env{Pool: pool, Catalog: cat}
	servers := tenancycatalog.Servers{tenancycatalog.DefaultServer: pool.Config().ConnString()}
	var err error
	if e.Migrator, err = tenancymigrate.New(pool, &tenancymigrate.Config{Tenant: opts.Tenant, Servers: servers}); err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	if _, err := e.Migrator.Migrate(ctx, nil); err != nil {
		t.Fatalf("tenancytest: migrate the shared schema: %v", err)
	}
	rc := tenancyrouter.Config{}
	if opts.Router != nil {
		rc = *opts.Router
	}
	testTimeouts(&rc)
	rc.Servers = RuntimeServers(t, servers)
	if e.Router, err = tenancyrouter.New(&rc); err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	t.Cleanup(func() { // before the database goes: the template, then the router's pools
		e.Router.Close()
		tenancyprovision.DropTemplate(context.Background(), cat, tenancycatalog.DefaultServer, e.Migrator)
	})
	dc := tenancypgx.Config{}
	if opts.DB != nil {
		dc = *opts.DB
	}
	dc.Router = e.Router
	e.DB = NewDB(t, pool, &dc)
	e.Runtime = e.DB.Pool()
	return e
}

// NewTenant makes, provisions and returns an active tenant of the given model (its schema or
// database dropped when t ends).
func (e *Env) NewTenant(t testing.TB, iso tenancy.Isolation) *tenancy.Tenant {
	t.Helper()
	ctx := context.Background()
	slug := fmt.Sprintf("%s-%d", iso, e.n.Add(1))
	tn, err := e.Catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: slug, Isolation: iso})
	if err != nil {
		t.Fatalf("tenancytest: create %s: %v", slug, err)
	}
	if iso == tenancy.IsolationDatabase {
		name := tenancycatalog.DatabaseName(tn.ID)
		t.Cleanup(func() { DropDatabase(t, name) })
	}
	if tn.Status == tenancy.StatusProvisioning {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if tn, err = tenancyprovision.Provision(pctx, e.Catalog, tn.ID, e.Migrator, nil); err != nil {
			t.Fatalf("tenancytest: provision %s: %v", slug, err)
		}
	}
	return tn
}

// Pair makes two tenants of a model: A and B.
func (e *Env) Pair(t testing.TB, iso tenancy.Isolation) (a, b *tenancy.Tenant) {
	t.Helper()
	return e.NewTenant(t, iso), e.NewTenant(t, iso)
}

// Context returns a context carrying tn.
func Context(tn *tenancy.Tenant) context.Context {
	return tenancy.WithTenant(context.Background(), tn)
}
