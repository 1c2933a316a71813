package tenancypgx_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

func TestSQLTx(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	idA := insertNote(t, tb.db, tb.ctxA, "A's note")
	countSQL := func(ctx context.Context) (n int) {
		t.Helper()
		if err := tb.db.SQLTx(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT count(*) FROM notes WHERE id = $1`, idA).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := countSQL(tb.ctxA); n != 1 {
		t.Fatalf("A through database/sql sees %d, want 1", n)
	}
	if n := countSQL(tb.ctxB); n != 0 {
		t.Fatalf("B through database/sql sees %d of A's rows, want 0", n)
	}
	if err := tb.db.SQLTx(context.Background(), func(*sql.Tx) error { return nil }); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Fatalf("no tenant: %v", err)
	}
	boom := errors.New("boom")
	if err := tb.db.SQLTx(tb.ctxB, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(tb.ctxB, `INSERT INTO notes (body) VALUES ('rolled back')`); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := tb.db.SQLTx(tb.ctxB, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(tb.ctxB, `INSERT INTO notes (tenant_id, body) VALUES ($1, 'planted')`, tb.a.ID)
		return err
	}); err == nil {
		t.Fatal("B planted a row in A through database/sql")
	}
	if got := count(t, tb.db, tb.ctxB, `SELECT count(*) FROM notes`); got != 0 {
		t.Fatalf("B has %d notes after a rollback and a refused insert, want 0", got)
	}
}

// A runtime role of the application's own, given the tenant tables by tenancy.isolate(table,
// role), gets the same isolation.
func TestCustomRuntimeRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	role := tenancytest.UniqueName("tenancy_login")
	if _, err := b.pool.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN NOSUPERUSER NOBYPASSRLS"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.pool.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		b.pool.Exec(context.Background(), "DROP ROLE "+pgx.Identifier{role}.Sanitize())
	})
	createNotes(t, b.pool)
	if _, err := b.pool.Exec(ctx, `SELECT tenancy.isolate('notes', $1)`, role); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(b.url)
	u.User = url.User(role)
	pool, err := tenancypgx.NewRuntimePool(ctx, u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db, err := tenancypgx.New(pool, tenancytest.WithKey(t, b.pool, nil))
	if err != nil {
		t.Fatal(err)
	}
	a, bt := tenancytest.CreateTenant(t, b.catalog, "tenant-a"), tenancytest.CreateTenant(t, b.catalog, "tenant-b")
	ctxA, ctxB := tenancy.WithTenant(ctx, a), tenancy.WithTenant(ctx, bt)
	if _, err := db.Exec(ctxA, `INSERT INTO notes (body) VALUES ('a')`); err != nil {
		t.Fatal(err)
	}
	var user string
	var n int
	if err := db.QueryRow(ctxA, `SELECT current_user, (SELECT count(*) FROM notes)`).Scan(&user, &n); err != nil || user != role || n != 1 {
		t.Fatalf("as A: user %s, %d notes, %v; want %s and 1", user, n, err, role)
	}
	if err := db.QueryRow(ctxB, `SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("as B: %d notes, %v; want 0", n, err)
	}
}
