package tenancypgx_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrouter"
	"github.com/gotenancy/tenancy/tenancytest"
)

// provisionDatabaseTenant creates and provisions a database tenant; its database and the
// catalog's template are dropped when t ends.
func (sb *schemaBundle) provisionDatabaseTenant(t *testing.T, slug string) *tenancy.Tenant {
	t.Helper()
	ctx := context.Background()
	tn, err := sb.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: slug, Isolation: tenancy.IsolationDatabase})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tenancytest.DropDatabase(t, tenancycatalog.DatabaseName(tn.ID)) })
	t.Cleanup(func() {
		tenancyprovision.DropTemplate(context.Background(), sb.catalog, tenancycatalog.DefaultServer, sb.migrator)
	})
	start := time.Now()
	if tn, err = tenancyprovision.Provision(ctx, sb.catalog, tn.ID, sb.migrator, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("provisioned %s in %v", slug, time.Since(start))
	return tn
}

func TestDatabaseTenants(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	ctx := context.Background()
	d1 := sb.provisionDatabaseTenant(t, "db-one")
	d2 := sb.provisionDatabaseTenant(t, "db-two")
	if d1.Status != tenancy.StatusActive || d1.Server != tenancycatalog.DefaultServer || d1.Database != tenancycatalog.DatabaseName(d1.ID) {
		t.Fatalf("provisioned %+v", d1)
	}
	router := tenancytest.NewRouter(t, tenancyrouter.Config{Servers: tenancytest.RuntimeServers(t, tenancycatalog.Servers{tenancycatalog.DefaultServer: sb.url})})
	db := tenancytest.NewDB(t, sb.pool, &tenancypgx.Config{Router: router})

	all := []*tenancy.Tenant{sb.shared, sb.s1, d1, d2}
	for _, tn := range all {
		if _, err := db.Exec(as(tn), `INSERT INTO projects (name) VALUES ($1)`, tn.Slug); err != nil {
			t.Fatalf("%s: %v", tn.Slug, err)
		}
	}
	for _, tn := range all {
		var names []string
		err := db.Tx(as(tn), func(tx pgx.Tx) error {
			rows, _ := tx.Query(as(tn), `SELECT name FROM projects`)
			var err error
			names, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil || len(names) != 1 || names[0] != tn.Slug {
			t.Errorf("%s sees %v, %v; want only its own project", tn.Slug, names, err)
		}
	}
	// The rows are in the tenant's own database, under row-level security there too.
	var user string
	var n int
	if err := db.QueryRow(as(d1), `SELECT current_user, (SELECT count(*) FROM projects WHERE tenant_id <> $1)`, d1.ID).Scan(&user, &n); err != nil ||
		user != tenancycatalog.DefaultRole || n != 0 {
		t.Fatalf("inside d1's database: %s, %d foreign rows, %v", user, n, err)
	}
	if s := router.Stats(); s.Pools != 2 {
		t.Fatalf("router %+v, want one pool per database tenant", s)
	}

	// Migrations reach database tenants too.
	m2, err := tenancymigrate.New(sb.pool, &tenancymigrate.Config{Tenant: tenantLineV2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tenancyprovision.DropTemplate(context.Background(), sb.catalog, tenancycatalog.DefaultServer, m2)
	})
	res, err := m2.Migrate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	migrated := map[string]bool{}
	for _, r := range res.Targets {
		migrated[r.Name] = r.To == 2
	}
	for _, name := range []string{"shared", "schema-one", "schema-two", "db-one", "db-two"} {
		if !migrated[name] {
			t.Errorf("%s not migrated to 2: %+v", name, res.Targets)
		}
	}
	if err := db.QueryRow(as(d2), `SELECT count(*) FROM labels`).Scan(&n); err != nil {
		t.Fatalf("d2 after the migration: %v", err)
	}
	if p, _ := m2.Pending(ctx); len(p) != 0 {
		t.Fatalf("pending after the run: %+v", p)
	}

	// Purge drops the database.
	if _, err := sb.catalog.Delete(ctx, d2.ID); err != nil {
		t.Fatal(err)
	}
	router.Forget(d2.ID)
	if err := tenancyprovision.Purge(ctx, sb.catalog, d2.ID); err != nil {
		t.Fatal(err)
	}
	var exists bool
	sb.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, d2.Database).Scan(&exists)
	if exists {
		t.Fatal("purge left the tenant's database")
	}
	if err := db.QueryRow(as(d1), `SELECT count(*) FROM projects`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("control: d1 after d2's purge: %d, %v", n, err)
	}
	// Without a router, a database tenant is refused clearly.
	plain := tenancytest.NewDB(t, sb.pool, nil)
	if err := plain.Tx(as(d1), func(pgx.Tx) error { return nil }); !errors.Is(err, tenancypgx.ErrIsolationNotSupported) {
		t.Fatalf("database tenant without a router: %v", err)
	}
}

// database/sql reaches a database tenant's own database too.
func TestDatabaseTenantSQLTx(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	d := sb.provisionDatabaseTenant(t, "db-sql")
	router := tenancytest.NewRouter(t, tenancyrouter.Config{Servers: tenancytest.RuntimeServers(t, tenancycatalog.Servers{tenancycatalog.DefaultServer: sb.url})})
	db := tenancytest.NewDB(t, sb.pool, &tenancypgx.Config{Router: router})
	if err := db.SQLTx(as(d), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(as(d), `INSERT INTO projects (name) VALUES ('via database/sql')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(as(d), `SELECT count(*) FROM projects WHERE name = 'via database/sql'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("in the tenant's database: %d, %v", n, err)
	}
	var inCatalogDB int
	sb.pool.QueryRow(context.Background(), `SELECT count(*) FROM public.projects`).Scan(&inCatalogDB)
	if inCatalogDB != 0 {
		t.Fatalf("%d rows landed in the catalog's database instead", inCatalogDB)
	}
}

// The router is shared: code that acquires a tenant's connection with a check of its own — one
// that always passes — must not count as the checks of a DB, which still refuses a binding key
// that is not the tenant database's.
func TestRouterChecksAreEachCallers(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	ctx := context.Background()
	d1 := sb.provisionDatabaseTenant(t, "db-checked")
	router := tenancytest.NewRouter(t, tenancyrouter.Config{Servers: tenancytest.RuntimeServers(t, tenancycatalog.Servers{tenancycatalog.DefaultServer: sb.url})})

	lax := &tenancyrouter.Check{Run: func(context.Context, *pgx.Conn) error { return nil }}
	conn, release, err := router.Acquire(ctx, d1, lax)
	if err != nil {
		t.Fatal(err)
	}
	conn.Release()
	release(nil)

	otherPool, _ := tenancytest.NewCatalog(t) // another catalog: another binding key
	foreign, err := tenancypgx.New(tenancytest.NewRuntimePool(t, sb.pool, nil), tenancytest.WithKey(t, otherPool, &tenancypgx.Config{Router: router}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { foreign.Close() })
	if _, err := foreign.Exec(as(d1), `SELECT 1`); !errors.Is(err, tenancypgx.ErrBindingKeyMismatch) {
		t.Fatalf("a DB with another catalog's key on the tenant's database: %v, want ErrBindingKeyMismatch", err)
	}
	// Positive control: the catalog's own key is accepted there.
	own := tenancytest.NewDB(t, sb.pool, &tenancypgx.Config{Router: router})
	if _, err := own.Exec(as(d1), `SELECT 1`); err != nil {
		t.Fatalf("the catalog's key on its tenant's database: %v", err)
	}
}

// A database tenant whose database cannot be reached is tenancy.ErrTenantUnavailable through
// SQLTx too, as through Tx, and the failures open its breaker.
func TestDatabaseTenantSQLTxUnavailable(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	d := sb.provisionDatabaseTenant(t, "db-gone")
	router := tenancytest.NewRouter(t, tenancyrouter.Config{Servers: tenancytest.RuntimeServers(t, tenancycatalog.Servers{tenancycatalog.DefaultServer: sb.url}),
		FailureThreshold: 2, OpenFor: time.Minute})
	db := tenancytest.NewDB(t, sb.pool, &tenancypgx.Config{Router: router})
	count := func(tx *sql.Tx) error { var n int; return tx.QueryRow(`SELECT count(*) FROM projects`).Scan(&n) }
	if err := db.SQLTx(as(d), count); err != nil { // positive control: reachable, it works
		t.Fatalf("before the database goes: %v", err)
	}
	router.Forget(d.ID) // its pool drains: the next lease opens a new one
	tenancytest.DropDatabase(t, d.Database)
	for i := range 3 {
		if err := db.SQLTx(as(d), count); !errors.Is(err, tenancy.ErrTenantUnavailable) {
			t.Fatalf("attempt %d with the database gone: %v, want ErrTenantUnavailable", i+1, err)
		}
	}
	if s := router.Stats(); len(s.OpenBreakers) != 1 || s.OpenBreakers[0] != d.ID {
		t.Fatalf("router stats %+v: want the tenant's breaker open after its failures", s)
	}
}
