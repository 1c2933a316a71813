package tenancyprovision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancytest"
)

var tenantLine = fstest.MapFS{
	"0001_projects.sql": {Data: []byte(`CREATE TABLE projects (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
		name text NOT NULL, PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('projects');`)},
}

// bundle is a fresh database with the catalog and the tenant line in the shared schema.
type bundle struct {
	pool    *pgxpool.Pool
	catalog *tenancycatalog.Catalog
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool, cat := tenancytest.NewCatalog(t)
	return &bundle{pool: pool, catalog: cat}
}

// schemas is a bundle with a shared tenant and a provisioned schema tenant, and a DB.
type schemas struct {
	*bundle
	db         *tenancypgx.DB
	shared, s1 *tenancy.Tenant
}

func setupSchemas(t *testing.T) *schemas {
	t.Helper()
	b := setup(t)
	ctx := context.Background()
	m, err := tenancymigrate.New(b.pool, &tenancymigrate.Config{Tenant: tenantLine})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	sb := &schemas{bundle: b, db: tenancytest.NewDB(t, b.pool, nil), shared: tenancytest.CreateTenant(t, b.catalog, "shared-co")}
	s1, err := b.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "schema-one", Isolation: tenancy.IsolationSchema})
	if err != nil {
		t.Fatal(err)
	}
	if sb.s1, err = tenancyprovision.Provision(ctx, b.catalog, s1.ID, m, nil); err != nil {
		t.Fatal(err)
	}
	return sb
}

// A provisioning that fails removes what it made and records why; the tenant stays refused until
// a later Provision resumes it.
func TestProvisionFailureCleansUpAndResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	broken, _ := tenancymigrate.New(b.pool, &tenancymigrate.Config{Tenant: fstest.MapFS{
		"0001_projects.sql": tenantLine["0001_projects.sql"],
		"0002_broken.sql":   {Data: []byte(`ALTER TABLE nowhere ADD COLUMN x int`)},
	}})
	tn, err := b.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "fragile", Isolation: tenancy.IsolationSchema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tenancyprovision.Provision(ctx, b.catalog, tn.ID, broken, nil); err == nil {
		t.Fatal("provisioning with a broken tenant line succeeded")
	}
	got, _ := b.catalog.TenantByID(ctx, tn.ID)
	if got.Status != tenancy.StatusProvisioning || !strings.Contains(got.ProvisionError, "nowhere") {
		t.Fatalf("after a failed provisioning: %s %q", got.Status, got.ProvisionError)
	}
	if !errors.Is(got.Err(), tenancy.ErrTenantNotReady) {
		t.Fatalf("a half-made tenant is servable: %v", got.Err())
	}
	var exists bool
	b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, tenancycatalog.SchemaName(tn.ID)).Scan(&exists)
	if exists {
		t.Fatal("the failed provisioning left its schema behind")
	}
	if _, err := b.catalog.Resume(ctx, tn.ID); !errors.Is(err, tenancy.ErrTenantNotReady) {
		t.Fatalf("resume of a provisioning tenant: %v", err)
	}
	good, _ := tenancymigrate.New(b.pool, &tenancymigrate.Config{Tenant: tenantLine})
	got, err = tenancyprovision.Provision(ctx, b.catalog, tn.ID, good, nil)
	if err != nil || got.Status != tenancy.StatusActive || got.ProvisionError != "" {
		t.Fatalf("resumed provisioning: %+v, %v", got, err)
	}
	if _, err := tenancyprovision.Provision(ctx, b.catalog, tn.ID, good, nil); !errors.Is(err, tenancyprovision.ErrNotProvisioning) {
		t.Fatalf("provisioning an active tenant: %v", err)
	}
}

// Purge removes a deleted tenant's schema or shared rows and its catalog entry; a live tenant is
// refused, and another tenant's rows stay.
func TestPurge(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	ctx := context.Background()
	other := tenancytest.CreateTenant(t, sb.catalog, "other-shared")
	for _, tn := range []*tenancy.Tenant{sb.shared, other, sb.s1} {
		if _, err := sb.db.Exec(tenancy.WithTenant(ctx, tn), `INSERT INTO projects (name) VALUES ('p')`); err != nil {
			t.Fatal(err)
		}
	}
	if err := tenancyprovision.Purge(ctx, sb.catalog, sb.s1.ID); !errors.Is(err, tenancyprovision.ErrNotDeleted) {
		t.Fatalf("purging a live tenant: %v", err)
	}
	for _, tn := range []*tenancy.Tenant{sb.s1, sb.shared} {
		if _, err := sb.catalog.Delete(ctx, tn.ID); err != nil {
			t.Fatal(err)
		}
		if err := tenancyprovision.Purge(ctx, sb.catalog, tn.ID); err != nil {
			t.Fatalf("purge %s: %v", tn.Slug, err)
		}
		if _, err := sb.catalog.TenantByID(ctx, tn.ID); !errors.Is(err, tenancy.ErrTenantNotFound) {
			t.Fatalf("%s still in the catalog: %v", tn.Slug, err)
		}
	}
	var schemaLeft bool
	var sharedRows, otherRows int
	sb.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1),
		(SELECT count(*) FROM public.projects WHERE tenant_id = $2), (SELECT count(*) FROM public.projects WHERE tenant_id = $3)`,
		tenancycatalog.SchemaName(sb.s1.ID), sb.shared.ID, other.ID).Scan(&schemaLeft, &sharedRows, &otherRows)
	if schemaLeft || sharedRows != 0 {
		t.Fatalf("after purge: schema left %v, shared tenant's rows %d", schemaLeft, sharedRows)
	}
	if otherRows != 1 {
		t.Fatalf("purge took another tenant's rows: %d left, want 1", otherRows)
	}
}

// The same through database/sql.
