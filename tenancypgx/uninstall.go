package tenancypgx

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/lockkey"
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
func (c *Catalog) Uninstall(ctx context.Context) (*UninstallReport, error) {
	rep := &UninstallReport{Schemas: []string{}, Databases: []string{}, Templates: []string{}}
	prefix, err := c.templatePrefix(ctx)
	if err != nil {
		return nil, err
	}
	tenants, err := c.List(ctx, &ListOpts{IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	for _, t := range tenants {
		switch t.Isolation {
		case tenancy.IsolationSchema:
			schema, err := quotedSchema(t.ID)
			if err != nil {
				return rep, err
			}
			if _, err := c.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
				return rep, fmt.Errorf("tenancypgx: uninstall: schema of %s: %w", t.Slug, err)
			}
			rep.Schemas = append(rep.Schemas, SchemaName(t.ID))
		case tenancy.IsolationDatabase:
			if t.Database == "" {
				continue
			}
			if err := c.dropTenantDatabase(ctx, t); err != nil {
				return rep, fmt.Errorf("tenancypgx: uninstall: database of %s: %w", t.Slug, err)
			}
			rep.Databases = append(rep.Databases, t.Server+"/"+t.Database)
		}
	}
	for _, alias := range c.servers.Aliases() {
		maint, err := c.maintenance(ctx, alias)
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
			return rep, fmt.Errorf("tenancypgx: uninstall: templates on %s: %w", alias, err)
		}
		for _, n := range names {
			rep.Templates = append(rep.Templates, alias+"/"+n)
		}
	}
	if _, err := c.pool.Exec(ctx, "DROP SCHEMA IF EXISTS tenancy CASCADE"); err != nil {
		return rep, fmt.Errorf("tenancypgx: uninstall: the catalog: %w", err)
	}
	return rep, nil
}
