package tenancytest_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// resetTracer calls onReset once, when a unit's session reset is about to be sent (as a query or
// in a batch), with whether the connection is still inside the unit's transaction.
type resetTracer struct {
	once    sync.Once
	onReset func(inTx bool)
}

func (r *resetTracer) fire(conn *pgx.Conn, sql string) {
	if strings.Contains(sql, "reset_session_proven") && r.onReset != nil {
		r.once.Do(func() { r.onReset(conn.PgConn().TxStatus() != 'I') })
	}
}

func (r *resetTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.fire(conn, d.SQL)
	return ctx
}
func (r *resetTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *resetTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	// Only a cleanup batch (it rolls back to the unit's savepoint), not a unit's own pipeline,
	// which ends with the reset too.
	if q := d.Batch.QueuedQueries; len(q) > 1 && strings.HasPrefix(q[0].SQL, "ROLLBACK TO") {
		r.fire(conn, q[1].SQL)
	}
	return ctx
}
func (r *resetTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *resetTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// Behind PgBouncer in transaction mode, a unit that fails must be cleaned up on the server session
// it ran on: after its transaction ends the pooler may give that session to the next client at
// once. A's unit seeds random() and takes a session advisory lock — neither is undone by a
// rollback — then fails; B's transaction, queued for the pooler's only server session as A's
// cleanup begins, must find neither. (Found by review: the cleanup ran after the ROLLBACK, on
// whatever session the pooler gave it.)
func TestBehindAPoolerAFailedUnitIsResetOnItsOwnSession(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	const failing = `DO $$ BEGIN PERFORM setseed(0.42); PERFORM pg_advisory_lock(4242); RAISE EXCEPTION 'A fails on purpose'; END $$`
	for _, via := range []string{"Exec", "SQLTx"} {
		t.Run(via, func(t *testing.T) { failedUnitIsResetOnItsOwnSession(t, env, via, failing) })
	}
}

func failedUnitIsResetOnItsOwnSession(t *testing.T, env *tenancytest.Env, via, failing string) {
	ctx := context.Background()
	database := env.Runtime.Config().ConnConfig.Database
	bouncer := tenancytest.StartPgBouncer(t, env.Pool.Config().ConnString(), &tenancytest.PgBouncerOpts{PoolSize: 1})
	url := bouncer.URL("tenancy_app", database)
	tr := &resetTracer{}
	newDB := func(tracer any) *tenancypgx.DB {
		pool, err := tenancypgx.NewRuntimePool(ctx, url, &tenancypgx.RuntimePoolOpts{Configure: func(c *pgxpool.Config) {
			c.MaxConns = 1
			if tracer != nil {
				c.ConnConfig.Tracer = tracer.(pgx.QueryTracer)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		db, err := tenancypgx.New(pool, tenancytest.WithKey(t, env.Pool, nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := db.Check(ctx); err != nil {
			t.Fatal(err)
		}
		return db
	}
	dbA, dbB := newDB(tr), newDB(nil)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	var predicted float64
	if err := env.Pool.QueryRow(ctx, `SELECT setseed(0.42), random()`).Scan(nil, &predicted); err != nil {
		t.Fatal(err)
	}
	var got float64
	var lockFree bool
	var bErr error
	bDone := make(chan struct{})
	runB := func() {
		defer close(bDone)
		bErr = dbB.Tx(ctxB, func(tx pgx.Tx) error {
			// Whether this session holds A's lock is whether it can release it (pg_locks is not the
			// runtime role's to read).
			return tx.QueryRow(ctxB, `SELECT random(), NOT pg_advisory_unlock(4242)`).Scan(&got, &lockFree)
		})
	}
	tr.onReset = func(inTx bool) {
		if inTx {
			// A's transaction still holds the server session: B queues for it while A cleans up.
			go runB()
			return
		}
		// A's transaction has ended, the pooler's one server session is free: B takes it now,
		// before A's reset is sent — the order a pooler with waiting clients gives.
		runB()
	}
	var err error
	if via == "Exec" {
		_, err = dbA.Exec(ctxA, failing)
	} else {
		err = dbA.SQLTx(ctxA, func(tx *sql.Tx) error { _, err := tx.ExecContext(ctxA, failing); return err })
	}
	if err == nil || !strings.Contains(err.Error(), "A fails on purpose") {
		t.Fatalf("control: A's unit: %v, want its own error", err)
	}
	<-bDone
	if bErr != nil {
		t.Fatalf("B's transaction: %v", bErr)
	}
	if got == predicted || !lockFree {
		t.Fatalf("B's transaction ran in A's session state: random() seeded by A %v, A's advisory lock absent %v: ISOLATION BREACH", got == predicted, lockFree)
	}
}
