package tenancytest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyrouter"
	"github.com/gotenancy/tenancy/tenancytest"
)

// sessionLine is projectsLine and a sequence the runtime role may use, whose last value would be
// session state (lastval).
var sessionLine = fstest.MapFS{
	"0001_projects.sql": projectsLine["0001_projects.sql"],
	"0002_counter.sql":  {Data: []byte(`CREATE SEQUENCE counter; GRANT USAGE ON SEQUENCE counter TO tenancy_app;`)},
}

// sessionState is a kind of state a unit of work can leave on a server session.
type sessionState struct {
	name string
	// leave is a statement that leaves the state.
	leave string
	// expr leaves it as an expression of a SELECT, for statements that go on to fail; "" when
	// the state cannot be left that way.
	expr string
	// probe returns one boolean: whether the state is on the session.
	probe string
	// inside says the probe sees the state inside the unit that left it (LISTEN takes effect at
	// COMMIT, so it does not).
	inside bool
	// discarded says the toolkit closes the connection rather than reset it (a statement prepared
	// with SQL could have taken the name of one of the driver's).
	discarded bool
}

var sessionStates = []sessionState{
	{name: "held cursor", leave: `DECLARE leak CURSOR WITH HOLD FOR SELECT name FROM projects`,
		probe: `SELECT EXISTS (SELECT FROM pg_cursors WHERE name = 'leak')`, inside: true},
	{name: "set_config", leave: `SELECT set_config('app.leak', 'A', false), set_config('statement_timeout', '4321ms', false)`,
		expr:  `set_config('app.leak', 'A', false)`,
		probe: `SELECT coalesce(current_setting('app.leak', true), '') <> '' OR current_setting('statement_timeout') = '4321ms'`, inside: true},
	{name: "SET", leave: `SET work_mem = '7777kB'`,
		probe: `SELECT current_setting('work_mem') = '7777kB'`, inside: true},
	{name: "advisory lock", leave: `SELECT pg_advisory_lock(4242)`, expr: `pg_advisory_lock(4242)`,
		// pg_locks is not the runtime role's to read (it lists other tenants' barriers): whether
		// this session holds the lock is whether it can release it.
		probe: `SELECT pg_advisory_unlock(4242)`, inside: true},
	{name: "LISTEN", leave: `LISTEN tenancy_leak`,
		probe: `SELECT EXISTS (SELECT FROM pg_listening_channels() c WHERE c = 'tenancy_leak')`},
	{name: "SQL PREPARE", leave: `PREPARE leak AS SELECT name FROM projects`,
		probe: `SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'leak')`, inside: true, discarded: true},
	{name: "sequence value", leave: `SELECT nextval('counter')`, expr: `nextval('counter')`,
		probe: `SELECT lastval() IS NOT NULL`, inside: true},
}

// probeSession runs a state's probe with scan; an undefined lastval (55000) is "not there". Inside
// a transaction (savepoint not nil) the probe runs in a savepoint, so that error does not abort it.
func probeSession(st sessionState, scan func(sql string, dest ...any) error, savepoint func(sql string) error) (bool, error) {
	if savepoint != nil {
		if err := savepoint(`SAVEPOINT probe`); err != nil {
			return false, err
		}
	}
	var there bool
	err := scan(st.probe, &there)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55000" {
		there, err = false, nil
	}
	if savepoint != nil {
		if serr := savepoint(`ROLLBACK TO SAVEPOINT probe`); err == nil {
			err = serr
		}
	}
	return there, err
}

// The positive control of every probe: without the toolkit, on a plain connection of the runtime
// role, each state outlives its transaction and the probe sees it.
func TestSessionStateProbesSeeStateLeftWithoutTheToolkit(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: sessionLine})
	ctx := context.Background()
	for _, st := range sessionStates {
		conn, err := env.Runtime.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, st.leave); return err }); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		there, err := probeSession(st, func(sql string, dest ...any) error { return conn.QueryRow(ctx, sql).Scan(dest...) }, nil)
		conn.Conn().Close(ctx) // tainted on purpose: never back to the pool
		conn.Release()
		if err != nil || !there {
			t.Errorf("%s: the probe does not see the state a plain transaction leaves (%v, %v): it would prove nothing", st.name, there, err)
		}
	}
}

// sessionEnv is an Env whose DB has one connection in its shared pool and one in each tenant
// database's pool, so the next unit of work gets the connection the last one used.
type sessionEnv struct {
	*tenancytest.Env
	db      *tenancypgx.DB
	runtime *pgxpool.Pool
}

func newSessionEnv(t *testing.T) *sessionEnv {
	t.Helper()
	// One connection per pool, so the next unit gets the same one; waiting for it may take a while
	// on a loaded machine (its reset after a held cursor), which is not what this test is about.
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: sessionLine,
		Router: &tenancyrouter.Config{MaxConnsPerPool: 1, AcquireTimeout: 30 * time.Second}})
	db, single := oneConnectionDB(t, env)
	return &sessionEnv{Env: env, db: db, runtime: single}
}

// oneConnectionDB returns a DB with env's router on a runtime pool of one connection, so each unit
// of work gets the connection the last one used, and that pool.
func oneConnectionDB(t *testing.T, env *tenancytest.Env) (*tenancypgx.DB, *pgxpool.Pool) {
	t.Helper()
	single := tenancytest.NewRuntimePool(t, env.Pool, func(c *pgxpool.Config) { c.MaxConns = 1 })
	db, err := tenancypgx.New(single, tenancytest.WithKey(t, env.Pool, &tenancypgx.Config{Router: env.Router}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, single
}

// databaseName returns the name of env's database, quoted.
func databaseName(t *testing.T, env *tenancytest.Env) string {
	t.Helper()
	var name string
	if err := env.Pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return pgx.Identifier{name}.Sanitize()
}

// api is one way to run a unit of work: Tx, the single-statement helpers, SQLTx.
type api string

const (
	apiTx     api = "Tx"
	apiSingle api = "Exec"
	apiSQLTx  api = "SQLTx"
)

// ending is how a unit of work ends.
type ending string

const (
	endCommit    ending = "commit"
	endRollback  ending = "fn returns an error"
	endFailed    ending = "a statement fails"
	endAborted   ending = "an aborted transaction returns nil"
	endPanic     ending = "fn panics"
	endCancelled ending = "context cancelled"
)

var errBoom = errors.New("boom")

// leaveState runs a unit of work as tn through a that leaves st and ends as e. It returns the
// backend's pid (0 when the API gives no chance to read it) and whether the state was seen inside
// the unit (the positive control; false when it cannot be looked at there).
func (se *sessionEnv) leaveState(t *testing.T, tn *tenancy.Tenant, a api, e ending, st sessionState) (pid int, seen bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(tenancytest.Context(tn))
	defer cancel()
	inside := func(scan func(sql string, dest ...any) error, exec func(sql string) error) error {
		if err := scan(`SELECT pg_backend_pid()`, &pid); err != nil {
			return err
		}
		if st.inside {
			var err error
			if seen, err = probeSession(st, scan, exec); err != nil {
				return err
			}
		}
		return nil
	}
	finish := func(exec func(sql string) error) error {
		switch e {
		case endRollback:
			return errBoom
		case endFailed:
			return exec(`SELECT 1/0`)
		case endAborted:
			_ = exec(`SELECT 1/0`)
			return nil
		case endPanic:
			panic(errBoom)
		case endCancelled:
			cancel()
			return exec(`SELECT 1`)
		}
		return nil
	}
	run := func(f func() error) (err error) {
		defer func() {
			if p := recover(); p != nil && p != errBoom {
				panic(p)
			}
		}()
		return f()
	}
	var err error
	switch a {
	case apiTx:
		err = run(func() error {
			return se.db.Tx(ctx, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, st.leave); err != nil {
					return err
				}
				scan := func(sql string, dest ...any) error { return tx.QueryRow(ctx, sql).Scan(dest...) }
				exec := func(sql string) error { _, err := tx.Exec(ctx, sql); return err }
				if err := inside(scan, exec); err != nil {
					return err
				}
				return finish(exec)
			})
		})
	case apiSQLTx:
		err = run(func() error {
			return se.db.SQLTx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, st.leave); err != nil {
					return err
				}
				scan := func(sql string, dest ...any) error { return tx.QueryRowContext(ctx, sql).Scan(dest...) }
				exec := func(sql string) error { _, err := tx.ExecContext(ctx, sql); return err }
				if err := inside(scan, exec); err != nil {
					return err
				}
				return finish(exec)
			})
		})
	case apiSingle:
		if err := se.db.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		switch e {
		case endCommit:
			_, err = se.db.Exec(ctx, st.leave)
		case endFailed:
			_, err = se.db.Exec(ctx, `SELECT `+st.expr+`, 1/0`)
		case endCancelled:
			tctx, tcancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = se.db.Exec(tctx, `SELECT `+st.expr+`, pg_sleep(5)`)
			tcancel()
		}
	}
	wantErr := e != endCommit && e != endAborted && e != endPanic
	if e == endAborted {
		wantErr = true // the COMMIT of an aborted transaction is a rollback, reported
	}
	if wantErr != (err != nil) && e != endPanic {
		t.Fatalf("%s, %s, %s: unit of work returned %v", a, e, st.name, err)
	}
	if e == endCommit && !st.inside {
		return pid, false
	}
	return pid, seen
}

// probeNext runs the next unit of work as tn through a and says whether st is on its session,
// with the backend's pid.
func (se *sessionEnv) probeNext(t *testing.T, tn *tenancy.Tenant, a api, st sessionState) (pid int, there bool) {
	t.Helper()
	ctx := tenancytest.Context(tn)
	var err error
	switch a {
	case apiTx:
		err = se.db.Tx(ctx, func(tx pgx.Tx) error {
			scan := func(sql string, dest ...any) error { return tx.QueryRow(ctx, sql).Scan(dest...) }
			if err := scan(`SELECT pg_backend_pid()`, &pid); err != nil {
				return err
			}
			there, err = probeSession(st, scan, func(sql string) error { _, err := tx.Exec(ctx, sql); return err })
			return err
		})
	case apiSQLTx:
		err = se.db.SQLTx(ctx, func(tx *sql.Tx) error {
			scan := func(sql string, dest ...any) error { return tx.QueryRowContext(ctx, sql).Scan(dest...) }
			if err := scan(`SELECT pg_backend_pid()`, &pid); err != nil {
				return err
			}
			there, err = probeSession(st, scan, func(sql string) error { _, err := tx.ExecContext(ctx, sql); return err })
			return err
		})
	case apiSingle:
		if err := se.db.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		there, err = probeSession(st, func(sql string, dest ...any) error { return se.db.QueryRow(ctx, sql).Scan(dest...) }, nil)
	}
	if err != nil {
		t.Fatalf("next unit of work (%s as %s): %v", a, tn.Slug, err)
	}
	return pid, there
}

// A connection goes back to the pool carrying nothing of the tenant, after every way a unit of
// work ends, through every API, in every model: the next user of that very connection (another
// tenant of the model; for a database tenant, its own next unit) finds none of the state the last
// one left. Where the state can be seen inside the unit, it was (the positive control), and the
// next unit ran on the same backend, so the reset — not a new connection — is what cleaned it
// (except after SQL's PREPARE, where the connection must be closed, and is).
func TestSessionStateDoesNotOutliveTheUnitOfWork(t *testing.T) {
	t.Parallel()
	se := newSessionEnv(t)
	endings := map[api][]ending{
		apiTx:     {endCommit, endRollback, endFailed, endAborted, endPanic, endCancelled},
		apiSQLTx:  {endCommit, endRollback, endFailed, endAborted, endPanic, endCancelled},
		apiSingle: {endCommit, endFailed, endCancelled},
	}
	for _, model := range tenancytest.Models {
		t.Run(string(model), func(t *testing.T) {
			a, b := se.Pair(t, model)
			next := b
			if model == tenancy.IsolationDatabase {
				next = a // its own pool: the next user of the connection is itself
			}
			reused, cases := 0, 0
			for _, ap := range []api{apiTx, apiSingle, apiSQLTx} {
				for _, e := range endings[ap] {
					for _, st := range sessionStates {
						if ap == apiSingle && e != endCommit && st.expr == "" {
							continue // a DECLARE, SET, LISTEN or PREPARE cannot go on to fail in one statement
						}
						name := fmt.Sprintf("%s/%s/%s", ap, e, st.name)
						leftPid, seen := se.leaveState(t, a, ap, e, st)
						if st.inside && ap != apiSingle && !seen {
							t.Errorf("%s: the state was not there inside the unit of work: the check would prove nothing", name)
						}
						nextPid, there := se.probeNext(t, next, ap, st)
						if there {
							t.Errorf("ISOLATION BREACH %s: the next unit of work on the connection (as %s) finds the state", name, next.Slug)
						}
						cases++
						switch {
						case st.discarded && leftPid != 0 && leftPid == nextPid:
							t.Errorf("%s: the connection was reused (pid %d); it must be closed", name, leftPid)
						case leftPid != 0 && leftPid == nextPid:
							reused++
						case !st.discarded && (e == endCommit || e == endRollback):
							t.Errorf("%s: the connection was not reused (pid %d, then %d): the reset was not exercised", name, leftPid, nextPid)
						}
					}
				}
			}
			t.Logf("%d cases, %d on a reused connection (the others were discarded)", cases, reused)
		})
	}
}

// The runtime role cannot make temporary objects at all: they would outlive the transaction on a
// pooled connection and pg_temp is searched before a schema tenant's own schema. The control: the
// migration role can, on the same database.
func TestNoTemporaryObjectsForTheRuntimeRole(t *testing.T) {
	t.Parallel()
	se := newSessionEnv(t)
	ctx := context.Background()
	if _, err := se.Pool.Exec(ctx, `CREATE TEMP TABLE control (x int)`); err != nil {
		t.Fatalf("control: the migration role cannot make a temporary table: %v", err)
	}
	for _, model := range tenancytest.Models {
		tn := se.NewTenant(t, model)
		tctx := tenancytest.Context(tn)
		err := se.db.Tx(tctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(tctx, `CREATE TEMP TABLE projects (name text)`)
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s: CREATE TEMP TABLE inside Tx: %v; want permission denied (42501)", model, err)
		}
		if _, err := se.db.Exec(tctx, `CREATE TEMP TABLE projects (name text)`); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s: CREATE TEMP TABLE through Exec: %v; want permission denied (42501)", model, err)
		}
	}
}

// Where an operator has given the runtime role TEMP anyway, the reset drops what a unit of work
// made: the attack — a temporary "projects" that the next schema tenant would read before
// its own table — finds nothing.
func TestTemporaryObjectsAreDroppedWhereTheRoleMayMakeThem(t *testing.T) {
	t.Parallel()
	se := newSessionEnv(t)
	ctx := context.Background()
	var dbname string
	if err := se.Pool.QueryRow(ctx, `SELECT current_database()`).Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	if _, err := se.Pool.Exec(ctx, `GRANT TEMPORARY ON DATABASE `+pgx.Identifier{dbname}.Sanitize()+` TO tenancy_app`); err != nil {
		t.Fatal(err)
	}
	shared, schema := se.NewTenant(t, tenancy.IsolationShared), se.NewTenant(t, tenancy.IsolationSchema)
	if _, err := se.db.Exec(tenancytest.Context(schema), `INSERT INTO projects (name) VALUES ('own')`); err != nil {
		t.Fatal(err)
	}
	sctx := tenancytest.Context(shared)
	for _, e := range []ending{endCommit, endRollback} {
		var inside int
		err := se.db.Tx(sctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(sctx, `CREATE TEMP TABLE projects (name text); INSERT INTO projects VALUES ('planted by A')`); err != nil {
				return err
			}
			if err := tx.QueryRow(sctx, `SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()`).Scan(&inside); err != nil {
				return err
			}
			if e == endRollback {
				return errBoom
			}
			return nil
		})
		if e == endCommit && err != nil {
			t.Fatal(err)
		}
		if inside == 0 {
			t.Fatalf("%s: control: the temporary table was not there inside the transaction", e)
		}
		var names []string
		ctx := tenancytest.Context(schema)
		err = se.db.Tx(ctx, func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, `SELECT name FROM projects`)
			var err error
			names, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil || len(names) != 1 || names[0] != "own" {
			t.Errorf("ISOLATION BREACH after %s: the schema tenant reads %v, %v; want its own row only", e, names, err)
		}
	}
}
