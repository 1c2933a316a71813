package tenancypgx

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/stdlib"
)

// sqlDB is the database/sql view of a DB's pool, opened on first use.
type sqlDB struct {
	once sync.Once
	db   *sql.DB
}

// SQLDB returns a *sql.DB over the same pool, for code that needs one outside tenant transactions
// (migrations, admin tasks). It runs as the pool's login role: use SQLTx for tenant data.
func (db *DB) SQLDB() *sql.DB {
	db.sql.once.Do(func() { db.sql.db = stdlib.OpenDBFromPool(db.pool) })
	return db.sql.db
}

// SQLTx is Tx for database/sql users (sqlc, GORM, ent, sqlx): fn gets a *sql.Tx with the same
// guarantees — the runtime role, app.tenant_id set for this transaction only, rollback on error,
// panic or cancellation, tenancy.ErrNoTenant without a tenant. database/sql cannot pipeline, so
// BEGIN and the scoping are two round trips here instead of one.
func (db *DB) SQLTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	t, err := db.tenant(ctx)
	if err != nil {
		return err
	}
	tx, err := db.SQLDB().BeginTx(ctx, nil)
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
	if db.role == "" {
		_, err = tx.ExecContext(ctx, db.scopeSQL, t.ID)
	} else {
		_, err = tx.ExecContext(ctx, db.scopeSQL, db.role, t.ID)
	}
	if err != nil {
		return fmt.Errorf("tenancypgx: scope tenant transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
