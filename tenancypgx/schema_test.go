package tenancypgx_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
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

var tenantLineV2 = fstest.MapFS{
	"0001_projects.sql": tenantLine["0001_projects.sql"],
	"0002_labels.sql": {Data: []byte(`CREATE TABLE labels (tenant_id uuid NOT NULL, name text NOT NULL,
		PRIMARY KEY (tenant_id, name)); SELECT tenancy.isolate('labels');`)},
}

type schemaBundle struct {
	*bundle
	migrator       *tenancymigrate.Migrator
	db             *tenancypgx.DB
	shared, s1, s2 *tenancy.Tenant
}

// setupSchemas makes a shared tenant and two schema tenants, all carrying the tenant line.
func setupSchemas(t *testing.T) *schemaBundle {
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
	sb := &schemaBundle{bundle: b, migrator: m, shared: tenancytest.CreateTenant(t, b.catalog, "shared-co")}
	sb.s1 = sb.provisioned(t, "schema-one")
	sb.s2 = sb.provisioned(t, "schema-two")
	sb.db = tenancytest.NewDB(t, b.pool, nil)
	return sb
}

func (sb *schemaBundle) provisioned(t *testing.T, slug string) *tenancy.Tenant {
	t.Helper()
	ctx := context.Background()
	tn, err := sb.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: slug, Isolation: tenancy.IsolationSchema})
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = tenancyprovision.Provision(ctx, sb.catalog, tn.ID, sb.migrator, nil); err != nil {
		t.Fatal(err)
	}
	return tn
}

func as(t *tenancy.Tenant) context.Context { return tenancy.WithTenant(context.Background(), t) }

func TestSchemaTenantIsolation(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	for _, tn := range []*tenancy.Tenant{sb.shared, sb.s1, sb.s2} {
		if _, err := sb.db.Exec(as(tn), `INSERT INTO projects (name) VALUES ($1)`, tn.Slug+"'s project"); err != nil {
			t.Fatalf("%s: %v", tn.Slug, err)
		}
	}
	// Each tenant sees exactly its own project, wherever its rows live.
	for _, tn := range []*tenancy.Tenant{sb.shared, sb.s1, sb.s2} {
		rows, _ := sb.db.Query(as(tn), `SELECT name FROM projects`)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(names) != 1 || names[0] != tn.Slug+"'s project" {
			t.Errorf("%s sees %v, %v", tn.Slug, names, err)
		}
	}
	// The rows really are in the schemas: s1's schema holds one row, the shared table two... no,
	// one (the shared tenant's), as the owner sees them.
	var inSchema, inPublic int
	sb.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM `+tenancycatalog.SchemaName(sb.s1.ID)+`.projects),
		(SELECT count(*) FROM public.projects)`).Scan(&inSchema, &inPublic)
	if inSchema != 1 || inPublic != 1 {
		t.Fatalf("rows in s1's schema %d, in public %d; want 1 and 1", inSchema, inPublic)
	}

	// A schema-qualified query into another tenant's schema, or into the shared table, returns
	// nothing: row-level security holds there too.
	for _, q := range []string{
		`SELECT count(*) FROM ` + tenancycatalog.SchemaName(sb.s2.ID) + `.projects`,
		`SELECT count(*) FROM public.projects`,
	} {
		var n int
		if err := sb.db.QueryRow(as(sb.s1), q).Scan(&n); err != nil || n != 0 {
			t.Errorf("s1: %s = %d, %v; want 0", q, n, err)
		}
	}
	// Nor can s1 write there.
	if _, err := sb.db.Exec(as(sb.s1), `INSERT INTO `+tenancycatalog.SchemaName(sb.s2.ID)+`.projects (tenant_id, name) VALUES ($1, 'planted')`, sb.s2.ID); err == nil {
		t.Error("s1 planted a row in s2's schema")
	}
	// search_path is the tenant's schema alone: a table that exists only in public is not found.
	if _, err := sb.pool.Exec(context.Background(), `CREATE TABLE public.only_public (x int); GRANT SELECT ON public.only_public TO tenancy_app`); err != nil {
		t.Fatal(err)
	}
	err := sb.db.QueryRow(as(sb.s1), `SELECT count(*) FROM only_public`).Scan(new(int))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("a schema tenant fell through to public: %v", err)
	}
	if err := sb.db.QueryRow(as(sb.shared), `SELECT count(*) FROM only_public`).Scan(new(int)); err != nil {
		t.Fatalf("control: the shared tenant reads public: %v", err)
	}
}

// Mid-rollout, one schema has a column another lacks. The same SQL, prepared and cached per
// connection, runs against both on one connection, alternately: every call gets its own
// tenant's columns and rows, and no "cached plan must not change result type" reaches the caller.
func TestSchemaTenantsMidRolloutStatementCache(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	ctx := context.Background()
	if _, err := sb.pool.Exec(ctx, `ALTER TABLE `+tenancycatalog.SchemaName(sb.s1.ID)+`.projects ADD COLUMN archived boolean NOT NULL DEFAULT true`); err != nil {
		t.Fatal(err)
	}
	pool := tenancytest.NewRuntimePool(t, sb.pool, func(c *pgxpool.Config) { c.MaxConns = 1 })
	db, _ := tenancypgx.New(pool, tenancytest.WithKey(t, sb.pool, nil))
	for _, tn := range []*tenancy.Tenant{sb.s1, sb.s2} {
		if _, err := db.Exec(as(tn), `INSERT INTO projects (name) VALUES ($1)`, tn.Slug); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		tn, wantCols := sb.s1, 4
		if i%2 == 1 {
			tn, wantCols = sb.s2, 3
		}
		check := func(rows pgx.Rows, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("round %d as %s: %v", i, tn.Slug, err)
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				vals, err := rows.Values()
				if err != nil {
					t.Fatalf("round %d as %s: %v", i, tn.Slug, err)
				}
				if len(vals) != wantCols || vals[2] != tn.Slug {
					t.Fatalf("round %d as %s: row %v, want %d columns of its own row", i, tn.Slug, vals, wantCols)
				}
				n++
			}
			if err := rows.Err(); err != nil || n != 1 {
				t.Fatalf("round %d as %s: %d rows, %v", i, tn.Slug, n, err)
			}
		}
		if i%3 == 0 {
			check(db.Query(as(tn), `SELECT * FROM projects`))
			continue
		}
		err := db.Tx(as(tn), func(tx pgx.Tx) error {
			rows, err := tx.Query(as(tn), `SELECT * FROM projects`)
			check(rows, err)
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
}

func TestSchemaTenantsMidRolloutSQLTx(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	ctx := context.Background()
	t.Cleanup(func() { sb.db.Close() })
	if _, err := sb.pool.Exec(ctx, `ALTER TABLE `+tenancycatalog.SchemaName(sb.s1.ID)+`.projects ADD COLUMN archived boolean NOT NULL DEFAULT true`); err != nil {
		t.Fatal(err)
	}
	for _, tn := range []*tenancy.Tenant{sb.s1, sb.s2} {
		if _, err := sb.db.Exec(as(tn), `INSERT INTO projects (name) VALUES ($1)`, tn.Slug); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 8 {
		tn, wantCols := sb.s1, 4
		if i%2 == 1 {
			tn, wantCols = sb.s2, 3
		}
		err := sb.db.SQLTx(as(tn), func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(as(tn), `SELECT * FROM projects`)
			if err != nil {
				return err
			}
			defer rows.Close()
			cols, err := rows.Columns()
			if err != nil || len(cols) != wantCols {
				return fmt.Errorf("columns %v, %v; want %d", cols, err, wantCols)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if n != 1 {
				return fmt.Errorf("%d rows, want 1", n)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatalf("round %d as %s: %v", i, tn.Slug, err)
		}
	}
}

// A schema tenant's single statement is prepared under the tenant's search_path the first time it
// runs on a connection, and then takes one round trip, like a shared tenant's: two schema tenants
// alternating on one connection each get their own rows (and never the other's), in one round
// trip each once warm. A statement whose table changed shape fails once and is prepared again;
// a connection keeps at most a bounded number of them.
func TestSchemaTenantSingleStatementRoundTrips(t *testing.T) {
	t.Parallel()
	sb := setupSchemas(t)
	ctx := context.Background()
	var writes atomic.Int64
	pool := countingPool(t, sb.pool, &writes)
	db, _ := tenancypgx.New(pool, tenancytest.WithKey(t, sb.pool, nil))
	for _, tn := range []*tenancy.Tenant{sb.s1, sb.s2} {
		if _, err := db.Exec(as(tn), `INSERT INTO projects (name) VALUES ($1)`, tn.Slug); err != nil {
			t.Fatal(err)
		}
	}
	const query = `SELECT string_agg(name, ',') FROM projects`
	names := func(tn *tenancy.Tenant) (string, int64) {
		t.Helper()
		before := writes.Load()
		var got string
		if err := db.QueryRow(as(tn), query).Scan(&got); err != nil {
			t.Fatalf("%s: %v", tn.Slug, err)
		}
		return got, writes.Load() - before
	}
	for round := range 4 {
		for _, tn := range []*tenancy.Tenant{sb.s1, sb.s2} {
			got, trips := names(tn)
			if got != tn.Slug {
				t.Fatalf("round %d: %s sees %q; want its own row only", round, tn.Slug, got)
			}
			if round > 0 && trips != 1 {
				t.Errorf("round %d: %s's statement took %d round trips; want 1 once prepared", round, tn.Slug, trips)
			}
		}
	}

	// The table changes shape under the prepared statement: one failure, then it runs again.
	const star = `SELECT * FROM projects`
	if rows, err := db.Query(as(sb.s1), star); err != nil {
		t.Fatal(err)
	} else {
		rows.Close()
	}
	if _, err := sb.pool.Exec(ctx, `ALTER TABLE `+tenancycatalog.SchemaName(sb.s1.ID)+`.projects ADD COLUMN archived boolean NOT NULL DEFAULT false`); err != nil {
		t.Fatal(err)
	}
	var cols int
	for attempt := range 2 {
		rows, err := db.Query(as(sb.s1), star)
		if err == nil {
			_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (int, error) { cols = len(r.FieldDescriptions()); return cols, nil })
		}
		if err == nil {
			break
		}
		if attempt == 1 {
			t.Fatalf("the statement still fails after its table changed shape: %v", err)
		}
	}
	if cols != 4 {
		t.Fatalf("after the change: %d columns, want 4", cols)
	}

	// Many distinct statements: each answers for its own tenant; the connection keeps a bounded number.
	for k := range 80 {
		var n int
		if err := db.QueryRow(as(sb.s2), fmt.Sprintf(`SELECT count(*) + %d FROM projects`, k)).Scan(&n); err != nil || n != 1+k {
			t.Fatalf("statement %d: %d, %v; want %d", k, n, err, 1+k)
		}
	}
	var kept int
	if err := db.QueryRow(as(sb.shared), `SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'stmt\_%'`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if kept == 0 || kept > 64 {
		t.Fatalf("%d statements prepared by name on the connection; want some, at most 64", kept)
	}
}
