package tenancypgx_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestIsolateVariants(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	ctx := context.Background()
	_, err := tb.pool.Exec(ctx, `
		CREATE TABLE labels (tenant_id text NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, name));
		SELECT tenancy.isolate('labels');
		SELECT tenancy.isolate('labels'); -- again: nothing breaks, nothing doubles
		CREATE TABLE events (id bigserial, what text NOT NULL);
		SELECT tenancy.isolate('events'); -- adds tenant_id, indexes it, grants the sequence`)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`INSERT INTO labels (name) VALUES ('red')`, `INSERT INTO events (what) VALUES ('login')`} {
		for _, c := range []context.Context{tb.ctxA, tb.ctxB} {
			if _, err := tb.db.Exec(c, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	for _, table := range []string{"labels", "events"} {
		var n int
		var tenant string
		if err := tb.db.QueryRow(tb.ctxA, `SELECT count(*), min(tenant_id::text) FROM `+table).Scan(&n, &tenant); err != nil || n != 1 || tenant != tb.a.ID {
			t.Errorf("%s as A: %d rows of tenant %s, %v; want 1 of A's", table, n, tenant, err)
		}
	}
	var policies, indexes int
	if err := tb.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_policy WHERE polrelid = 'labels'::regclass),
		(SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass)`).Scan(&policies, &indexes); err != nil {
		t.Fatal(err)
	}
	if policies != 1 || indexes != 1 {
		t.Fatalf("labels has %d policies (want 1), events %d indexes (want the tenant_id one)", policies, indexes)
	}
	if _, err := tb.pool.Exec(ctx, `CREATE TABLE odd (tenant_id int); SELECT tenancy.isolate('odd')`); err == nil ||
		!strings.Contains(err.Error(), "want uuid or text") {
		t.Fatalf("tenant_id of type int: %v", err)
	}
}

// The policy reads the tenant once per query, so the tenant_id index serves it.
func TestPolicyUsesTheIndex(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	insertNote(t, tb.db, tb.ctxA, "a")
	var plan string
	err := tb.db.Tx(tb.ctxA, func(tx pgx.Tx) error {
		if _, err := tx.Exec(tb.ctxA, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(tb.ctxA, `EXPLAIN SELECT body FROM notes`)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		plan = strings.Join(lines, "\n")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "Index") || !strings.Contains(plan, "InitPlan") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("the policy is not an index condition evaluated once:\n%s", plan)
	}
}
