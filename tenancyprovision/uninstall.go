package tenancyprovision

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/lockkey"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// UninstallReport says what Uninstall removed.
type UninstallReport struct {
	Schemas   []string `json:"schemas"`
	Databases []string `json:"databases"` // server/database
	Templates []string `json:"templates"` // server/database
}

// Uninstall removes everything this catalog made, then the catalog: the schema of every schema
// tenant, the database of every database tenant (on its server), the template databases of its
// tenant lines on every configured server, and the schema tenancy (tenants, domains, the binding
// key, the ledgers). Deleted tenants not yet purged go too. What stays: the tables of the shared
// schema, which are your migration lines', and the runtime role, which every catalog on the
// server shares. It cannot be undone; pool must log in as the migration role.
func Uninstall(ctx context.Context, c *tenancycatalog.Catalog) (*UninstallReport, error) {
	rep := &UninstallReport{Schemas: []string{}, Databases: []string{}, Templates: []string{}}
	prefix, err := templatePrefix(ctx, c)
	if err != nil {
		return nil, err
	}
	tenants, err := c.List(ctx, &tenancycatalog.ListOpts{IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	for _, t := range tenants {
		switch t.Isolation {
		case tenancy.IsolationSchema:
			schema, err := tenancycatalog.QuotedSchema(t.ID)
			if err != nil {
				return rep, err
			}
			if _, err := c.Pool().Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
				return rep, fmt.Errorf("tenancyprovision: uninstall: schema of %s: %w", t.Slug, err)
			}
			rep.Schemas = append(rep.Schemas, tenancycatalog.SchemaName(t.ID))
		case tenancy.IsolationDatabase:
			if t.Database == "" {
				continue
			}
			if err := dropTenantDatabase(ctx, c, t); err != nil {
				return rep, fmt.Errorf("tenancyprovision: uninstall: database of %s: %w", t.Slug, err)
			}
			rep.Databases = append(rep.Databases, t.Server+"/"+t.Database)
		}
	}
	for _, alias := range c.Servers().Aliases() {
		maint, err := c.Maintenance(ctx, alias)
		if err != nil {
			return rep, err
		}
		rows, err := maint.Query(ctx, `SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1`, prefix)
		var names []string
		if err == nil {
			names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err == nil {
			_, err = maint.Exec(ctx, "SELECT pg_advisory_lock($1)", lockkey.Template)
		}
		if err == nil {
			err = dropTemplates(ctx, maint, prefix, "")
			maint.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockkey.Template)
		}
		maint.Close(context.WithoutCancel(ctx))
		if err != nil {
			return rep, fmt.Errorf("tenancyprovision: uninstall: templates on %s: %w", alias, err)
		}
		for _, n := range names {
			rep.Templates = append(rep.Templates, alias+"/"+n)
		}
	}
	if err := c.Drop(ctx); err != nil {
		return rep, fmt.Errorf("tenancyprovision: uninstall: %w", err)
	}
	return rep, nil
}
