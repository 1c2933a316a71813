package tenancyprovision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// TenantMigrator applies the tenant migration line. tenancymigrate.Migrator implements it.
type TenantMigrator interface {
	// MigrateTenant applies the pending tenant line to one tenant's schema or database.
	MigrateTenant(ctx context.Context, t *tenancy.Tenant) error
	// MigrateDatabase installs the isolation support and applies the pending tenant line in the
	// database behind conn, returning its version afterwards (for the template database).
	MigrateDatabase(ctx context.Context, conn *pgx.Conn) (int, error)
	// LineHash identifies the tenant line's content: templates are kept per line.
	LineHash() string
	// Latest is the version of the tenant line's last migration.
	Latest() int
}

// ProvisionOpts tunes Provision. A nil *ProvisionOpts means the defaults.
type ProvisionOpts struct {
	// Role is the runtime role that is granted the tenant's schema. Defaults to tenancycatalog.DefaultRole.
	Role string
	// Server is the alias of the server a database-model tenant's database is made on. Defaults
	// to tenancycatalog.DefaultServer.
	Server string
}

// ErrNotProvisioning means Provision was asked to set up a tenant that is not provisioning
// (tenancycatalog.ErrNotProvisioning).
var ErrNotProvisioning = tenancycatalog.ErrNotProvisioning

// Provision sets up a provisioning tenant and makes it active: for the schema model it creates
// the schema, grants the runtime role its use, and applies the tenant line with m; only then is
// the tenant marked active. When a step fails, what was made is removed, the error is recorded in
// the catalog (Tenant.ProvisionError, shown by `tenancy tenant show`) and returned; the tenant
// stays provisioning, refused to requests, and Provision may simply be called again.
func Provision(ctx context.Context, c *tenancycatalog.Catalog, id string, m TenantMigrator, opts *ProvisionOpts) (*tenancy.Tenant, error) {
	if m == nil {
		return nil, errors.New("tenancyprovision: Provision needs a TenantMigrator (tenancymigrate.New)")
	}
	role, server := tenancycatalog.DefaultRole, tenancycatalog.DefaultServer
	if opts != nil && opts.Role != "" {
		role = opts.Role
	}
	if opts != nil && opts.Server != "" {
		server = opts.Server
	}
	t, err := c.TenantByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status != tenancy.StatusProvisioning {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotProvisioning, t.Slug, t.Status)
	}
	if err := provision(ctx, c, t, m, role, server); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := unprovision(cctx, c, t, err); cerr != nil {
			return nil, fmt.Errorf("tenancyprovision: provision %s: %w (and cleaning up failed: %v)", t.Slug, err, cerr)
		}
		return nil, fmt.Errorf("tenancyprovision: provision %s: %w", t.Slug, err)
	}
	if err := c.Activate(ctx, t.ID); err != nil {
		return nil, fmt.Errorf("tenancyprovision: provision %s: %w", t.Slug, err)
	}
	return c.TenantByID(ctx, t.ID)
}

func provision(ctx context.Context, c *tenancycatalog.Catalog, t *tenancy.Tenant, m TenantMigrator, role, server string) error {
	switch t.Isolation {
	case tenancy.IsolationDatabase:
		return createTenantDatabase(ctx, c, t, m, server)
	case tenancy.IsolationSchema:
		schema, err := tenancycatalog.QuotedSchema(t.ID)
		if err != nil {
			return err
		}
		if _, err := c.Pool().Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema+"; GRANT USAGE ON SCHEMA "+schema+" TO "+
			pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
	case tenancy.IsolationShared:
		// Nothing to make: the shared schema carries the tenant line for every shared tenant.
		return nil
	default:
		return fmt.Errorf("%w: %s", tenancy.ErrIsolationNotSupported, t.Isolation)
	}
	return m.MigrateTenant(ctx, t)
}

// unprovision removes what a failed provisioning made and records why it failed.
func unprovision(ctx context.Context, c *tenancycatalog.Catalog, t *tenancy.Tenant, cause error) error {
	if t.Isolation == tenancy.IsolationDatabase {
		if err := dropTenantDatabase(ctx, c, t); err != nil {
			return err
		}
	}
	return pgx.BeginFunc(ctx, c.Pool(), func(tx pgx.Tx) error {
		if t.Isolation == tenancy.IsolationSchema {
			schema, err := tenancycatalog.QuotedSchema(t.ID)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
				return err
			}
		}
		return tenancycatalog.ProvisionFailed(ctx, tx, t.ID, cause)
	})
}

// ErrNotDeleted means Purge was asked to remove a tenant that is not deleted.
var ErrNotDeleted = errors.New("tenancyprovision: only a deleted tenant can be purged: delete it first")

// Purge removes a deleted tenant for good: its database (database model), its schema (schema
// model) or its rows in the shared tables (shared model), then its catalog entry, domains and
// ledger. Deleting is a separate, earlier
// step (Delete), so no single mistaken call destroys a live tenant's data. It returns
// ErrNotDeleted for a tenant that is not deleted, tenancy.ErrTenantNotFound for an unknown one.
func Purge(ctx context.Context, c *tenancycatalog.Catalog, id string) error {
	t, err := c.TenantByID(ctx, id)
	if err != nil {
		return err
	}
	if t.Status != tenancy.StatusDeleted {
		return fmt.Errorf("%w (%s is %s)", ErrNotDeleted, t.Slug, t.Status)
	}
	if t.Isolation == tenancy.IsolationDatabase {
		if err := dropTenantDatabase(ctx, c, t); err != nil {
			return fmt.Errorf("tenancyprovision: purge %s: %w", t.Slug, err)
		}
	}
	err = pgx.BeginFunc(ctx, c.Pool(), func(tx pgx.Tx) error {
		switch t.Isolation {
		case tenancy.IsolationDatabase: // dropped above
		case tenancy.IsolationSchema:
			schema, err := tenancycatalog.QuotedSchema(t.ID)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
				return err
			}
		case tenancy.IsolationShared:
			key, err := c.BindingKey(ctx)
			if err != nil {
				return err
			}
			if err := purgeSharedRows(ctx, tx, t.ID, key); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %s", tenancy.ErrIsolationNotSupported, t.Isolation)
		}
		return tenancycatalog.Remove(ctx, tx, t.ID)
	})
	if err != nil {
		return fmt.Errorf("tenancyprovision: purge %s: %w", t.Slug, err)
	}
	return nil
}

// sharedTenantTables lists the tenant tables outside tenant schemas and the catalog.
const sharedTenantTables = `
SELECT c.oid::regclass::text
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenancy') AND n.nspname NOT LIKE 'pg_toast%'
   AND n.nspname !~ '^tenant_[0-9a-f]{32}$'`

// purgeSharedRows deletes the tenant's rows from every shared tenant table. Tables referencing
// others must be emptied first; without knowing the order it retries the tables a foreign key
// held back until a pass makes no progress.
func purgeSharedRows(ctx context.Context, tx pgx.Tx, id string, key *tenancycatalog.BindingKey) error {
	// Through row-level security too, for an owner that is not a superuser.
	if err := key.Bind(ctx, tx, id); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, sharedTenantTables)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for len(tables) > 0 {
		var held []string
		var lastErr error
		for _, table := range tables {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			// table comes from regclass output: already a quoted, qualified name.
			_, err = sp.Exec(ctx, "DELETE FROM "+table+" WHERE tenant_id = $1", id)
			var pgErr *pgconn.PgError
			switch {
			case err == nil:
				if err := sp.Commit(ctx); err != nil {
					return err
				}
			case errors.As(err, &pgErr) && pgErr.Code == "23503": // still referenced: later
				if err := sp.Rollback(ctx); err != nil {
					return err
				}
				held, lastErr = append(held, table), err
			default:
				return err
			}
		}
		if len(held) == len(tables) {
			return lastErr
		}
		tables = held
	}
	return nil
}
