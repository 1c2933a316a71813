package tenancymigrate_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/lockkey"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancytest"
)

var (
	sharedLine = fstest.MapFS{
		"0001_plans.sql": {Data: []byte(`CREATE TABLE plans (name text PRIMARY KEY); INSERT INTO plans VALUES ('free'), ('pro');`)},
	}
	tenantV1 = fstest.MapFS{
		"0001_projects.sql": {Data: []byte(`CREATE TABLE projects (tenant_id uuid NOT NULL, id serial, name text NOT NULL,
			PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('projects');`)},
	}
	tenantV2 = fstest.MapFS{
		"0001_projects.sql":    tenantV1["0001_projects.sql"],
		"0002_archived.sql":    {Data: []byte(`ALTER TABLE projects ADD COLUMN archived boolean NOT NULL DEFAULT false;`)},
		"README.md":            {Data: []byte("not a migration")},
		"0003_project_tag.sql": {Data: []byte(`CREATE TABLE tags (tenant_id uuid NOT NULL, tag text NOT NULL, PRIMARY KEY (tenant_id, tag)); SELECT tenancy.isolate('tags');`)},
	}
)

type bundle struct {
	pool    *pgxpool.Pool
	catalog *tenancycatalog.Catalog
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool, cat := tenancytest.NewCatalog(t)
	return &bundle{pool: pool, catalog: cat}
}

func newMigrator(t *testing.T, pool *pgxpool.Pool, tenant fstest.MapFS) *tenancymigrate.Migrator {
	t.Helper()
	m, err := tenancymigrate.New(pool, &tenancymigrate.Config{Shared: sharedLine, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// schemaTenant creates and provisions a schema tenant with m.
func (b *bundle) schemaTenant(t *testing.T, slug string, m *tenancymigrate.Migrator) *tenancy.Tenant {
	t.Helper()
	ctx := context.Background()
	tn, err := b.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: slug, Isolation: tenancy.IsolationSchema})
	if err != nil {
		t.Fatal(err)
	}
	if tn.Status != tenancy.StatusProvisioning {
		t.Fatalf("a new schema tenant is %s, want provisioning", tn.Status)
	}
	tn, err = tenancyprovision.Provision(ctx, b.catalog, tn.ID, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Status != tenancy.StatusActive {
		t.Fatalf("provisioned tenant is %s", tn.Status)
	}
	return tn
}

func columns(t *testing.T, pool *pgxpool.Pool, schema, table string) []string {
	t.Helper()
	rows, _ := pool.Query(context.Background(), `SELECT column_name::text FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func TestMigrateSharedAndTenants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m1 := newMigrator(t, b.pool, tenantV1)
	if _, err := m1.Migrate(ctx, &tenancymigrate.Opts{Shared: true, Tenant: true}); err != nil {
		t.Fatal(err)
	}
	acme, globex := b.schemaTenant(t, "acme", m1), b.schemaTenant(t, "globex", m1)
	for _, schema := range []string{"public", tenancycatalog.SchemaName(acme.ID), tenancycatalog.SchemaName(globex.ID)} {
		if got := fmt.Sprint(columns(t, b.pool, schema, "projects")); got != "[tenant_id id name]" {
			t.Fatalf("%s.projects has %s", schema, got)
		}
	}
	if cols := columns(t, b.pool, "public", "plans"); len(cols) != 1 {
		t.Fatalf("shared line not applied: plans %v", cols)
	}
	if p, err := m1.Pending(ctx); err != nil || len(p) != 0 {
		t.Fatalf("pending after provisioning: %+v, %v", p, err)
	}

	// A deploy with two new tenant migrations applies exactly them, everywhere.
	m3 := newMigrator(t, b.pool, tenantV2)
	p, err := m3.Pending(ctx)
	if err != nil || len(p) != 3 {
		t.Fatalf("pending before the deploy: %+v, %v; want shared, acme, globex", p, err)
	}
	res, err := m3.Migrate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SharedApplied) != 0 || len(res.Targets) != 3 {
		t.Fatalf("result %+v", res)
	}
	for _, r := range res.Targets {
		if fmt.Sprint(r.Applied) != "[2 3]" || r.From != 1 || r.To != 3 || r.Err != nil {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
	for _, schema := range []string{"public", tenancycatalog.SchemaName(acme.ID), tenancycatalog.SchemaName(globex.ID)} {
		if got := fmt.Sprint(columns(t, b.pool, schema, "projects")); got != "[tenant_id id name archived]" {
			t.Fatalf("%s.projects has %s", schema, got)
		}
	}
	// Nothing is pending: the next run touches no tenant.
	res, err = m3.Migrate(ctx, nil)
	if err != nil || len(res.Targets) != 0 {
		t.Fatalf("no-op run: %+v, %v", res, err)
	}
	st, err := m3.Status(ctx)
	if err != nil || len(st) != 3 {
		t.Fatalf("status %+v, %v", st, err)
	}
	for _, s := range st {
		if s.Version != 3 || s.Pending != 0 || s.LastError != "" {
			t.Errorf("status %+v", s)
		}
	}
}

func TestMigrateFailureIsPerTenantAndResumable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m1 := newMigrator(t, b.pool, tenantV1)
	if _, err := m1.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var tenants []*tenancy.Tenant
	for _, slug := range []string{"t1", "t2", "t3", "t4"} {
		tenants = append(tenants, b.schemaTenant(t, slug, m1))
	}
	// t3 has a table in the way of migration 3.
	bad := tenancycatalog.SchemaName(tenants[2].ID)
	if _, err := b.pool.Exec(ctx, `CREATE TABLE `+bad+`.tags (x int)`); err != nil {
		t.Fatal(err)
	}
	m3 := newMigrator(t, b.pool, tenantV2)
	res, err := m3.Migrate(ctx, &tenancymigrate.Opts{Tenant: true, Workers: 3})
	var merr *tenancymigrate.MigrateError
	if !errors.As(err, &merr) || len(merr.Failed) != 1 || merr.Failed[0].Name != "t3" {
		t.Fatalf("want a MigrateError naming t3, got %v", err)
	}
	for _, r := range res.Targets {
		wantErr := r.Name == "t3"
		if (r.Err != nil) != wantErr {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
	// t3 kept version 1 (its transaction rolled back whole: no archived column), and the error.
	if cols := fmt.Sprint(columns(t, b.pool, bad, "projects")); cols != "[tenant_id id name]" {
		t.Fatalf("t3 was half-migrated: %s", cols)
	}
	st, _ := m3.Status(ctx)
	for _, s := range st {
		switch {
		case s.Name == "t3" && (s.Version != 1 || s.Pending != 2 || s.LastError == ""):
			t.Errorf("t3 status %+v, want version 1, 2 pending and the error", s)
		case s.Name != "t3" && (s.Version != 3 || s.LastError != ""):
			t.Errorf("%s status %+v", s.Name, s)
		}
	}
	// Fixed, the next run migrates only t3.
	if _, err := b.pool.Exec(ctx, `DROP TABLE `+bad+`.tags`); err != nil {
		t.Fatal(err)
	}
	res, err = m3.Migrate(ctx, nil)
	if err != nil || len(res.Targets) != 1 || res.Targets[0].Name != "t3" || fmt.Sprint(res.Targets[0].Applied) != "[2 3]" {
		t.Fatalf("resume: %+v, %v", res, err)
	}
	if p, _ := m3.Pending(ctx); len(p) != 0 {
		t.Fatalf("still pending: %+v", p)
	}
}

func TestMigrateSkipsATenantAnotherRunnerHolds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m1 := newMigrator(t, b.pool, tenantV1)
	m1.Migrate(ctx, nil)
	held := b.schemaTenant(t, "held", m1)
	b.schemaTenant(t, "free", m1)
	// Another runner is migrating "held": it holds the tenant's lock in an open transaction.
	other, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('tenancy.migrate.' || $1, 0))`, held.ID); err != nil {
		t.Fatal(err)
	}
	m3 := newMigrator(t, b.pool, tenantV2)
	res, err := m3.Migrate(ctx, &tenancymigrate.Opts{Tenant: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Targets {
		if r.Skipped != (r.Name == "held") {
			t.Errorf("%s: skipped=%v", r.Name, r.Skipped)
		}
		if r.Name == "free" && r.To != 3 {
			t.Errorf("free was not migrated: %+v", r)
		}
	}
	other.Rollback(ctx)
	if res, err := m3.Migrate(ctx, nil); err != nil || len(res.Targets) != 1 || res.Targets[0].Name != "held" {
		t.Fatalf("after the other runner: %+v, %v", res, err)
	}
}

func TestMigrateDryRunAndOneTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m1 := newMigrator(t, b.pool, tenantV1)
	m1.Migrate(ctx, nil)
	acme, globex := b.schemaTenant(t, "acme", m1), b.schemaTenant(t, "globex", m1)
	m3 := newMigrator(t, b.pool, tenantV2)
	res, err := m3.Migrate(ctx, &tenancymigrate.Opts{Tenant: true, DryRun: true})
	if err != nil || !res.DryRun || len(res.Targets) != 3 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	for _, r := range res.Targets {
		if fmt.Sprint(r.Applied) != "[2 3]" {
			t.Errorf("dry run %s would apply %v", r.Name, r.Applied)
		}
	}
	if p, _ := m3.Pending(ctx); len(p) != 3 {
		t.Fatalf("a dry run changed the ledger: %d pending", len(p))
	}
	res, err = m3.Migrate(ctx, &tenancymigrate.Opts{Slugs: []string{"acme"}})
	if err != nil || len(res.Targets) != 1 || res.Targets[0].Name != "acme" {
		t.Fatalf("one tenant: %+v, %v", res, err)
	}
	if got := len(columns(t, b.pool, tenancycatalog.SchemaName(acme.ID), "projects")); got != 4 {
		t.Fatalf("acme not migrated: %d columns", got)
	}
	if got := len(columns(t, b.pool, tenancycatalog.SchemaName(globex.ID), "projects")); got != 3 {
		t.Fatalf("globex migrated though not asked: %d columns", got)
	}
	if _, err := m3.Migrate(ctx, &tenancymigrate.Opts{Slugs: []string{"nobody"}}); !errors.Is(err, tenancy.ErrTenantNotFound) {
		t.Fatalf("unknown slug: %v", err)
	}
}

func TestMigrateConcurrentRunners(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m1 := newMigrator(t, b.pool, tenantV1)
	m1.Migrate(ctx, nil)
	for i := range 6 {
		b.schemaTenant(t, fmt.Sprintf("t%d", i), m1)
	}
	m3 := newMigrator(t, b.pool, tenantV2)
	var wg sync.WaitGroup
	applied := make([]int, 3)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := m3.Migrate(ctx, nil)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range res.Targets {
				applied[i] += len(r.Applied)
			}
		}()
	}
	wg.Wait()
	if total := applied[0] + applied[1] + applied[2]; total > 7*2 {
		t.Fatalf("%d migrations applied by three runners over 7 targets needing 2 each: some twice", total)
	}
	// Runners that skipped leave work behind; one more run finishes it, and then nothing is pending.
	if _, err := m3.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := m3.Pending(ctx); len(p) != 0 {
		t.Fatalf("pending: %+v", p)
	}
}

func TestNewRefusesBadLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, line := range map[string]fstest.MapFS{
		"gap":        {"0001_a.sql": {Data: []byte("SELECT 1")}, "0003_c.sql": {Data: []byte("SELECT 1")}},
		"bad name":   {"first.sql": {Data: []byte("SELECT 1")}},
		"duplicated": {"0001_a.sql": {Data: []byte("SELECT 1")}, "0001_b.sql": {Data: []byte("SELECT 1")}},
	} {
		if _, err := tenancymigrate.New(b.pool, &tenancymigrate.Config{Tenant: line}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := tenancymigrate.New(b.pool, &tenancymigrate.Config{Tenant: tenantV2}); err != nil {
		t.Errorf("control: %v", err)
	}
}

// A runner that finds a database tenant's tenant line being migrated by another skips that tenant
// (and says so) instead of waiting and recording an error: its isolation support, installed
// first, takes a lock of its own.
func TestConcurrentRunnerSkipsADatabaseTenant(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: tenantV1})
	tn := env.NewTenant(t, tenancy.IsolationDatabase)
	other := env.NewTenant(t, tenancy.IsolationDatabase)
	cfg, err := env.Catalog.Servers().ConnConfig(tn.Server, tn.Database)
	if err != nil {
		t.Fatal(err)
	}
	// Another runner is inside tn's tenant line: it holds the line's lock in tn's database.
	holder, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_lock($1)", lockkey.TenantDatabase); err != nil {
		t.Fatal(err)
	}
	m, err := tenancymigrate.New(env.Pool, &tenancymigrate.Config{Tenant: tenantV2,
		Servers: tenancycatalog.Servers{tenancycatalog.DefaultServer: env.Pool.Config().ConnString()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := m.Migrate(ctx, &tenancymigrate.Opts{Tenant: true, Slugs: []string{tn.Slug, other.Slug}})
	if err != nil {
		t.Fatalf("a held tenant made the run fail: %v", err)
	}
	got := map[string]tenancymigrate.TargetResult{}
	for _, r := range res.Targets {
		got[r.Name] = r
	}
	if r := got[tn.Slug]; !r.Skipped || r.Error != "" {
		t.Fatalf("the held tenant: %+v, want skipped without an error", r)
	}
	if r := got[other.Slug]; r.Skipped || r.Version != 3 {
		t.Fatalf("control: the other tenant: %+v, want migrated to 3", r)
	}
}

// tenancy.isolate sends no NOTICE when it isolates a new table (its DROP … IF EXISTS would), and a
// database tenant's database made with an older isolation support (here, before 0017, which
// quiets it) is brought up to SupportVersion by the next tenant migration, which records it.
func TestIsolateIsQuietAndOlderSupportIsBroughtUp(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: tenantV1})
	tn := env.NewTenant(t, tenancy.IsolationDatabase)
	ctx := context.Background()
	cfg, err := env.Catalog.Servers().ConnConfig(tn.Server, tn.Database)
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	isolateNew := func(table string) []string {
		t.Helper()
		exec(`CREATE TABLE ` + table + ` (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id))`)
		notices = nil
		exec(`SELECT tenancy.isolate('` + table + `')`)
		return notices
	}
	exec(`DROP TABLE IF EXISTS no_such_table`) // positive control: this connection hears notices
	if len(notices) != 1 {
		t.Fatalf("notices of a DROP IF EXISTS: %q, want one", notices)
	}
	if n := isolateNew("quiet_a"); len(n) != 0 {
		t.Fatalf("isolating a new table sent %q, want no notice", n)
	}

	// The database back at the support before 0017: the function loses its setting, the
	// database's ledger the migration, the catalog's ledger the version.
	exec(`ALTER FUNCTION tenancy.isolate(regclass, name) RESET client_min_messages`)
	exec(`DELETE FROM tenancy.support_migrations WHERE version = 17`)
	if err := tenancycatalog.RecordLine(ctx, env.Pool, tenancycatalog.LineEntry{Target: tn.ID, TenantID: tn.ID, Version: 1, Support: 14}); err != nil {
		t.Fatal(err)
	}
	if n := isolateNew("loud_b"); len(n) == 0 {
		t.Fatal("control: before 0017 isolating a new table sent no notice")
	}
	m, err := tenancymigrate.New(env.Pool, &tenancymigrate.Config{Tenant: tenantV1,
		Servers: tenancycatalog.Servers{tenancycatalog.DefaultServer: env.Pool.Config().ConnString()}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Migrate(ctx, &tenancymigrate.Opts{Tenant: true, Slugs: []string{tn.Slug}})
	if err != nil || len(res.Targets) != 1 || res.Targets[0].Support != tenancycatalog.SupportVersion || res.Targets[0].Error != "" {
		t.Fatalf("migrate: %+v, %v; want the tenant brought to support %d", res, err, tenancycatalog.SupportVersion)
	}
	if n := isolateNew("quiet_c"); len(n) != 0 {
		t.Fatalf("after the migration, isolating a new table sent %q, want no notice", n)
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range st {
		if s.TenantID == tn.ID {
			found = true
			if s.Support != tenancycatalog.SupportVersion {
				t.Fatalf("status of the tenant: %+v, want support %d recorded", s, tenancycatalog.SupportVersion)
			}
		}
	}
	if !found {
		t.Fatalf("status %+v lists no target of the tenant", st)
	}
}
