package pgsession

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// sweepSQL removes the login role's session defaults (ALTER ROLE … SET) for all databases, for
// this one and for one named by the setting tenancy.sweep_database, in a
// transaction of its own that no session setting can stop (sweepBegin): read-write, without
// statement, lock or idle timeouts. A DO block, so it runs in any database, the maintenance one included. (The
// runtime role has no defaults of its own by design: what its connections need is in its URL.)
// Another database's defaults are that database's pools' to remove: on a server shared by
// several deployments, or by tests, one never touches another's.
const (
	sweepBegin = `BEGIN READ WRITE; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0;
SET LOCAL idle_in_transaction_session_timeout = 0`
	sweepTarget = `SELECT pg_catalog.set_config('tenancy.sweep_database', $1, true)`
	sweepSQL    = `DO $sweep$
DECLARE
    target name := COALESCE(NULLIF(pg_catalog.current_setting('tenancy.sweep_database', true), ''),
                                       pg_catalog.current_database());
    db     oid;
    dbname name;
BEGIN
    FOR db, dbname IN SELECT s.setdatabase, d.datname FROM pg_catalog.pg_db_role_setting s
                        LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase
                       WHERE s.setrole OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
                                                                 WHERE r.rolname OPERATOR(pg_catalog.=) SESSION_USER)
                         AND (s.setdatabase OPERATOR(pg_catalog.=) 0 OR d.datname OPERATOR(pg_catalog.=) target
                              OR d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) LOOP
        IF db OPERATOR(pg_catalog.=) 0 THEN
            EXECUTE 'ALTER ROLE CURRENT_USER RESET ALL';
        ELSE
            EXECUTE pg_catalog.format('ALTER ROLE CURRENT_USER IN DATABASE %I RESET ALL', dbname);
        END IF;
    END LOOP;
END $sweep$; COMMIT`
)

// sweep removes the session defaults of conn's login role for all databases and for database
// (conn's own when it is empty), on conn, in three round trips (only when something is wrong).
func sweep(ctx context.Context, conn *pgx.Conn, database string) error {
	pc := conn.PgConn()
	_, err := pc.Exec(ctx, sweepBegin).ReadAll()
	if err == nil {
		err = pc.ExecParams(ctx, sweepTarget, [][]byte{[]byte(database)}, nil, nil, nil).Read().Err
	}
	if err == nil {
		_, err = pc.Exec(ctx, sweepSQL).ReadAll()
	}
	if err != nil && !pc.IsClosed() {
		_, _ = pc.Exec(ctx, "ROLLBACK").ReadAll()
	}
	return err
}

// A Janitor removes the runtime role's session defaults from a connection of its own, opened
// before the first unit of work. SQL in a unit of work can COMMIT, give the role defaults and then
// end its own session (exit_on_error, idle_session_timeout…) before the toolkit could remove them
// there — and some defaults (local_preload_libraries) stop every new connection from starting, so
// no new one could. The janitor's connection predates them. One per runtime pool's server: for
// a Router's servers it connects to the database "postgres", which is never a tenant's.
type Janitor struct {
	cfg    *pgx.ConnConfig
	opened atomic.Bool
	mu     sync.Mutex
	conn   *pgx.Conn
}

// NewJanitor returns the janitor of the server cfg connects to; it connects on Ready.
func NewJanitor(cfg *pgx.ConnConfig) *Janitor {
	c := cfg.Copy()
	c.Tracer = nil // the application's tracer sees its own statements, not this housekeeping
	return &Janitor{cfg: c}
}

// Ready opens the janitor's connection on the first unit of work of its pool. Only that attempt:
// when it fails, Sweep connects when it is needed.
func (j *Janitor) Ready(ctx context.Context) {
	if j == nil || j.opened.Load() {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.opened.Load() {
		_ = j.connect(ctx)
		j.opened.Store(true)
	}
}

// janitorGuard are the start-up settings of the janitor's connection (see startupGuard): whatever
// session defaults the role was given, it starts, stays connected while idle and keeps going
// after an error.
var janitorGuard = map[string]string{
	"local_preload_libraries":             "",
	"exit_on_error":                       "off",
	"idle_session_timeout":                "0",
	"idle_in_transaction_session_timeout": "0",
	"statement_timeout":                   "0",
	"lock_timeout":                        "0",
	"default_transaction_read_only":       "off",
}

// connect opens a new connection; j.mu is held.
func (j *Janitor) connect(ctx context.Context) error {
	conn, err := connectGuarded(ctx, j.cfg.Copy(), janitorGuard)
	if err != nil {
		return err
	}
	j.conn = conn
	return nil
}

// Sweep removes the role's session defaults for all databases and for database, within 5
// seconds whatever ctx says: on its own connection, or on a new one when that was lost (the
// server restarted, say).
func (j *Janitor) Sweep(ctx context.Context, database string) error {
	if j == nil {
		return errors.New("tenancypgx: no Janitor for this pool")
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	j.mu.Lock()
	defer j.mu.Unlock()
	for attempt := 1; ; attempt++ {
		if j.conn == nil || j.conn.IsClosed() {
			if err := j.connect(sctx); err != nil {
				return err
			}
		}
		// A unit of work that changes the role's defaults in a transaction it keeps open makes
		// the removal wait, then fail ("tuple concurrently updated") when it commits: removed
		// again, on the same connection (sweep rolled back).
		err := sweep(sctx, j.conn, database)
		if err == nil || attempt == 5 || sctx.Err() != nil {
			return err
		}
	}
}

// Close closes the janitor's connection.
func (j *Janitor) Close() {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = j.conn.Close(cctx)
		cancel()
		j.conn = nil
	}
}

// StartupRefused reports whether err is the server refusing a new connection (a FATAL while it
// started, such as a library a role default names that cannot be loaded), not a network failure.
func StartupRefused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}
