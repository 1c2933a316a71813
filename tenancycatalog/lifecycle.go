package tenancycatalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
)

// ErrNotPlaceable means a placement was asked for a tenant that cannot take it: not a
// provisioning database-model tenant, or a database that is not the tenant's (DatabaseName).
var ErrNotPlaceable = errors.New("tenancycatalog: only a provisioning database tenant is placed, in its own database")

// Place records where a provisioning database-model tenant's database is: the server alias, and
// its database, which must be DatabaseName(id). An unknown server alias is refused before
// anything is recorded.
func (c *Catalog) Place(ctx context.Context, id, server, database string) error {
	if database == "" || database != DatabaseName(id) {
		return fmt.Errorf("%w: %q is not tenant %s's database", ErrNotPlaceable, database, id)
	}
	if _, err := c.servers.ConnConfig(server, "postgres"); err != nil {
		return err
	}
	tag, err := c.pool.Exec(ctx, `UPDATE tenancy.tenants SET server = $2, database_name = $3
		WHERE id = $1 AND status = 'provisioning' AND isolation = 'database'`, id, server, database)
	if err != nil {
		return catalogError(err, id)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: tenant %s", ErrNotPlaceable, id)
	}
	return nil
}

// Activate makes a provisioning tenant active, clearing its provisioning error: the last step of
// provisioning, once its schema or database carries the tenant line.
func (c *Catalog) Activate(ctx context.Context, id string) error {
	_, err := c.pool.Exec(ctx, `UPDATE tenancy.tenants SET status = 'active', provision_error = NULL
		WHERE id = $1 AND status = 'provisioning'`, id)
	if err != nil {
		return fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return nil
}

// ProvisionFailed records, in tx, why provisioning the tenant failed (Tenant.ProvisionError),
// forgets its placement and its ledger entries: it stays provisioning, ready to be provisioned
// again. A tenant that is not provisioning is refused (ErrNotProvisioning), untouched.
func ProvisionFailed(ctx context.Context, tx pgx.Tx, id string, cause error) error {
	tag, err := tx.Exec(ctx, `UPDATE tenancy.tenants SET provision_error = $2, server = NULL, database_name = NULL
		WHERE id = $1 AND status = 'provisioning'`, id, cause.Error())
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: tenant %s", ErrNotProvisioning, id)
	}
	_, err = tx.Exec(ctx, `DELETE FROM tenancy.tenant_line WHERE tenant_id = $1`, id)
	return err
}

// ErrNotProvisioning means provisioning work was asked of a tenant that is not provisioning.
var ErrNotProvisioning = errors.New("tenancycatalog: tenant is not provisioning")

// Remove deletes, in tx, a deleted tenant's catalog entry, domains and ledger entries: the last
// step of purging it, once its data is gone. A tenant that is not deleted is left alone.
func Remove(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `DELETE FROM tenancy.tenants WHERE id = $1 AND status = 'deleted'`, id)
	return err
}

// Drop drops the catalog: the schema tenancy with every table in it (tenants, domains, the
// binding key, the ledgers, accepted findings). What the catalog made elsewhere (tenant schemas
// and databases, templates) must be removed first: tenancyprovision.Uninstall does both.
func (c *Catalog) Drop(ctx context.Context) error {
	if _, err := c.pool.Exec(ctx, "DROP SCHEMA IF EXISTS tenancy CASCADE"); err != nil {
		return fmt.Errorf("tenancycatalog: drop the catalog: %w", err)
	}
	c.key.Store(nil)
	return nil
}

// OnDeleted returns an Invalidator for Watch that forgets what is kept about a tenant once it is
// deleted or purged: for each change to such a tenant it calls every forget function with it (a
// purged one, gone from the catalog, has only its ID). Give it what keeps per-tenant state — a
// tenant-scoped cache's flush (tenancycache.Cache.Forget), a rate limiter's reset
// (tenancyrate.Forget) — so a deleted tenant leaves nothing behind in them. Its Purge, which
// Watch calls after a reconnection, forgets every deleted tenant: deletions may have gone unheard.
// Changes to tenants that are not deleted are no concern of it.
func (c *Catalog) OnDeleted(forget ...func(context.Context, *tenancy.Tenant) error) tenancy.Invalidator {
	return &onDeleted{c: c, forget: forget}
}

type onDeleted struct {
	c      *Catalog
	forget []func(context.Context, *tenancy.Tenant) error
}

func (d *onDeleted) Invalidate(ctx context.Context, id string) error {
	t, err := d.c.TenantByID(ctx, id)
	switch {
	case errors.Is(err, tenancy.ErrTenantNotFound): // purged
		if !tenancy.IsID(id) {
			return nil
		}
		t = &tenancy.Tenant{ID: id}
	case err != nil:
		return err
	case t.Status != tenancy.StatusDeleted:
		return nil
	}
	return d.forgetAll(ctx, t)
}

// forgetAll calls every forget function with t, each even when another fails.
func (d *onDeleted) forgetAll(ctx context.Context, t *tenancy.Tenant) error {
	var errs []error
	for _, f := range d.forget {
		if err := f(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("forget deleted tenant %s: %w", t.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (d *onDeleted) Purge(ctx context.Context) error {
	deleted, err := d.c.List(ctx, &ListOpts{Status: tenancy.StatusDeleted}) // one query, whole rows
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range deleted {
		if err := d.forgetAll(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Installation is what Installed finds in a database.
type Installation struct {
	// Schema: the database has the schema tenancy (a catalog, or a tenant database's isolation
	// support).
	Schema bool
	// Catalog: it has the catalog's tenants.
	Catalog bool
	// AuditIgnores: its catalog keeps accepted audit findings (an older catalog does not).
	AuditIgnores bool
}

// Installed says what of the toolkit the database behind q carries, without failing when it
// carries nothing.
func Installed(ctx context.Context, q Querier) (Installation, error) {
	var in Installation
	err := q.QueryRow(ctx, `SELECT to_regnamespace('tenancy') IS NOT NULL, to_regclass('tenancy.tenants') IS NOT NULL,
		to_regclass('tenancy.audit_ignores') IS NOT NULL`).Scan(&in.Schema, &in.Catalog, &in.AuditIgnores)
	return in, err
}

// SharedTables returns the tables the database behind q shares between tenants on purpose
// (tenancy.share): readable by every tenant, writable by none. None when it has no such list.
func SharedTables(ctx context.Context, q Querier) ([]uint32, error) {
	var has bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('tenancy.shared_tables') IS NOT NULL`).Scan(&has); err != nil || !has {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT relation::oid FROM tenancy.shared_tables`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uint32])
}

// CreateShared creates many shared-model tenants at once, active, without domains, in one
// transaction (COPY): for seeding a catalog or importing the tenants of another system, where
// Create's round trips per tenant would take hours. Each entry is checked as Create checks it
// (slug rules and reserved slugs, name, plan) before anything is written; Isolation must be
// empty or shared and Domains empty. A slug taken already, or twice in opts, fails the whole
// call with tenancy.ErrDuplicateSlug and creates nothing. It returns how many it created.
// Every instance's lookup cache hears of each new tenant, as after Create.
func (c *Catalog) CreateShared(ctx context.Context, opts []CreateOpts) (int, error) {
	rows := make([][]any, 0, len(opts))
	seen := make(map[string]bool, len(opts))
	for i := range opts {
		o := &opts[i]
		if err := c.slugs.Validate(o.Slug); err != nil {
			return 0, err
		}
		if seen[o.Slug] {
			return 0, &refusal{fmt.Sprintf("slug %s is given twice", o.Slug), tenancy.ErrDuplicateSlug}
		}
		seen[o.Slug] = true
		name, plan := o.Name, o.Plan
		if name == "" {
			name = o.Slug
		}
		if plan == "" {
			plan = "free"
		}
		if err := validateName(name); err != nil {
			return 0, err
		}
		if err := validatePlan(plan); err != nil {
			return 0, err
		}
		if (o.Isolation != "" && o.Isolation != tenancy.IsolationShared) || len(o.Domains) > 0 {
			return 0, fmt.Errorf("tenancycatalog: CreateShared makes shared tenants without domains; %s asks for %q and %d domains: use Create",
				o.Slug, o.Isolation, len(o.Domains))
		}
		rows = append(rows, []any{o.Slug, name, plan, string(tenancy.IsolationShared), string(tenancy.StatusActive)})
	}
	var n int64
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var err error
		n, err = tx.CopyFrom(ctx, pgx.Identifier{"tenancy", "tenants"}, []string{"slug", "name", "plan", "isolation", "status"},
			pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.ConstraintName == "tenants_slug_key" {
			return 0, &refusal{"a slug given is already taken: " + pgErr.Detail, tenancy.ErrDuplicateSlug}
		}
		return 0, catalogError(err, "")
	}
	return int(n), nil
}
