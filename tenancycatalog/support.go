package tenancycatalog

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy/internal/lockkey"
)

// supportMigrations are the catalog migrations that a database tenant's own database carries
// too: the runtime role, tenancy.isolate (and its quiet), the binding, the session reset and
// shared tables.
var supportMigrations = []string{"0002_isolation.sql", "0006_binding.sql", "0009_shared_tables.sql", "0012_proven_reset.sql", "0013_unit_end.sql",
	"0014_move_fence.sql", "0017_quiet_isolate.sql"}

// SupportVersion is the version of the isolation support InstallSupport installs (the last
// support migration's). tenancymigrate records it per database tenant, so older tenant databases
// are brought up to it.
const SupportVersion = 17

// InstallSupport installs in the database behind conn what tenant tables need there — the runtime
// role tenancy_app, the function tenancy.isolate, tenancy.current_tenant and
// tenancy.reset_session, exactly as the catalog has them — and the catalog's binding key, so a
// database-model tenant's own database can carry the tenant line. It is idempotent; conn must log
// in as the migration role.
func InstallSupport(ctx context.Context, conn Beginner, key *BindingKey) error {
	if key == nil {
		return errors.New("tenancycatalog: InstallSupport needs the catalog's BindingKey (Catalog.BindingKey)")
	}
	ms, err := ReadMigrations(catalogSQL, "sql/catalog")
	if err != nil {
		return err
	}
	var support []Migration
	for _, m := range ms {
		if slices.Contains(supportMigrations, m.Name) {
			support = append(support, m)
		}
	}
	if len(support) != len(supportMigrations) || support[len(support)-1].Version != SupportVersion {
		return fmt.Errorf("tenancycatalog: the isolation support migrations are missing")
	}
	_, err = apply(ctx, conn, migrationLine{Migrations: support,
		Ledger: pgx.Identifier{"tenancy", "support_migrations"}, Lock: lockkey.Support})
	if err != nil {
		return fmt.Errorf("tenancycatalog: install isolation support: %w", err)
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		return storeBindingKey(ctx, tx, key, true)
	})
}
