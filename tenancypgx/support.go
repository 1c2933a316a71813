package tenancypgx

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tenancy/internal/migration"
)

// supportLockKey serializes installations of the isolation support in one database.
const supportLockKey int64 = 0x74656e616e6373 + 1

// InstallSupport installs in the database behind conn what tenant tables need there — the runtime
// role tenancy_app and the function tenancy.isolate, exactly as the catalog has them — so a
// database-model tenant's own database can carry the tenant line. It is idempotent.
func InstallSupport(ctx context.Context, conn migration.Beginner) error {
	ms, err := migration.Read(catalogSQL, "sql/catalog")
	if err != nil {
		return err
	}
	var support []migration.Migration
	for _, m := range ms {
		if m.Name == "0002_isolation.sql" {
			support = append(support, m)
		}
	}
	if len(support) != 1 {
		return fmt.Errorf("tenancypgx: the isolation support migration is missing")
	}
	_, err = migration.Apply(ctx, conn, migration.Line{Migrations: support,
		Ledger: pgx.Identifier{"tenancy", "support_migrations"}, Lock: supportLockKey})
	if err != nil {
		return fmt.Errorf("tenancypgx: install isolation support: %w", err)
	}
	return nil
}
