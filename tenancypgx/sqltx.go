package tenancypgx

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/pgsession"
	"github.com/gotenancy/tenancy/internal/spans"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// sqlDBs are the database/sql views of a DB, opened on first use: one over the pool, and one for
// schema-model tenants whose connections cache no prepared statement (see SQLTx).
type sqlDBs struct {
	once, onceExec sync.Once
	pooled, exec   *sql.DB
}

// SQLDB returns a *sql.DB over the same pool, for code that needs one outside tenant transactions
// (migrations, admin tasks). It runs as the pool's login role: use SQLTx for tenant data.
func (db *DB) SQLDB() *sql.DB {
	db.sql.once.Do(func() { db.sql.pooled = stdlib.OpenDBFromPool(db.pool) })
	return db.sql.pooled
}

// execSQLDB is a *sql.DB on the pool's configuration whose queries are never prepared and cached:
// database/sql gives no way to tell a cached statement of one tenant schema from another's.
func (db *DB) execSQLDB() *sql.DB {
	db.sql.onceExec.Do(func() {
		cfg := db.pool.Config().ConnConfig.Copy()
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		// Its connections bypass the pool, so they get the pool's check of a new connection here:
		// one that started with session defaults of the role (which SQL in a unit of work can
		// give it for a moment) is refused after removing them.
		db.sql.exec = stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(pgsession.RefuseRoleDefaults))
		db.sql.exec.SetMaxOpenConns(int(db.pool.Config().MaxConns))
	})
	return db.sql.exec
}

// Close closes the database/sql handles SQLDB and SQLTx opened, and the connection that removes
// the runtime role's session defaults (see Tx). It does not close the pool.
func (db *DB) Close() error {
	db.janitor.Close()
	var err error
	for _, d := range []*sql.DB{db.sql.pooled, db.sql.exec} {
		if d != nil {
			if cerr := d.Close(); err == nil {
				err = cerr
			}
		}
	}
	return err
}

// SQLTx is Tx for database/sql users (sqlc, GORM, ent, sqlx): fn gets a *sql.Tx with the same
// guarantees — the runtime role, the tenant bound for this transaction only, rollback on error,
// panic or cancellation, tenancy.ErrNoTenant without a tenant, and a connection that goes back
// as it came (reset before the COMMIT, or after the ROLLBACK; closed when that fails).
// database/sql cannot pipeline, so BEGIN, the scoping, the reset and COMMIT are four round trips
// here instead of two. Schema-model tenants get connections that prepare nothing (pgx's exec
// mode), so a statement cached for one tenant's schema is never run against another's; Close
// releases them.
func (db *DB) SQLTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return spans.Traced(ctx, "tenancy.SQLTx", func(ctx context.Context) error {
		return db.follow(ctx, func() error { return db.sqlTx(ctx, fn) })
	})
}

func (db *DB) sqlTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	s, err := db.tenant(ctx)
	if err != nil {
		return err
	}
	var j sweeper = db.janitor
	cfg := db.pool.Config().ConnConfig
	handle, database := db.SQLDB(), cfg.Database
	pooled := cfg.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement // see behindPooler
	switch {
	case s.schema != "":
		handle = db.execSQLDB()
	case s.tenant.Isolation == tenancy.IsolationDatabase:
		lease, lerr := db.router.Lease(ctx, s.tenant)
		if lerr != nil {
			return lerr
		}
		// The outcome of the whole unit (the named result): a failure to connect counts toward
		// the tenant's breaker, as it does in Tx.
		defer func() { lease.Done(err) }()
		if err = lease.Check(ctx, db.check); err != nil {
			return unavailable(s.tenant, err)
		}
		lcfg := lease.Pool().Config().ConnConfig
		handle, j, database = lease.SQLDB(), db.router.Janitor(s.tenant.Server), lcfg.Database
		pooled = lcfg.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement
	}
	if s.tenant.Isolation != tenancy.IsolationDatabase {
		if err := db.checkPool(ctx, db.pool, &db.checked); err != nil {
			return err
		}
		db.janitor.Ready(ctx)
	}
	conn, err := handle.Conn(ctx)
	if err != nil {
		return unavailable(s.tenant, fmt.Errorf("tenancypgx: begin tenant transaction: %w", err))
	}
	defer conn.Close()
	// Not bound to ctx: database/sql rolls a transaction back from a goroutine of its own when its
	// context ends, and may close conn there while the deferred reset below uses it (a race
	// inside database/sql that dereferences a nil connection). The unit's statements still run
	// with ctx, the end below too, and an unfinished unit is always rolled back here.
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return fmt.Errorf("tenancypgx: begin tenant transaction: %w", err)
	}
	committed, pinned := false, false
	defer func() {
		if committed {
			return
		}
		p := recover()
		if pinned && !tampered(err) && !sqlConnClosed(conn) {
			// Behind a pooler: rolled back to the unit's savepoint and reset inside the
			// transaction, on the server session the unit ran on (see end).
			protocol := resetSQLPinned(ctx, tx, db.key)
			if protocol < 0 {
				_ = j.Sweep(ctx, database)
			}
			keepSQLConn(conn, protocol, func(c *pgx.Conn, protocol int32) bool {
				return !lostStatement(err) && keptAfterRollback(c, protocol, err)
			})
			if p != nil {
				panic(p)
			}
			return
		}
		_ = tx.Rollback()
		if tampered(err) || sqlConnClosed(conn) {
			// As end does: remove role defaults the unit may have made (its session may have
			// ended itself), close the connection.
			_ = j.Sweep(ctx, database)
			keepSQLConn(conn, -1, nil)
		} else {
			resetSQLConn(ctx, conn, db.key, j, database, err)
		}
		if p != nil {
			panic(p)
		}
	}()
	if pooled {
		if _, err = tx.ExecContext(ctx, unitSavepoint); err != nil {
			return fmt.Errorf("tenancypgx: begin tenant transaction: %w", err)
		}
		pinned = true
	}
	scopeSQL, args := db.scopeArgs(s)
	var ignore []byte
	var start time.Time
	dest := []any{&ignore, &ignore, &start, &ignore}
	if s.schema != "" {
		dest = []any{&ignore, &ignore, &ignore, &start, &ignore}
	}
	if err = tx.QueryRowContext(ctx, scopeSQL, args...).Scan(dest...); err != nil {
		return fenced(fmt.Errorf("tenancypgx: scope tenant transaction: %w", err))
	}
	if err = fn(tx); err != nil {
		return err
	}
	// The deferred rollback resets, or closes a connection whose unit of work ended its
	// transaction or changed a role, when the end below fails.
	// Unnamed (pgx's exec mode), as in commitAfter: SQL in the unit cannot have swapped it.
	endSQL, count, keep := pgsession.ResetTxSQL, pgsession.ResetCount, kept
	if s.own() { // the tenant's own connection (see endOwn)
		endSQL, count = pgsession.EndUnitSQL, pgsession.EndCount
		keep = func(_ *pgx.Conn, protocol int32) bool { return protocol >= 0 }
	}
	nonce, answer := pgsession.NewNonce(), ""
	if err = tx.QueryRowContext(ctx, endSQL, pgx.QueryExecModeExec, start, nonce).Scan(&answer); err != nil {
		return err
	}
	protocol := count(db.key, nonce, answer)
	if err = tx.Commit(); err != nil {
		return err
	}
	committed = true
	keepSQLConn(conn, protocol, keep)
	return nil
}

// unavailable marks a failure to connect to a database tenant's database as
// tenancy.ErrTenantUnavailable, as the router does for Tx.
func unavailable(t *tenancy.Tenant, err error) error {
	var ce *pgconn.ConnectError
	if t.Isolation == tenancy.IsolationDatabase && errors.As(err, &ce) {
		return fmt.Errorf("%w: %s: %w", tenancy.ErrTenantUnavailable, t.Slug, err)
	}
	return err
}

// resetSQLPinned rolls a database/sql unit back to its savepoint, resets the session and rolls
// the transaction back, all inside the transaction (see resetPinned), and returns the reset's
// count, -1 when anything failed.
func resetSQLPinned(ctx context.Context, tx *sql.Tx, key *tenancycatalog.BindingKey) int32 {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	nonce, answer := pgsession.NewNonce(), ""
	_, err := tx.ExecContext(rctx, rollbackToUnit)
	if err == nil {
		err = tx.QueryRowContext(rctx, pgsession.ResetSQL, nonce).Scan(&answer)
	}
	if rerr := tx.Rollback(); err == nil {
		err = rerr
	}
	if err != nil {
		return -1
	}
	return pgsession.ResetCount(key, nonce, answer)
}

// resetSQLConn resets conn's session after a rollback, or discards the connection when it cannot
// (and then removes the role's session defaults through j, as end does).
func resetSQLConn(ctx context.Context, conn *sql.Conn, key *tenancycatalog.BindingKey, j sweeper, database string, cause error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	protocol := int32(-1)
	nonce, answer := pgsession.NewNonce(), ""
	if err := conn.QueryRowContext(rctx, pgsession.ResetSQL, nonce).Scan(&answer); err == nil {
		protocol = pgsession.ResetCount(key, nonce, answer)
	}
	if protocol < 0 {
		_ = j.Sweep(rctx, database)
	}
	keepSQLConn(conn, protocol, func(c *pgx.Conn, protocol int32) bool {
		return !lostStatement(cause) && keptAfterRollback(c, protocol, cause)
	})
}

// sqlConnClosed reports whether the pgx connection under conn is closed.
func sqlConnClosed(conn *sql.Conn) bool {
	closed := false
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		closed = ok && c.Conn().IsClosed()
		return nil
	})
	return closed || errors.Is(err, sql.ErrConnDone)
}

// keepSQLConn discards conn unless its session may be reused (keep: kept, or keptAfterRollback;
// nil: never):
// it closes the pgx connection underneath (a handle over a pool would otherwise give it back to
// the pool) and tells database/sql the connection is bad.
func keepSQLConn(conn *sql.Conn, protocol int32, keep func(*pgx.Conn, int32) bool) {
	_ = conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if ok && keep != nil && keep(c.Conn(), protocol) {
			return nil
		}
		if ok {
			pgsession.Discard(context.Background(), c.Conn())
		}
		return driver.ErrBadConn
	})
}

// checkPool runs the first-use checks (login role, binding key) on a connection of pool.
func (db *DB) checkPool(ctx context.Context, pool *pgxpool.Pool, c *pgsession.CheckOnce) error {
	if c.Passed() {
		return nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return c.Do(ctx, conn.Conn(), db.check.Run)
}
