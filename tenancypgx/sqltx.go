package tenancypgx

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"tenancy"
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
		db.sql.exec = stdlib.OpenDB(*cfg)
		db.sql.exec.SetMaxOpenConns(int(db.pool.Config().MaxConns))
	})
	return db.sql.exec
}

// Close closes the database/sql handles SQLDB and SQLTx opened. It does not close the pool.
func (db *DB) Close() error {
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
// guarantees — the runtime role, app.tenant_id set for this transaction only, rollback on error,
// panic or cancellation, tenancy.ErrNoTenant without a tenant. database/sql cannot pipeline, so
// BEGIN and the scoping are two round trips here instead of one. Schema-model tenants get
// connections that prepare nothing (pgx's exec mode), so a statement cached for one tenant's
// schema is never run against another's; Close releases them.
func (db *DB) SQLTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	s, err := db.tenant(ctx)
	if err != nil {
		return err
	}
	handle := db.SQLDB()
	switch {
	case s.schema != "":
		handle = db.execSQLDB()
	case s.tenant.Isolation == tenancy.IsolationDatabase:
		lease, err := db.router.Lease(ctx, s.tenant)
		if err != nil {
			return err
		}
		defer func() { lease.Done(err) }()
		handle = lease.SQLDB()
	}
	tx, err := handle.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tenancypgx: begin tenant transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	scopeSQL, args := db.scopeArgs(s)
	if _, err = tx.ExecContext(ctx, scopeSQL, args...); err != nil {
		return fmt.Errorf("tenancypgx: scope tenant transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
