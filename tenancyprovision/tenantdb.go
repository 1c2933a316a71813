package tenancyprovision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/lockkey"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// TemplateDatabase returns the name of the template database that new database tenants of this
// catalog are copied from, on each server, for the tenant line of m: "tenancy_template_", a tag
// of this catalog (a digest of its database's name and the binding key's fingerprint), and a
// digest of the line and the isolation support's version — so another catalog, another line or
// older support never shares it, and a catalog's superseded templates are known as its own.
func TemplateDatabase(ctx context.Context, c *tenancycatalog.Catalog, m TenantMigrator) (string, error) {
	prefix, err := templatePrefix(ctx, c)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", m.LineHash(), tenancycatalog.SupportVersion)))
	return prefix + hex.EncodeToString(h[:8]), nil
}

// TemplatePrefix is the start of the name of every template database this catalog makes (see
// TemplateDatabase): the audit tells its own templates from others' by it.
func TemplatePrefix(ctx context.Context, c *tenancycatalog.Catalog) (string, error) {
	return templatePrefix(ctx, c)
}

// templatePrefix is the start of every template database name of this catalog.
func templatePrefix(ctx context.Context, c *tenancycatalog.Catalog) (string, error) {
	tag, err := c.Tag(ctx)
	if err != nil {
		return "", err
	}
	return "tenancy_template_" + tag + "_", nil
}

// createTenantDatabase places t on server and creates its database as a copy of the server's
// template, bringing the template up to the tenant line first when it is behind. Copying a
// migrated database is much faster than migrating a new one: the whole tenant line is one file
// copy.
func createTenantDatabase(ctx context.Context, c *tenancycatalog.Catalog, t *tenancy.Tenant, m TenantMigrator, server string) error {
	name := tenancycatalog.DatabaseName(t.ID)
	if name == "" {
		return fmt.Errorf("tenancyprovision: no database name for tenant id %q", t.ID)
	}
	if err := c.Place(ctx, t.ID, server, name); err != nil {
		return err
	}
	t.Server, t.Database = server, name
	if err := makeTenantDatabase(ctx, c, t.ID, server, m); err != nil {
		return err
	}
	// The copy carries the whole tenant line: record it, with no connection to the new database.
	return tenancycatalog.RecordLine(ctx, c.Pool(), tenancycatalog.LineEntry{Target: t.ID, TenantID: t.ID,
		Version: m.Latest(), Support: tenancycatalog.SupportVersion})
}

// makeTenantDatabase creates the database of tenant id on server as a copy of the server's
// template (see createTenantDatabase), recording nothing in the catalog.
func makeTenantDatabase(ctx context.Context, c *tenancycatalog.Catalog, id, server string, m TenantMigrator) error {
	name := tenancycatalog.DatabaseName(id)
	if name == "" {
		return fmt.Errorf("tenancyprovision: no database name for tenant id %q", id)
	}
	maint, err := c.Maintenance(ctx, server)
	if err != nil {
		return err
	}
	defer maint.Close(context.WithoutCancel(ctx))
	if _, err := maint.Exec(ctx, "SELECT pg_advisory_lock($1)", lockkey.Template); err != nil {
		return err
	}
	defer maint.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockkey.Template)

	template, err := TemplateDatabase(ctx, c, m)
	if err != nil {
		return err
	}
	if err := refreshTemplate(ctx, c, server, template, maint, m); err != nil {
		return fmt.Errorf("template database on %s: %w", server, err)
	}
	quoted := pgx.Identifier{name}.Sanitize()
	if _, err := maint.Exec(ctx, "CREATE DATABASE "+quoted+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	// A database's privileges are not copied from its template: the runtime role gets no TEMP
	// (temporary objects would outlive its transactions on a pooled connection).
	if _, err := maint.Exec(ctx, "REVOKE TEMPORARY ON DATABASE "+quoted+" FROM PUBLIC"); err != nil {
		return fmt.Errorf("database %s: %w", name, err)
	}
	return nil
}

// refreshTemplate makes sure the server's template exists and carries the whole tenant line; it
// leaves no connection to it (a database with connections cannot be copied). A template marked
// IS_TEMPLATE is complete — its name fixes its tenant line — so it is not even connected to.
func refreshTemplate(ctx context.Context, c *tenancycatalog.Catalog, server, template string, maint *pgx.Conn, m TenantMigrator) error {
	var complete bool
	err := maint.QueryRow(ctx, `SELECT datistemplate FROM pg_database WHERE datname = $1`, template).Scan(&complete)
	if err == nil && complete {
		return nil
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	_, err = maint.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{template}.Sanitize())
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") { // exists already
		return err
	}
	cfg, err := c.Servers().ConnConfig(server, template)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	version, err := m.MigrateDatabase(ctx, conn)
	if cerr := conn.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if version != m.Latest() {
		return fmt.Errorf("template %s is at version %d after migrating, want %d", template, version, m.Latest())
	}
	if _, err = maint.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{template}.Sanitize()+" IS_TEMPLATE true"); err != nil {
		return err
	}
	// The templates of this catalog's older lines are superseded: drop them (under the template
	// lock the caller holds, so no copy of one is in progress).
	prefix, err := templatePrefix(ctx, c)
	if err != nil {
		return err
	}
	return dropTemplates(ctx, maint, prefix, template)
}

// dropTemplates drops the template databases on maint's server whose names start with prefix,
// but keep.
func dropTemplates(ctx context.Context, maint *pgx.Conn, prefix, keep string) error {
	rows, err := maint.Query(ctx, `SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) AND datname <> $2`, prefix, keep)
	if err != nil {
		return err
	}
	old, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range old {
		tpl := pgx.Identifier{name}.Sanitize()
		if _, err := maint.Exec(ctx, "ALTER DATABASE "+tpl+" IS_TEMPLATE false"); err != nil { // a template cannot be dropped
			return err
		}
		if _, err := maint.Exec(ctx, "DROP DATABASE IF EXISTS "+tpl+" WITH (FORCE)"); err != nil {
			return err
		}
	}
	return nil
}

// dropTenantDatabase drops t's database, ending its sessions.
func dropTenantDatabase(ctx context.Context, c *tenancycatalog.Catalog, t *tenancy.Tenant) error {
	if t.Server == "" || t.Database == "" {
		return nil // never placed
	}
	if t.Database == "" || t.Database != tenancycatalog.DatabaseName(t.ID) {
		return fmt.Errorf("tenancyprovision: refusing to drop %q: not the database of tenant %s", t.Database, t.ID)
	}
	return dropDatabaseOf(ctx, c, t.ID, t.Server)
}

// dropDatabaseOf drops the database of tenant id on server, if there is one, ending its sessions.
func dropDatabaseOf(ctx context.Context, c *tenancycatalog.Catalog, id, server string) error {
	name := tenancycatalog.DatabaseName(id)
	if name == "" {
		return fmt.Errorf("tenancyprovision: no database name for tenant id %q", id)
	}
	conn, err := c.Maintenance(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// DropTemplate drops the template database of m's tenant line on a server, if there is one.
func DropTemplate(ctx context.Context, c *tenancycatalog.Catalog, server string, m TenantMigrator) error {
	conn, err := c.Maintenance(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name, err := TemplateDatabase(ctx, c, m)
	if err != nil {
		return err
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil || !exists {
		return err
	}
	tpl := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+tpl+" IS_TEMPLATE false"); err != nil { // a template cannot be dropped
		return err
	}
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+tpl+" WITH (FORCE)")
	return err
}
