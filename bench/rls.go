package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"tenancy"
	"tenancy/tenancypgx"
)

// benchRLS compares a point SELECT on a tenant table scoped by db.Tx (row-level security does
// the filtering) with the same SELECT in a plain transaction that filters by hand with
// WHERE tenant_id = $1, and the single-statement helper with a plain pool.QueryRow, on an indexed
// table of 1M rows over 1,000 tenants (100k over 100 with -quick).
func benchRLS(ctx context.Context, e *env) ([]result, error) {
	pool, drop, err := benchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	rows, tenants := 1_000_000, 1_000
	if e.quick {
		rows, tenants = 100_000, 100
	}
	fmt.Fprintf(e.log, "rls: loading %d rows over %d tenants\n", rows, tenants)
	_, err = pool.Exec(ctx, fmt.Sprintf(`
		CREATE TABLE items (
			tenant_id uuid NOT NULL,
			id        uuid NOT NULL,
			payload   text NOT NULL,
			PRIMARY KEY (tenant_id, id)
		);
		SELECT tenancy.isolate('items');
		INSERT INTO items (tenant_id, id, payload)
		SELECT md5('tenant' || (i %% %d))::uuid, md5('item' || i)::uuid, md5(i::text)
		  FROM generate_series(1, %d) i;
		ANALYZE items;`, tenants, rows))
	if err != nil {
		return nil, err
	}
	type point struct {
		ctx      context.Context
		tenantID string
		id       string
	}
	var points []point
	sample, err := pool.Query(ctx, `SELECT tenant_id::text, id::text FROM items TABLESAMPLE SYSTEM (5) LIMIT 10000`)
	if err != nil {
		return nil, err
	}
	for sample.Next() {
		var p point
		if err := sample.Scan(&p.tenantID, &p.id); err != nil {
			return nil, err
		}
		p.ctx = tenancy.WithTenant(ctx, &tenancy.Tenant{ID: p.tenantID, Status: tenancy.StatusActive, Isolation: tenancy.IsolationShared})
		points = append(points, p)
	}
	if err := sample.Err(); err != nil || len(points) == 0 {
		return nil, fmt.Errorf("sample points: %v (%d)", err, len(points))
	}
	rand.Shuffle(len(points), func(i, j int) { points[i], points[j] = points[j], points[i] })
	db, err := tenancypgx.New(pool, nil)
	if err != nil {
		return nil, err
	}

	scopedTx := func(p point) (string, error) {
		var s string
		err := db.Tx(p.ctx, func(tx pgx.Tx) error {
			return tx.QueryRow(p.ctx, `SELECT payload FROM items WHERE id = $1`, p.id).Scan(&s)
		})
		return s, err
	}
	plainTx := func(p point) (string, error) {
		var s string
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT payload FROM items WHERE tenant_id = $1 AND id = $2`, p.tenantID, p.id).Scan(&s)
		})
		return s, err
	}
	scopedOne := func(p point) (string, error) {
		var s string
		err := db.QueryRow(p.ctx, `SELECT payload FROM items WHERE id = $1`, p.id).Scan(&s)
		return s, err
	}
	plainOne := func(p point) (string, error) {
		var s string
		err := pool.QueryRow(ctx, `SELECT payload FROM items WHERE tenant_id = $1 AND id = $2`, p.tenantID, p.id).Scan(&s)
		return s, err
	}

	// Same answers before timing: the scoped forms find the row the manual filter finds, and the
	// row of another tenant is not found.
	for _, p := range points[:50] {
		want, err := plainOne(p)
		if err != nil {
			return nil, err
		}
		for name, f := range map[string]func(point) (string, error){"Tx": scopedTx, "QueryRow": scopedOne} {
			if got, err := f(p); err != nil || got != want {
				return nil, fmt.Errorf("%s: %q, %v; want %q", name, got, err, want)
			}
		}
	}
	other := points[0]
	for _, p := range points {
		if p.tenantID != other.tenantID {
			other.ctx = p.ctx
			break
		}
	}
	if _, err := scopedOne(other); !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("another tenant's row: %v, want no rows", err)
	}

	pairs := 20_000
	if e.quick {
		pairs = 3_000
	}
	tx, err := pairwise(pairs, points, plainTx, scopedTx)
	if err != nil {
		return nil, err
	}
	one, err := pairwise(pairs, points, plainOne, scopedOne)
	if err != nil {
		return nil, err
	}
	return []result{
		{Scenario: "rls", Metric: "tx-point-select", Unit: "ns/op", Ours: tx[1], Baseline: tx[0],
			BaselineName: "plain transaction, WHERE tenant_id = $1 by hand"},
		{Scenario: "rls", Metric: "single-statement", Unit: "ns/op", Ours: one[1], Baseline: one[0],
			BaselineName: "pool.QueryRow, WHERE tenant_id = $1 by hand"},
	}, nil
}

// pairwise times n calls of each function, alternating them call by call on the same points, and
// returns each one's median latency in ns. Alternating cancels the drift of a shared machine that
// separate runs would attribute to one side; the median ignores scheduler hiccups.
func pairwise[P any](n int, points []P, fs ...func(P) (string, error)) ([]float64, error) {
	lat := make([][]time.Duration, len(fs))
	for i := range n {
		p := points[i%len(points)]
		for j := range fs {
			k := (i + j) % len(fs) // who goes first alternates too
			start := time.Now()
			if _, err := fs[k](p); err != nil {
				return nil, err
			}
			lat[k] = append(lat[k], time.Since(start))
		}
	}
	out := make([]float64, len(fs))
	for k := range fs {
		slices.Sort(lat[k])
		out[k] = float64(lat[k][len(lat[k])/2].Nanoseconds())
	}
	return out, nil
}
