package tenancypgx_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// bundle is a fresh database with the catalog migrated.
type bundle struct {
	url     string
	pool    *pgxpool.Pool
	catalog *tenancycatalog.Catalog
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool, cat := tenancytest.NewCatalog(t)
	return &bundle{url: pool.Config().ConnString(), pool: pool, catalog: cat}
}

// tenantBundle is a database with the catalog, tenants A and B, and one tenant table, notes.
type tenantBundle struct {
	*bundle
	db   *tenancypgx.DB
	a, b *tenancy.Tenant
	ctxA context.Context
	ctxB context.Context
}

func setupTenants(t *testing.T, cfg *tenancypgx.Config) *tenantBundle {
	t.Helper()
	b := setup(t)
	createNotes(t, b.pool)
	db := tenancytest.NewDB(t, b.pool, cfg)
	tb := &tenantBundle{bundle: b, db: db, a: tenancytest.CreateTenant(t, b.catalog, "tenant-a"), b: tenancytest.CreateTenant(t, b.catalog, "tenant-b")}
	tb.ctxA = tenancy.WithTenant(context.Background(), tb.a)
	tb.ctxB = tenancy.WithTenant(context.Background(), tb.b)
	return tb
}

func createNotes(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		CREATE TABLE notes (
			tenant_id uuid NOT NULL,
			id        uuid NOT NULL DEFAULT gen_random_uuid(),
			body      text NOT NULL,
			PRIMARY KEY (tenant_id, id)
		);
		SELECT tenancy.isolate('notes');
		CREATE TABLE note_tags (
			tenant_id uuid NOT NULL,
			note_id   uuid NOT NULL,
			tag       text NOT NULL,
			PRIMARY KEY (tenant_id, note_id, tag),
			FOREIGN KEY (tenant_id, note_id) REFERENCES notes (tenant_id, id) ON DELETE CASCADE
		);
		SELECT tenancy.isolate('note_tags');`)
	if err != nil {
		t.Fatal(err)
	}
}

// insertNote inserts a note as the tenant in ctx (never naming the tenant) and returns its id.
func insertNote(t *testing.T, db *tenancypgx.DB, ctx context.Context, body string) string {
	t.Helper()
	var id string
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO notes (body) VALUES ($1) RETURNING id::text`, body).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO note_tags (note_id, tag) VALUES ($1, 'secret')`, id)
		return err
	})
	if err != nil {
		t.Fatalf("insert note: %v", err)
	}
	return id
}

func count(t *testing.T, db *tenancypgx.DB, ctx context.Context, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Tx(ctx, func(tx pgx.Tx) error { return tx.QueryRow(ctx, query, args...).Scan(&n) }); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestTxIsolation(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	idA := insertNote(t, tb.db, tb.ctxA, "A's secret")

	reads := []struct {
		name  string
		query string
		args  []any
	}{
		{"list", `SELECT count(*) FROM notes`, nil},
		{"get by id", `SELECT count(*) FROM notes WHERE id = $1`, []any{idA}},
		{"by A's tenant_id", `SELECT count(*) FROM notes WHERE tenant_id = $1`, []any{tb.a.ID}},
		{"join", `SELECT count(*) FROM notes n JOIN note_tags g ON g.note_id = n.id AND g.tenant_id = n.tenant_id`, nil},
		{"subquery", `SELECT count(*) FROM note_tags WHERE note_id IN (SELECT id FROM notes WHERE body LIKE '%secret%')`, nil},
		{"aggregate", `SELECT count(DISTINCT tenant_id) FROM notes`, nil},
		{"tags by note id", `SELECT count(*) FROM note_tags WHERE note_id = $1`, []any{idA}},
	}
	for _, r := range reads {
		if got := count(t, tb.db, tb.ctxA, r.query, r.args...); got != 1 {
			t.Errorf("%s: A sees %d of its rows, want 1 (positive control)", r.name, got)
		}
		if got := count(t, tb.db, tb.ctxB, r.query, r.args...); got != 0 {
			t.Errorf("%s: B sees %d of A's rows, want 0", r.name, got)
		}
	}

	// B can neither change nor delete A's row by its primary key.
	err := tb.db.Tx(tb.ctxB, func(tx pgx.Tx) error {
		for _, q := range []string{`UPDATE notes SET body = 'pwned' WHERE id = $1`, `DELETE FROM notes WHERE id = $1`,
			`DELETE FROM note_tags WHERE note_id = $1`} {
			tag, err := tx.Exec(tb.ctxB, q, idA)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 0 {
				return fmt.Errorf("%s touched %d of A's rows", q, tag.RowsAffected())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var body string
	if err := tb.db.Tx(tb.ctxA, func(tx pgx.Tx) error {
		return tx.QueryRow(tb.ctxA, `SELECT body FROM notes WHERE id = $1`, idA).Scan(&body)
	}); err != nil || body != "A's secret" {
		t.Fatalf("A's row after B's attempts: %q, %v", body, err)
	}

	// B cannot write into A: neither by naming A's tenant nor by moving its own row there, nor by
	// pointing its rows at A's.
	idB := insertNote(t, tb.db, tb.ctxB, "B's note")
	refused := []struct {
		name, query string
		args        []any
	}{
		{"insert into A", `INSERT INTO notes (tenant_id, body) VALUES ($1, 'planted')`, []any{tb.a.ID}},
		{"move own row to A", `UPDATE notes SET tenant_id = $1 WHERE id = $2`, []any{tb.a.ID, idB}},
		{"tag A's note", `INSERT INTO note_tags (note_id, tag) VALUES ($1, 'x')`, []any{idA}},
	}
	for _, r := range refused {
		err := tb.db.Tx(tb.ctxB, func(tx pgx.Tx) error { _, err := tx.Exec(tb.ctxB, r.query, r.args...); return err })
		if err == nil {
			t.Errorf("%s: B's write was accepted", r.name)
		}
	}
	if got := count(t, tb.db, tb.ctxA, `SELECT count(*) FROM notes`); got != 1 {
		t.Fatalf("A has %d notes after B's refused writes, want 1", got)
	}
	if got := count(t, tb.db, tb.ctxB, `SELECT count(*) FROM notes`); got != 1 {
		t.Fatalf("B has %d notes, want its own 1", got)
	}
}

func TestTxRunsAsRuntimeRole(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	var user, setting string
	var super, bypass bool
	err := tb.db.Tx(tb.ctxA, func(tx pgx.Tx) error {
		return tx.QueryRow(tb.ctxA, `SELECT current_user, current_setting('app.tenant_id'), rolsuper, rolbypassrls
			FROM pg_roles WHERE rolname = current_user`).Scan(&user, &setting, &super, &bypass)
	})
	if err != nil {
		t.Fatal(err)
	}
	if user != tenancycatalog.DefaultRole || super || bypass || setting != tb.a.ID {
		t.Fatalf("inside Tx: user %s super %v bypassrls %v tenant %s", user, super, bypass, setting)
	}
}

func TestTxRefusesWithoutAServableTenant(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	ctx := context.Background()
	suspended := tenancytest.CreateTenant(t, tb.catalog, "suspended")
	suspended, _ = tb.catalog.Suspend(ctx, suspended.ID)
	deleted := tenancytest.CreateTenant(t, tb.catalog, "deleted")
	deleted, _ = tb.catalog.Delete(ctx, deleted.ID)

	cases := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"no tenant", ctx, tenancy.ErrNoTenant},
		{"nil tenant", tenancy.WithTenant(ctx, nil), tenancy.ErrNoTenant},
		{"empty tenant", tenancy.WithTenant(ctx, &tenancy.Tenant{Status: tenancy.StatusActive}), tenancy.ErrNoTenant},
		{"malformed id", tenancy.WithTenant(ctx, &tenancy.Tenant{ID: "' OR true --", Status: tenancy.StatusActive}), tenancy.ErrNoTenant},
		{"suspended", tenancy.WithTenant(ctx, suspended), tenancy.ErrTenantSuspended},
		{"deleted", tenancy.WithTenant(ctx, deleted), tenancy.ErrTenantNotFound},
	}
	before := tb.pool.Stat().AcquireCount()
	for _, c := range cases {
		called := false
		err := tb.db.Tx(c.ctx, func(pgx.Tx) error { called = true; return nil })
		if !errors.Is(err, c.want) || called {
			t.Errorf("Tx, %s: %v (fn called: %v), want %v", c.name, err, called, c.want)
		}
		if _, err := tb.db.Exec(c.ctx, `DELETE FROM notes`); !errors.Is(err, c.want) {
			t.Errorf("Exec, %s: %v, want %v", c.name, err, c.want)
		}
		if err := tb.db.QueryRow(c.ctx, `SELECT 1`).Scan(new(int)); !errors.Is(err, c.want) {
			t.Errorf("QueryRow, %s: %v, want %v", c.name, err, c.want)
		}
		if _, err := tb.db.Query(c.ctx, `SELECT 1`); !errors.Is(err, c.want) {
			t.Errorf("Query, %s: %v, want %v", c.name, err, c.want)
		}
	}
	if n := tb.pool.Stat().AcquireCount() - before; n != 0 {
		t.Errorf("refused calls acquired %d connections; no SQL may run without a tenant", n)
	}
	// Positive control: a servable tenant gets through.
	if err := tb.db.Tx(tb.ctxA, func(pgx.Tx) error { return nil }); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func TestTxStoreSeesSuspensionOfAnOldContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	createNotes(t, b.pool)
	cache, _ := tenancycache.NewLookup(b.catalog, nil)
	db := tenancytest.NewDB(t, b.pool, &tenancypgx.Config{Store: cache})
	a := tenancytest.CreateTenant(t, b.catalog, "tenant-a")
	ctx := tenancy.WithTenant(context.Background(), a) // a job's context, taken while a was active
	if err := db.Tx(ctx, func(pgx.Tx) error { return nil }); err != nil {
		t.Fatalf("control: %v", err)
	}
	if _, err := b.catalog.Suspend(context.Background(), a.ID); err != nil {
		t.Fatal(err)
	}
	_ = cache.Invalidate(context.Background(), a.ID) // what Catalog.Watch does on the notification
	if err := db.Tx(ctx, func(pgx.Tx) error { return nil }); !errors.Is(err, tenancy.ErrTenantSuspended) {
		t.Fatalf("after suspension: %v, want ErrTenantSuspended", err)
	}
}

// Without the scoping of Tx — the runtime role with no tenant, or an empty one — a tenant table
// shows nothing and accepts nothing, even with rows in it; with the tenant set by hand (no proof)
// the database refuses the statement.
func TestNoTenantSettingMeansNoRows(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	insertNote(t, tb.db, tb.ctxA, "A's note")
	if got := count(t, tb.db, tb.ctxA, `SELECT count(*) FROM notes`); got != 1 {
		t.Fatalf("control: A sees %d notes through Tx, want 1", got)
	}
	ctx := context.Background()
	runtime := tb.db.Pool() // logs in as the runtime role
	for name, setting := range map[string]string{
		"missing setting":   "",
		"empty setting":     "SELECT set_config('app.tenant_id', '', true)",
		"A's id by hand":    "SELECT set_config('app.tenant_id', '" + tb.a.ID + "', true)",
		"A's id, bad proof": "SELECT set_config('app.tenant_id', '" + tb.a.ID + "', true), set_config('app.tenant_proof', repeat('0', 64), true)",
	} {
		forged := strings.HasPrefix(name, "A's")
		var n int
		err := pgx.BeginFunc(ctx, runtime, func(tx pgx.Tx) error {
			if setting != "" {
				if _, err := tx.Exec(ctx, setting); err != nil {
					return err
				}
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n)
		})
		switch {
		case forged && err == nil:
			t.Errorf("ISOLATION BREACH: %s read %d rows instead of being refused", name, n)
		case !forged && (err != nil || n != 0):
			t.Errorf("%s: %d rows, %v; want 0", name, n, err)
		}
		err = pgx.BeginFunc(ctx, runtime, func(tx pgx.Tx) error {
			if setting != "" {
				if _, err := tx.Exec(ctx, setting); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('orphan')`)
			return err
		})
		if err == nil {
			t.Errorf("%s: an insert without a bound tenant was accepted", name)
		}
	}
}

func TestTxRollsBack(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	boom := errors.New("boom")
	if err := tb.db.Tx(tb.ctxA, func(tx pgx.Tx) error {
		if _, err := tx.Exec(tb.ctxA, `INSERT INTO notes (body) VALUES ('error')`); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "panic in fn" {
				t.Fatalf("panic not propagated: %v", r)
			}
		}()
		tb.db.Tx(tb.ctxA, func(tx pgx.Tx) error {
			if _, err := tx.Exec(tb.ctxA, `INSERT INTO notes (body) VALUES ('panic')`); err != nil {
				return err
			}
			panic("panic in fn")
		})
	}()
	cctx, cancel := context.WithCancel(tb.ctxA)
	err := tb.db.Tx(cctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(cctx, `INSERT INTO notes (body) VALUES ('cancelled')`); err != nil {
			return err
		}
		cancel()
		return nil // fn ignores the cancellation: the commit must still not happen
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	if got := count(t, tb.db, tb.ctxA, `SELECT count(*) FROM notes`); got != 0 {
		t.Fatalf("%d rows committed by rolled-back transactions", got)
	}
	insertNote(t, tb.db, tb.ctxA, "kept")
	if got := count(t, tb.db, tb.ctxA, `SELECT count(*) FROM notes`); got != 1 {
		t.Fatalf("control: %d rows after a committed insert, want 1", got)
	}
}

// One pooled connection serves A and B in turn: nothing of one transaction's scope survives into
// the next, and outside a transaction the connection is the owner again with no tenant.
func TestTxPoolOfOneInterleaved(t *testing.T) {
	t.Parallel()
	b := setup(t)
	createNotes(t, b.pool)
	pool := tenancytest.NewRuntimePool(t, b.pool, func(c *pgxpool.Config) { c.MaxConns = 1 })
	db, _ := tenancypgx.New(pool, tenancytest.WithKey(t, b.pool, nil))
	a, bt := tenancytest.CreateTenant(t, b.catalog, "tenant-a"), tenancytest.CreateTenant(t, b.catalog, "tenant-b")
	ctxA, ctxB := tenancy.WithTenant(context.Background(), a), tenancy.WithTenant(context.Background(), bt)
	insertNote(t, db, ctxA, "a")
	insertNote(t, db, ctxA, "a2")
	insertNote(t, db, ctxB, "b")
	boom := errors.New("boom")
	for i := range 40 {
		ctx, want := ctxA, 2
		if i%2 == 1 {
			ctx, want = ctxB, 1
		}
		switch i % 4 {
		case 0, 1:
			if got := count(t, db, ctx, `SELECT count(*) FROM notes`); got != want {
				t.Fatalf("round %d: %d rows, want %d", i, got, want)
			}
		case 2: // a failed transaction in between
			db.Tx(ctx, func(tx pgx.Tx) error { tx.Exec(ctx, `SELECT 1/0`); return boom })
		case 3: // a single-statement one
			var n int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n); err != nil || n != want {
				t.Fatalf("round %d: QueryRow %d, %v; want %d", i, n, err, want)
			}
		}
		var setting, proof *string
		if err := pool.QueryRow(context.Background(), `SELECT current_setting('app.tenant_id', true), current_setting('app.tenant_proof', true)`).Scan(&setting, &proof); err != nil {
			t.Fatal(err)
		}
		if (setting != nil && *setting != "") || (proof != nil && *proof != "") {
			t.Fatalf("round %d: after the transaction the connection is still bound to tenant %v", i, *setting)
		}
	}
	if s := pool.Stat(); s.TotalConns() != 1 {
		t.Fatalf("the pool opened %d connections; the test needs one reused", s.TotalConns())
	}
}

func TestSingleStatementHelpers(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	tag, err := tb.db.Exec(tb.ctxA, `INSERT INTO notes (body) VALUES ($1), ($2)`, "one", "two")
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("Exec: %v, %v", tag, err)
	}
	insertNote(t, tb.db, tb.ctxB, "b")
	var n int
	if err := tb.db.QueryRow(tb.ctxA, `SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("QueryRow as A: %d, %v; want 2", n, err)
	}
	if err := tb.db.QueryRow(tb.ctxB, `SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("QueryRow as B: %d, %v; want 1", n, err)
	}
	rows, err := tb.db.Query(tb.ctxA, `SELECT body FROM notes ORDER BY body`)
	if err != nil {
		t.Fatal(err)
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(bodies) != 2 || bodies[0] != "one" || bodies[1] != "two" {
		t.Fatalf("Query as A: %v, %v", bodies, err)
	}
	// A loop that stops at the last row, without Close, ends the transaction too.
	rows, _ = tb.db.Query(tb.ctxB, `SELECT body FROM notes`)
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := tb.db.QueryRow(tb.ctxA, `SELECT body FROM notes WHERE body = 'none'`).Scan(new(string)); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("no row: %v, want pgx.ErrNoRows", err)
	}
	if _, err := tb.db.Exec(tb.ctxA, `INSERT INTO notes (tenant_id, body) VALUES ($1, 'planted')`, tb.b.ID); err == nil {
		t.Fatal("Exec as A into B was accepted")
	}
	// One statement is one transaction: a failure on its second row keeps its first.
	if _, err := tb.db.Exec(tb.ctxA, `INSERT INTO notes (body)
		SELECT CASE WHEN i = 2 THEN NULL ELSE 'half' END FROM generate_series(1, 2) i`); err == nil {
		t.Fatal("a NOT NULL violation was accepted")
	}
	if err := tb.db.QueryRow(tb.ctxA, `SELECT count(*) FROM notes WHERE body = 'half'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a failed statement left %d rows, %v", n, err)
	}
	// A statement that opens a transaction block does not leave it open on the pooled connection.
	if _, err := tb.db.Exec(tb.ctxA, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.db.Exec(tb.ctxA, `SELEC nonsense`); err == nil {
		t.Fatal("a syntax error was accepted")
	}
	if err := tb.db.QueryRow(tb.ctxA, `SELECT 1/0`).Scan(&n); err == nil {
		t.Fatal("division by zero was accepted")
	}
	if _, err := tb.db.Query(tb.ctxA, `SELECT body FROM missing_table`); err == nil {
		t.Fatal("a missing table was accepted")
	}
	// Every failure above rolled back and released its connection.
	if s := tb.pool.Stat(); s.AcquiredConns() != 0 {
		t.Fatalf("%d connections still acquired", s.AcquiredConns())
	}
	if err := tb.db.QueryRow(tb.ctxB, `SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("B after A's attempts: %d, %v; want 1", n, err)
	}
}

// countingConn counts the writes a connection makes to the server: with pipelining, one per round trip.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) { c.writes.Add(1); return c.Conn.Write(b) }

// countingPool returns a runtime pool of one connection on admin's database whose writes to the
// server writes counts.
func countingPool(t *testing.T, admin *pgxpool.Pool, writes *atomic.Int64) *pgxpool.Pool {
	t.Helper()
	return tenancytest.NewRuntimePool(t, admin, func(cfg *pgxpool.Config) {
		cfg.MaxConns = 1
		dialer := &net.Dialer{}
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			return countingConn{c, writes}, err
		}
	})
}

// A scoped transaction costs the round trips of a plain one: BEGIN and the scoping travel together.
func TestTxRoundTrips(t *testing.T) {
	t.Parallel()
	tb := setupTenants(t, nil)
	var writes atomic.Int64
	pool := countingPool(t, tb.pool, &writes)
	db, _ := tenancypgx.New(pool, tenancytest.WithKey(t, tb.pool, nil))
	const query = `SELECT count(*) FROM notes`
	scoped := func() error {
		return db.Tx(tb.ctxA, func(tx pgx.Tx) error { return tx.QueryRow(tb.ctxA, query).Scan(new(int)) })
	}
	plain := func() error {
		return pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
			return tx.QueryRow(context.Background(), query).Scan(new(int))
		})
	}
	single := func() error { return db.QueryRow(tb.ctxA, query).Scan(new(int)) }
	trips := func(f func() error) int64 {
		if err := f(); err != nil { // warm the statement cache
			t.Fatal(err)
		}
		before := writes.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return writes.Load() - before
	}
	p, s, one := trips(plain), trips(scoped), trips(single)
	t.Logf("round trips: plain %d, scoped %d, single %d", p, s, one)
	if p != 3 || s != p {
		t.Errorf("round trips: plain transaction %d, scoped %d; want 3 and 3", p, s)
	}
	if one != 1 {
		t.Errorf("single-statement helper: %d round trips, want 1", one)
	}
}
