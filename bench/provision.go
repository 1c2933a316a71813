package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancyprovision"
)

// benchProvision times making a database tenant: ours copies the catalog's migrated template;
// the baseline makes an empty database and applies the tenant line to it, as provisioning without
// a template must. Both use the same ten-migration tenant line as the migrate scenario.
func benchProvision(ctx context.Context, e *env) ([]result, error) {
	pool, drop, err := benchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	m, err := tenancymigrate.New(pool, &tenancymigrate.Config{Tenant: benchTenantLine})
	if err != nil {
		return nil, err
	}
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		return nil, err
	}
	defer tenancyprovision.DropTemplate(context.Background(), cat, tenancycatalog.DefaultServer, m)
	n := 15
	if e.quick {
		n = 5
	}
	admin, err := pgx.ConnectConfig(ctx, mustConnConfig(pool.Config().ConnString(), "postgres"))
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	var made []string
	defer func() {
		for _, db := range made {
			admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
		}
	}()

	provision := func(i int) (time.Duration, error) {
		t, err := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: fmt.Sprintf("p%d", i), Isolation: tenancy.IsolationDatabase})
		if err != nil {
			return 0, err
		}
		made = append(made, tenancycatalog.DatabaseName(t.ID))
		start := time.Now()
		_, err = tenancyprovision.Provision(ctx, cat, t.ID, m, nil)
		return time.Since(start), err
	}
	plain := func(i int) (time.Duration, error) {
		name := fmt.Sprintf("tenancy_bench_plain_%d_%d", time.Now().UnixNano(), i)
		start := time.Now()
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return 0, err
		}
		made = append(made, name)
		conn, err := pgx.ConnectConfig(ctx, mustConnConfig(pool.Config().ConnString(), name))
		if err != nil {
			return 0, err
		}
		_, err = m.MigrateDatabase(ctx, conn)
		conn.Close(ctx)
		return time.Since(start), err
	}
	first, err := provision(0) // makes the template
	if err != nil {
		return nil, err
	}
	// Alternate the two, one by one, and keep each one's median: checkpoints on a shared machine
	// land on either side.
	var oursT, baseT []time.Duration
	for i := 1; i <= n; i++ {
		d, err := provision(i)
		if err != nil {
			return nil, err
		}
		oursT = append(oursT, d)
		if d, err = plain(i); err != nil {
			return nil, err
		}
		baseT = append(baseT, d)
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return ms(ds[len(ds)/2])
	}
	fmt.Fprintf(e.log, "provision: first database tenant (makes the template) %.1f ms; then median %.1f ms against %.1f ms without a template\n",
		ms(first), median(oursT), median(baseT))
	return []result{{Scenario: "provision", Metric: "database-tenant", Unit: "ms",
		Ours: median(oursT), Baseline: median(baseT),
		BaselineName: "empty database, then the 10-migration tenant line"}}, nil
}

func mustConnConfig(url, database string) *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		panic(err)
	}
	cfg.Database = database
	return cfg
}
