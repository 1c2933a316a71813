package tenancypgx

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
)

// TemplateDatabase returns the name of the template database that new database tenants of this
// catalog are copied from, on each server, for the tenant line of m: "tenancy_template_", a tag
// of this catalog (a digest of its database's name and the binding key's fingerprint), and a
// digest of the line and the isolation support's version — so another catalog, another line or
// older support never shares it, and a catalog's superseded templates are known as its own.
func (c *Catalog) TemplateDatabase(ctx context.Context, m TenantMigrator) (string, error) {
	prefix, err := c.templatePrefix(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", m.LineHash(), SupportVersion)))
	return prefix + hex.EncodeToString(h[:8]), nil
}

// TemplatePrefix is the start of the name of every template database this catalog makes (see
// TemplateDatabase): the audit tells its own templates from others' by it.
func (c *Catalog) TemplatePrefix(ctx context.Context) (string, error) { return c.templatePrefix(ctx) }

// templatePrefix is the start of every template database name of this catalog.
func (c *Catalog) templatePrefix(ctx context.Context) (string, error) {
	key, err := c.BindingKey(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(c.pool.Config().ConnConfig.Database + "\x00" + key.fingerprint()))
	return "tenancy_template_" + hex.EncodeToString(h[:6]) + "_", nil
}

// createTenantDatabase places t on server and creates its database as a copy of the server's
// template, bringing the template up to the tenant line first when it is behind. Copying a
// migrated database is much faster than migrating a new one: the whole tenant line is one file
// copy.
func (c *Catalog) createTenantDatabase(ctx context.Context, t *tenancy.Tenant, m TenantMigrator, server string) error {
	name := DatabaseName(t.ID)
	if !schemaPattern.MatchString(name) {
		return fmt.Errorf("tenancypgx: no database name for tenant id %q", t.ID)
	}
	if _, err := c.servers.ConnConfig(server, "postgres"); err != nil { // an unknown server: before recording it
		return err
	}
	if _, err := c.pool.Exec(ctx, `UPDATE tenancy.tenants SET server = $2, database_name = $3 WHERE id = $1`,
		t.ID, server, name); err != nil {
		return catalogError(err, t.Slug)
	}
	t.Server, t.Database = server, name

	maint, err := c.maintenance(ctx, server)
	if err != nil {
		return err
	}
	defer maint.Close(context.WithoutCancel(ctx))
	if _, err := maint.Exec(ctx, "SELECT pg_advisory_lock($1)", lockkey.Template); err != nil {
		return err
	}
	defer maint.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockkey.Template)

	template, err := c.TemplateDatabase(ctx, m)
	if err != nil {
		return err
	}
	if err := c.refreshTemplate(ctx, server, template, maint, m); err != nil {
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
	// The copy carries the whole tenant line: record it, with no connection to the new database.
	if _, err := c.pool.Exec(ctx, `INSERT INTO tenancy.tenant_line (target, tenant_id, version, support, last_error, updated_at)
		VALUES ($1, $2, $3, $4, NULL, now())
		ON CONFLICT (target) DO UPDATE SET version = EXCLUDED.version, support = EXCLUDED.support, last_error = NULL, updated_at = now()`,
		t.ID, t.ID, m.Latest(), SupportVersion); err != nil {
		return err
	}
	return nil
}

// refreshTemplate makes sure the server's template exists and carries the whole tenant line; it
// leaves no connection to it (a database with connections cannot be copied). A template marked
// IS_TEMPLATE is complete — its name fixes its tenant line — so it is not even connected to.
func (c *Catalog) refreshTemplate(ctx context.Context, server, template string, maint *pgx.Conn, m TenantMigrator) error {
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
	cfg, err := c.servers.ConnConfig(server, template)
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
	prefix, err := c.templatePrefix(ctx)
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
func (c *Catalog) dropTenantDatabase(ctx context.Context, t *tenancy.Tenant) error {
	if t.Server == "" || t.Database == "" {
		return nil // never placed
	}
	if !schemaPattern.MatchString(t.Database) {
		return fmt.Errorf("tenancypgx: refusing to drop %q: not a tenant database name", t.Database)
	}
	conn, err := c.maintenance(ctx, t.Server)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{t.Database}.Sanitize()+" WITH (FORCE)")
	return err
}

// maintenance connects to the "postgres" database of a server, where databases are made and dropped.
func (c *Catalog) maintenance(ctx context.Context, server string) (*pgx.Conn, error) {
	cfg, err := c.servers.ConnConfig(server, "postgres")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", server, err)
	}
	return conn, nil
}

// DropTemplate drops the template database of m's tenant line on a server, if there is one.
func (c *Catalog) DropTemplate(ctx context.Context, server string, m TenantMigrator) error {
	conn, err := c.maintenance(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name, err := c.TemplateDatabase(ctx, m)
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
