package tenancycatalog

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/internal/lockkey"
)

//go:embed sql/catalog/*.sql
var catalogSQL embed.FS

// MigrateCatalog creates or upgrades the catalog schema "tenancy" to the version this package
// embeds: the tenant registry, the runtime role tenancy_app (a login role that can become no
// one else), the function tenancy.isolate, and the binding key (see BindingKey), made once at
// random. pool must log in as a role that may create roles and owns the database (the
// migration role, never the runtime role). It
// runs in one transaction under an advisory lock: concurrent callers (many instances starting at
// once) wait for each other and the later ones find nothing to do. It returns the versions it
// applied.
func MigrateCatalog(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	ms, err := ReadMigrations(catalogSQL, "sql/catalog")
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: %w", err)
	}
	applied, err := apply(ctx, pool, migrationLine{
		Migrations: ms, Ledger: pgx.Identifier{"tenancy", "catalog_migrations"}, Lock: lockkey.Catalog,
	})
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: migrate catalog: %w", err)
	}
	key, err := newBindingKey()
	if err != nil {
		return nil, err
	}
	if err := storeBindingKey(ctx, pool, key, false); err != nil { // the first run's key stays
		return nil, err
	}
	return applied, nil
}

// DefaultRole is the runtime role that MigrateCatalog creates: the role the runtime pool logs in
// as (tenancypgx.RuntimeURL), and the one tenancy.isolate grants tenant tables to.
const DefaultRole = "tenancy_app"
