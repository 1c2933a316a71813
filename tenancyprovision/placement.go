package tenancyprovision

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// PlacementMigrator is a TenantMigrator that can also make a new placement of a tenant for a move
// (tenancymove): tenancymigrate.Migrator.
type PlacementMigrator interface {
	TenantMigrator
	// MigrateSchema applies the whole tenant line to a new schema, recording nothing.
	MigrateSchema(ctx context.Context, schema string) (int, error)
	// SharedSchema is the schema of the shared-model tenants' tables.
	SharedSchema() string
}

// ErrPlacementInUse means Prepare or Discard was asked to touch the placement the catalog says the
// tenant lives in.
var ErrPlacementInUse = errors.New("tenancyprovision: the tenant lives in that placement")

// Prepare makes placement p ready to receive the rows of t, a tenant that lives elsewhere, without
// changing where the catalog says it lives: for the schema model, a new schema carrying the whole
// tenant line; for the database model, a new database on p.Server, a copy of the template; for
// the shared model, nothing to make. What an earlier placement of t left at p (a move's old data,
// not yet finalized) is removed first — in the shared tables, t's rows. It returns the tenant
// line's version at p. opts.Role is granted the schema.
func Prepare(ctx context.Context, c *tenancycatalog.Catalog, t *tenancy.Tenant, p tenancycatalog.Placement, m PlacementMigrator, opts *ProvisionOpts) (int, error) {
	if tenancycatalog.PlacementOf(t) == p {
		return 0, fmt.Errorf("%w: %s is in %s already", ErrPlacementInUse, t.Slug, p)
	}
	role := tenancycatalog.DefaultRole
	if opts != nil && opts.Role != "" {
		role = opts.Role
	}
	if err := Discard(ctx, c, t, p); err != nil {
		return 0, err
	}
	switch p.Isolation {
	case tenancy.IsolationShared:
		return tenancycatalog.LineVersion(ctx, c.Pool(), tenancycatalog.SharedTarget)
	case tenancy.IsolationSchema:
		schema, err := tenancycatalog.QuotedSchema(t.ID)
		if err != nil {
			return 0, err
		}
		if _, err := c.Pool().Exec(ctx, "CREATE SCHEMA "+schema+"; GRANT USAGE ON SCHEMA "+schema+" TO "+
			pgx.Identifier{role}.Sanitize()); err != nil {
			return 0, err
		}
		return m.MigrateSchema(ctx, tenancycatalog.SchemaName(t.ID))
	case tenancy.IsolationDatabase:
		if err := makeTenantDatabase(ctx, c, t.ID, p.Server, m); err != nil {
			return 0, err
		}
		return m.Latest(), nil
	}
	return 0, fmt.Errorf("%w: %s", tenancy.ErrIsolationNotSupported, p.Isolation)
}

// Discard removes the data of t at placement p, which must not be where the catalog says t lives:
// its schema, its database, or its rows in the shared tables. A move's old placement is discarded
// when the move is finalized, its new one when it is aborted.
func Discard(ctx context.Context, c *tenancycatalog.Catalog, t *tenancy.Tenant, p tenancycatalog.Placement) error {
	current, err := c.TenantByID(ctx, t.ID)
	if err != nil {
		return err
	}
	if tenancycatalog.PlacementOf(current) == p {
		return fmt.Errorf("%w: refusing to remove %s's data in %s", ErrPlacementInUse, t.Slug, p)
	}
	switch p.Isolation {
	case tenancy.IsolationDatabase:
		return dropDatabaseOf(ctx, c, t.ID, p.Server)
	case tenancy.IsolationSchema:
		schema, err := tenancycatalog.QuotedSchema(t.ID)
		if err != nil {
			return err
		}
		_, err = c.Pool().Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		return err
	case tenancy.IsolationShared:
		key, err := c.BindingKey(ctx)
		if err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, c.Pool(), func(tx pgx.Tx) error { return purgeSharedRows(ctx, tx, t.ID, key) })
	}
	return fmt.Errorf("%w: %s", tenancy.ErrIsolationNotSupported, p.Isolation)
}
