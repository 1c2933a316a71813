package tenancytest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenancy/tenancypgx"
)

// NewCatalog gives t a database of its own (NewDatabase) with the tenant catalog migrated, and
// returns a pool on it (closed when t ends) and the catalog.
func NewCatalog(t testing.TB) (*pgxpool.Pool, *tenancypgx.Catalog) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, NewDatabase(t))
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := tenancypgx.MigrateCatalog(ctx, pool); err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	cat, err := tenancypgx.NewCatalog(pool, nil)
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	return pool, cat
}
