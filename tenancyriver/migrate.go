package tenancyriver

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// Migrate creates or upgrades River's tables with River's own migrator (rivermigrate), in the
// database of pool — the catalog's, as the migration role — and returns the versions it applied.
// The runtime role gets no grant on them: jobs are inserted and worked by the service's own
// login, never by SQL a tenant's unit of work runs.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
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
