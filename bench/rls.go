package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
)

// benchRLS compares a point SELECT on a tenant table scoped by db.Tx (row-level security does
// the filtering) with the same SELECT in a plain transaction that filters by hand with
// WHERE tenant_id = $1, and the single-statement helper with a plain pool.QueryRow, on an indexed
// table of 1M rows over 1,000 tenants (100k over 100 with -quick). In the same run, alternating
// with them, it times the design before the hardening (the owner's login switching to the runtime
// role, a policy on the raw setting) and the hardened binding without the session reset, so each
// hardening step's cost shows.
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
	fmt.Fprintf(e.log, "rls: loading %d rows over %d tenants (twice: the table before the hardening too)\n", rows, tenants)
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
		ANALYZE items;
		-- The policy before the hardening: it trusted the raw setting.
		CREATE TABLE items_raw (LIKE items INCLUDING ALL);
		INSERT INTO items_raw SELECT * FROM items;
		ALTER TABLE items_raw ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
		CREATE POLICY tenant_isolation ON items_raw FOR ALL
			USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
			WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));
		GRANT SELECT ON items_raw TO tenancy_app;
		ANALYZE items_raw;`, tenants, rows))
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
	// The server's time in the binding's and the reset's functions, per call (pg_stat_user_functions):
	// where the scoped path's extra time goes on the server. Connections opened from now on count.
	if _, err := pool.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{pool.Config().ConnConfig.Database}.Sanitize()+" SET track_functions = 'pl'"); err != nil {
		return nil, err
	}
	runtimeURL, err := tenancypgx.RuntimeURL(pool.Config().ConnString())
	if err != nil {
		return nil, err
	}
	runtime, err := tenancypgx.NewRuntimePool(ctx, runtimeURL, nil)
	if err != nil {
		return nil, err
	}
	defer runtime.Close()
	key, err := tenancycatalog.ReadBindingKey(ctx, pool)
	if err != nil {
		return nil, err
	}
	db, err := tenancypgx.New(runtime, &tenancypgx.Config{Key: key})
	if err != nil {
		return nil, err
	}
	// The same with every statement tagged with its tenant (Config.TagStatements): each tenant's
	// text is a statement of its own to pgx's cache.
	tagged, err := tenancypgx.New(runtime, &tenancypgx.Config{Key: key, TagStatements: true})
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
	// beforeTx is db.Tx as it was before the hardening: the owner's pool, SET LOCAL ROLE and the
	// raw setting in the scoping statement, a policy on the raw setting, a bare COMMIT.
	beforeTx := func(p point) (string, error) {
		return scopedBatchTx(ctx, pool, `SELECT set_config('role', 'tenancy_app', true), set_config('app.tenant_id', $1, true)`,
			[]any{p.tenantID}, `SELECT payload FROM items_raw WHERE id = $1`, p.id, "COMMIT")
	}
	// bindingTx is the hardened binding (runtime login, proof, verified policy) without the
	// session reset: a bare COMMIT.
	bindingTx := func(p point) (string, error) {
		return scopedBatchTx(ctx, runtime, `SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true)`,
			[]any{p.tenantID, key.Proof(p.tenantID)}, `SELECT payload FROM items WHERE id = $1`, p.id, "COMMIT")
	}
	scopedOne := func(p point) (string, error) {
		var s string
		err := db.QueryRow(p.ctx, `SELECT payload FROM items WHERE id = $1`, p.id).Scan(&s)
		return s, err
	}
	taggedOne := func(p point) (string, error) {
		var s string
		err := tagged.QueryRow(p.ctx, `SELECT payload FROM items WHERE id = $1`, p.id).Scan(&s)
		return s, err
	}
	plainOne := func(p point) (string, error) {
		var s string
		err := pool.QueryRow(ctx, `SELECT payload FROM items WHERE tenant_id = $1 AND id = $2`, p.tenantID, p.id).Scan(&s)
		return s, err
	}
	beforeOne := func(p point) (string, error) {
		return scopedBatchOne(ctx, pool, `SELECT set_config('role', 'tenancy_app', true), set_config('app.tenant_id', $1, true)`,
			[]any{p.tenantID}, `SELECT payload FROM items_raw WHERE id = $1`, p.id)
	}
	bindingOne := func(p point) (string, error) {
		return scopedBatchOne(ctx, runtime, `SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true)`,
			[]any{p.tenantID, key.Proof(p.tenantID)}, `SELECT payload FROM items WHERE id = $1`, p.id)
	}

	// Same answers before timing: every scoped form finds the row the manual filter finds, and
	// the row of another tenant is not found.
	for _, p := range points[:50] {
		want, err := plainOne(p)
		if err != nil {
			return nil, err
		}
		for name, f := range map[string]func(point) (string, error){"Tx": scopedTx, "QueryRow": scopedOne, "tagged QueryRow": taggedOne,
			"before Tx": beforeTx, "before QueryRow": beforeOne, "binding Tx": bindingTx, "binding QueryRow": bindingOne} {
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
	tx, err := pairwise(pairs, points, plainTx, scopedTx, beforeTx, bindingTx)
	if err != nil {
		return nil, err
	}
	one, err := pairwise(pairs, points, plainOne, scopedOne, beforeOne, bindingOne, taggedOne)
	if err != nil {
		return nil, err
	}
	time.Sleep(1100 * time.Millisecond) // backends report their function statistics at most once a second
	fstats, err := pool.Query(ctx, `SELECT funcname, calls, self_time / calls * 1000 FROM pg_stat_user_functions
		WHERE schemaname = 'tenancy' AND calls > 0 ORDER BY funcname`)
	if err != nil {
		return nil, err
	}
	var name string
	var calls int64
	var us float64
	if _, err := pgx.ForEachRow(fstats, []any{&name, &calls, &us}, func() error {
		fmt.Fprintf(e.log, "rls: server time in tenancy.%s(): %.1f µs a call (%d calls)\n", name, us, calls)
		return nil
	}); err != nil {
		return nil, err
	}
	return []result{
		{Scenario: "rls", Metric: "tx-point-select", Unit: "ns/op", Ours: tx[1], Baseline: tx[0],
			BaselineName: "plain transaction, WHERE tenant_id = $1 by hand"},
		{Scenario: "rls", Metric: "single-statement", Unit: "ns/op", Ours: one[1], Baseline: one[0],
			BaselineName: "pool.QueryRow, WHERE tenant_id = $1 by hand"},
		{Scenario: "rls", Metric: "tx: before hardening", Unit: "ns/op", Ours: tx[2], Baseline: tx[0],
			BaselineName: "plain transaction (ours: SET LOCAL ROLE, raw setting, no reset)"},
		{Scenario: "rls", Metric: "tx: binding, no reset", Unit: "ns/op", Ours: tx[3], Baseline: tx[0],
			BaselineName: "plain transaction (ours: runtime login, verified binding, no reset)"},
		{Scenario: "rls", Metric: "one: before hardening", Unit: "ns/op", Ours: one[2], Baseline: one[0],
			BaselineName: "pool.QueryRow (ours: SET LOCAL ROLE, raw setting, no reset)"},
		{Scenario: "rls", Metric: "one: binding, no reset", Unit: "ns/op", Ours: one[3], Baseline: one[0],
			BaselineName: "pool.QueryRow (ours: runtime login, verified binding, no reset)"},
		{Scenario: "rls", Metric: "one: tagged statements", Unit: "ns/op", Ours: one[4], Baseline: one[1],
			BaselineName: "ours without TagStatements (ours: /* tenant=… */ before each statement)"},
	}, nil
}

// queryer is a pool.
type queryer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// scopedBatchTx runs BEGIN and the scoping statement in one round trip, the query, then end
// (COMMIT): a scoped transaction built by hand, for the hardening steps.
func scopedBatchTx(ctx context.Context, pool queryer, scope string, scopeArgs []any, query, id, end string) (string, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer c.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(scope, scopeArgs...)
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		return "", err
	}
	var s string
	if err := c.QueryRow(ctx, query, id).Scan(&s); err != nil {
		c.Exec(ctx, "ROLLBACK")
		return "", err
	}
	_, err = c.Exec(ctx, end)
	return s, err
}

// scopedBatchOne runs the scoping statement and the query in one pipeline (one implicit
// transaction), as the single-statement helper does, without the reset.
func scopedBatchOne(ctx context.Context, pool queryer, scope string, scopeArgs []any, query, id string) (string, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer c.Release()
	b := &pgx.Batch{}
	b.Queue(scope, scopeArgs...)
	b.Queue(query, id)
	br := c.SendBatch(ctx, b)
	var s string
	_, err = br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&s)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return s, err
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
