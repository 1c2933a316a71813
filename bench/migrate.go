package main

import (
	"context"
	"fmt"
	"strings"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
)

// benchTenantLine is ten migrations of the kind a real tenant line has: tables made tenant tables,
// columns, indexes, a constraint.
var benchTenantLine = func() fstest.MapFS {
	sqls := []string{
		`CREATE TABLE projects (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), name text NOT NULL,
			PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('projects');`,
		`CREATE TABLE tasks (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), project_id uuid NOT NULL,
			title text NOT NULL, PRIMARY KEY (tenant_id, id),
			FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)); SELECT tenancy.isolate('tasks');`,
		`ALTER TABLE tasks ADD COLUMN done boolean NOT NULL DEFAULT false;`,
		`CREATE INDEX tasks_project ON tasks (tenant_id, project_id);`,
		`CREATE TABLE comments (tenant_id uuid NOT NULL, id bigserial, task_id uuid NOT NULL, body text NOT NULL,
			PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('comments');`,
		`ALTER TABLE projects ADD COLUMN archived boolean NOT NULL DEFAULT false;`,
		`ALTER TABLE projects ADD CONSTRAINT projects_name_len CHECK (length(name) <= 200);`,
		`CREATE TABLE labels (tenant_id uuid NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, name)); SELECT tenancy.isolate('labels');`,
		`ALTER TABLE tasks ADD COLUMN due date;`,
		`CREATE INDEX tasks_due ON tasks (tenant_id, due) WHERE NOT done;`,
	}
	fs := fstest.MapFS{}
	for i, sql := range sqls {
		fs[fmt.Sprintf("%04d_step.sql", i+1)] = &fstest.MapFile{Data: []byte(sql)}
	}
	return fs
}()

// benchMigrate times the tenant line over many schema tenants from empty: the runner at its
// default workers against the same runner with one worker (the reference article's sequential
// loop, as migrate_schemas runs it), and the no-op run that follows against checking each tenant
// in turn.
func benchMigrate(ctx context.Context, e *env) ([]result, error) {
	pool, drop, err := benchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	n := 1000
	if e.quick {
		n = 100
	}
	m, err := tenancymigrate.New(pool, &tenancymigrate.Config{Tenant: benchTenantLine})
	if err != nil {
		return nil, err
	}
	if _, err := m.Migrate(ctx, &tenancymigrate.Opts{Tenant: true}); err != nil { // the shared schema
		return nil, err
	}
	// Two sets of n empty schema tenants, one per side.
	fmt.Fprintf(e.log, "migrate: making %d empty schema tenants\n", 2*n)
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		return nil, err
	}
	ids, err := emptySchemaTenants(ctx, cat, n, "seq", "par")
	if err != nil {
		return nil, err
	}
	slugs := func(side string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%d", side, i+1)
		}
		return out
	}
	run := func(side string, workers int) (time.Duration, error) {
		start := time.Now()
		res, err := m.Migrate(ctx, &tenancymigrate.Opts{Tenant: true, Slugs: slugs(side), Workers: workers})
		if err != nil {
			return 0, err
		}
		if len(res.Targets) != n {
			return 0, fmt.Errorf("%s: migrated %d tenants, want %d", side, len(res.Targets), n)
		}
		return time.Since(start), nil
	}
	seq, err := run("seq", 1)
	if err != nil {
		return nil, err
	}
	par, err := run("par", 0)
	if err != nil {
		return nil, err
	}

	// The no-op deploy: ours asks the ledger once; the baseline visits each tenant in turn.
	start := time.Now()
	res, err := m.Migrate(ctx, nil)
	if err != nil || len(res.Targets) != 0 {
		return nil, fmt.Errorf("no-op run: %v, %d targets", err, len(res.Targets))
	}
	noop := time.Since(start)
	start = time.Now()
	for _, id := range ids {
		var v int
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, `"tenant_`+id[:8]+id[9:13]+id[14:18]+id[19:23]+id[24:]+`"`); err != nil {
				return err
			}
			var err error
			v, err = tenancycatalog.LineVersion(ctx, tx, id)
			return err
		})
		if err != nil {
			return nil, err
		}
		if v != len(benchTenantLine) {
			return nil, fmt.Errorf("no-op loop: tenant %s at version %d, want %d", id, v, len(benchTenantLine))
		}
	}
	noopLoop := time.Since(start)
	fmt.Fprintf(e.log, "migrate: %d tenants × %d migrations: %.1f s with %d workers, %.1f s with one; no-op %.1f ms vs %.1f ms\n",
		n, len(benchTenantLine), par.Seconds(), min(2*gomaxprocs(), int(pool.Config().MaxConns)), seq.Seconds(),
		ms(noop), ms(noopLoop))
	name := fmt.Sprintf("%d-tenants-x10", n)
	return []result{
		{Scenario: "migrate", Metric: name, Unit: "s", Ours: par.Seconds(), Baseline: seq.Seconds(),
			BaselineName: "the same runner with one worker (the article's sequential loop)"},
		{Scenario: "migrate", Metric: fmt.Sprintf("noop-%d-tenants", n), Unit: "ms", Ours: ms(noop), Baseline: ms(noopLoop),
			BaselineName: "checking each tenant's version in turn"},
	}, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// emptySchemaTenants registers n active schema tenants per prefix (prefix-1 … prefix-n) and makes
// their empty schemas, as provisioning would before the tenant line. It returns their IDs.
func emptySchemaTenants(ctx context.Context, cat *tenancycatalog.Catalog, n int, prefixes ...string) ([]string, error) {
	var ids []string
	for _, side := range prefixes {
		for i := 1; i <= n; i++ {
			t, err := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: fmt.Sprintf("%s-%d", side, i), Isolation: tenancy.IsolationSchema})
			if err != nil {
				return nil, err
			}
			if err := cat.Activate(ctx, t.ID); err != nil {
				return nil, err
			}
			ids = append(ids, t.ID)
		}
	}
	var ddl strings.Builder
	for _, id := range ids {
		schema, err := tenancycatalog.QuotedSchema(id)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&ddl, "CREATE SCHEMA %s; GRANT USAGE ON SCHEMA %[1]s TO tenancy_app;\n", schema)
	}
	if _, err := cat.Pool().Exec(ctx, ddl.String()); err != nil {
		return nil, err
	}
	return ids, nil
}
