package tenancyriver

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/gotenancy/tenancy/internal/lockkey"
)

// Schema is the schema River's tables are made in, in the catalog's database: give it to
// river.Config.Schema. A schema of their own keeps them out of the shared schema, where the
// tenants' tables are; the runtime role has no privilege on it.
const Schema = "river"

// Migrate creates or upgrades River's tables in Schema with River's own migrator (rivermigrate),
// in the database of pool — the catalog's, as the migration role — and returns the versions it
// applied. Concurrent callers (instances starting at once) wait for each other.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenancyriver: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockkey.River); err != nil {
		return nil, fmt.Errorf("tenancyriver: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockkey.River)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema); err != nil {
		return nil, fmt.Errorf("tenancyriver: %w", err)
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: Schema})
	if err != nil {
		return nil, fmt.Errorf("tenancyriver: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("tenancyriver: migrate River's tables: %w", err)
	}
	versions := make([]int, 0, len(res.Versions))
	for _, v := range res.Versions {
		versions = append(versions, v.Version)
	}
	return versions, nil
}

// Uninstall removes River's tables (the Schema, and every job in it) from the database of pool:
// for `tenancy uninstall`.
func Uninstall(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+Schema+" CASCADE"); err != nil {
		return fmt.Errorf("tenancyriver: %w", err)
	}
	return nil
}
