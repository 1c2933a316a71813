package main

import (
	"context"
	"fmt"
	"strings"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy/tenancyaudit"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
)

// auditTenantLine makes ten tenant tables, with the keys, references and serial column a real
// line has.
var auditTenantLine = func() fstest.MapFS {
	var b strings.Builder
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, `CREATE TABLE t%02d (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), n bigserial,
			name text NOT NULL, parent uuid, PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, name)`, i)
		if i > 1 {
			fmt.Fprintf(&b, `, FOREIGN KEY (tenant_id, parent) REFERENCES t%02d (tenant_id, id)`, i-1)
		}
		fmt.Fprintf(&b, "); SELECT tenancy.isolate('t%02d');\n", i)
	}
	return fstest.MapFS{"0001_tables.sql": {Data: []byte(b.String())}}
}()

// benchAudit times the isolation audit of a catalog database holding n schema tenants of ten
// tables each: ours (set-based queries, policies judged by their parsed expressions) against
// the per-table loop a hand-written check does (each table's RLS flags and policies in turn).
func benchAudit(ctx context.Context, e *env) ([]result, error) {
	pool, drop, err := benchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	n := 1000
	if e.quick {
		n = 100
	}
	m, err := tenancymigrate.New(pool, &tenancymigrate.Config{Tenant: auditTenantLine})
	if err != nil {
		return nil, err
	}
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(e.log, "audit: making %d schema tenants of 10 tables\n", n)
	if _, err := emptySchemaTenants(ctx, cat, n, "audit"); err != nil {
		return nil, err
	}
	if _, err := m.Migrate(ctx, &tenancymigrate.Opts{Tenant: true}); err != nil {
		return nil, err
	}
	if _, err := tenancyaudit.Audit(ctx, cat, nil); err != nil { // warm the catalog caches, as the baseline's first pass does below
		return nil, err
	}
	start := time.Now()
	rep, err := tenancyaudit.Audit(ctx, cat, nil)
	if err != nil {
		return nil, err
	}
	ours := time.Since(start)
	tables := rep.TenantTables()
	if tables != 10*(n+1) || !rep.OK() {
		return nil, fmt.Errorf("audit: %d tenant tables (want %d), %d findings", tables, 10*(n+1), len(rep.Findings))
	}

	loop := func() (time.Duration, error) {
		start := time.Now()
		rows, err := pool.Query(ctx, `SELECT c.oid FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
			JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind = 'r' AND s.nspname NOT IN ('pg_catalog', 'information_schema', 'tenancy')`)
		if err != nil {
			return 0, err
		}
		oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
		if err != nil {
			return 0, err
		}
		for _, oid := range oids {
			var rls, force bool
			if err := pool.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1`, oid).Scan(&rls, &force); err != nil {
				return 0, err
			}
			rows, err := pool.Query(ctx, `SELECT polname, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) FROM pg_policy WHERE polrelid = $1`, oid)
			if err != nil {
				return 0, err
			}
			rows.Close()
		}
		return time.Since(start), rows.Err()
	}
	if _, err := loop(); err != nil {
		return nil, err
	}
	base, err := loop()
	if err != nil {
		return nil, err
	}
	perTable := float64(ours.Microseconds()) / float64(tables)
	fmt.Fprintf(e.log, "audit: %d tenant tables (%d schema tenants × 10 and the shared schema's): %.0f ms, %.1f µs per table; per-table loop %.0f ms\n",
		tables, n, ms(ours), perTable, ms(base))
	name := fmt.Sprintf("%d-schema-tenants-x10", n)
	return []result{
		{Scenario: "audit", Metric: name, Unit: "ms", Ours: ms(ours), Baseline: ms(base),
			BaselineName: "each table's RLS flags and policies in turn (checks far less)"},
		{Scenario: "audit", Metric: "per-table", Unit: "µs", Ours: perTable, Baseline: float64(base.Microseconds()) / float64(tables),
			BaselineName: "each table's RLS flags and policies in turn (checks far less)"},
	}, nil
}
