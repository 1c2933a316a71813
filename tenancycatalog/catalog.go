package tenancycatalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancyrate"
)

// CatalogConfig configures a Catalog. A nil *CatalogConfig means the defaults.
type CatalogConfig struct {
	// Slugs decides which slugs a new tenant may take. Defaults to tenancy.NewSlugRules(nil)
	// (DNS labels, tenancy.DefaultReservedSlugs reserved).
	Slugs *tenancy.SlugRules
	// Servers are where database-model tenants are provisioned and purged. Defaults to one,
	// DefaultServer: the server of the pool.
	Servers Servers
}

// Catalog is the tenant registry in PostgreSQL (schema "tenancy"). It implements tenancy.Store
// without caching; put a tenancycache.Lookup in front of it on request paths.
type Catalog struct {
	pool    *pgxpool.Pool
	slugs   *tenancy.SlugRules
	servers Servers
	key     atomic.Pointer[BindingKey] // read once, by BindingKey
}

var _ tenancy.Store = (*Catalog)(nil)

// NewCatalog returns a catalog on pool. Call MigrateCatalog once before using it.
func NewCatalog(pool *pgxpool.Pool, cfg *CatalogConfig) (*Catalog, error) {
	if pool == nil {
		return nil, errors.New("tenancycatalog: NewCatalog needs a pool")
	}
	c := &Catalog{pool: pool, slugs: tenancy.NewSlugRules(nil), servers: Servers{DefaultServer: pool.Config().ConnString()}}
	if cfg != nil && cfg.Slugs != nil {
		c.slugs = cfg.Slugs
	}
	if cfg != nil && cfg.Servers != nil {
		if err := cfg.Servers.Validate(); err != nil {
			return nil, err
		}
		c.servers = cfg.Servers
	}
	return c, nil
}

// Pool returns the pool the catalog reads and writes with.
func (c *Catalog) Pool() *pgxpool.Pool { return c.pool }

// CreateOpts describes a new tenant.
type CreateOpts struct {
	Slug string
	// Name defaults to the slug.
	Name string
	// Plan defaults to "free".
	Plan string
	// Isolation defaults to tenancy.IsolationShared.
	Isolation tenancy.Isolation
	// Domains are custom domains in normal form (see tenancy.ValidateDomain).
	Domains []string
}

const selectTenant = `SELECT t.id::text, t.slug, t.name, t.plan, t.status, t.isolation, t.created_at, t.updated_at,
	coalesce((SELECT array_agg(d.domain ORDER BY d.domain) FROM tenancy.domains d WHERE d.tenant_id = t.id), '{}'),
	coalesce(t.provision_error, ''), coalesce(t.server, ''), coalesce(t.database_name, ''), coalesce(t.rate_limit, '')
	FROM tenancy.tenants t `

func scanTenant(row pgx.Row) (*tenancy.Tenant, error) {
	var t tenancy.Tenant
	err := row.Scan(&t.ID, &t.Slug, &t.Name, &t.Plan, &t.Status, &t.Isolation, &t.CreatedAt, &t.UpdatedAt, &t.Domains,
		&t.ProvisionError, &t.Server, &t.Database, &t.RateLimit)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, tenancy.ErrTenantNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	if t.Isolation == tenancy.IsolationSchema {
		t.Schema = SchemaName(t.ID)
	}
	return &t, nil
}

// Create registers a new tenant: active for the shared model; provisioning for the schema and
// database models, until Provision has made and migrated its schema or database. It returns an error wrapping tenancy.ErrInvalidSlug,
// tenancy.ErrReservedSlug, tenancy.ErrInvalidTenant, tenancy.ErrInvalidDomain, tenancy.ErrInvalidIsolation,
// tenancy.ErrDuplicateSlug or tenancy.ErrDuplicateDomain when the request is refused.
func (c *Catalog) Create(ctx context.Context, opts *CreateOpts) (*tenancy.Tenant, error) {
	if opts == nil {
		return nil, errors.New("tenancycatalog: Create needs CreateOpts")
	}
	if err := c.slugs.Validate(opts.Slug); err != nil {
		return nil, err
	}
	name, plan, iso := opts.Name, opts.Plan, opts.Isolation
	if name == "" {
		name = opts.Slug
	}
	if err := validateName(name); err != nil {
		return nil, err
	}
	if plan == "" {
		plan = "free"
	}
	if err := validatePlan(plan); err != nil {
		return nil, err
	}
	if iso == "" {
		iso = tenancy.IsolationShared
	}
	if _, err := tenancy.ParseIsolation(string(iso)); err != nil {
		return nil, err
	}
	for _, d := range opts.Domains {
		if err := tenancy.ValidateDomain(d); err != nil {
			return nil, err
		}
	}
	var id string
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		status := tenancy.StatusActive
		if iso != tenancy.IsolationShared {
			status = tenancy.StatusProvisioning
		}
		err := tx.QueryRow(ctx, `INSERT INTO tenancy.tenants (slug, name, plan, isolation, status)
			VALUES ($1, $2, $3, $4, $5) RETURNING id::text`, opts.Slug, name, plan, string(iso), string(status)).Scan(&id)
		if err != nil {
			return err
		}
		for _, d := range opts.Domains {
			if _, err := tx.Exec(ctx, `INSERT INTO tenancy.domains (domain, tenant_id) VALUES ($1, $2)`, d, id); err != nil {
				return err
			}
		}
		return nil
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.ConstraintName == "domains_pkey":
		return nil, c.domainTaken(ctx, err, opts.Domains...)
	case err != nil:
		return nil, catalogError(err, opts.Slug)
	}
	return c.TenantByID(ctx, id)
}

// validateName checks a tenant's display name: at most 200 characters of UTF-8, none of them NUL
// (PostgreSQL text cannot hold it).
func validateName(name string) error {
	switch {
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name must be UTF-8 text", tenancy.ErrInvalidTenant)
	case utf8.RuneCountInString(name) > 200:
		return fmt.Errorf("%w: name must be at most 200 characters", tenancy.ErrInvalidTenant)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: name must not contain the NUL character", tenancy.ErrInvalidTenant)
	}
	return nil
}

func validatePlan(plan string) error {
	if err := tenancy.ValidateSlug(plan); err != nil && !errors.Is(err, tenancy.ErrReservedSlug) {
		return fmt.Errorf("%w: plan %q: use a-z, 0-9 and hyphens", tenancy.ErrInvalidTenant, plan)
	}
	return nil
}

// catalogError maps constraint violations to the tenancy sentinels; other errors pass through.
func catalogError(err error, subject string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		switch pgErr.ConstraintName {
		case "tenants_slug_key":
			return &refusal{fmt.Sprintf("slug %s is already taken", subject), tenancy.ErrDuplicateSlug}
		case "domains_pkey":
			return &refusal{fmt.Sprintf("domain %s is already taken", subject), tenancy.ErrDuplicateDomain}
		}
	}
	return fmt.Errorf("tenancycatalog: catalog: %w", err)
}

// refusal is the catalog refusing a request, said as a person would say it (by slug and domain,
// never by PostgreSQL's constraint details); errors.Is finds its sentinel.
type refusal struct {
	msg string
	err error
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.err }

// domainTaken says which tenant has domain, when err is its unique violation.
func (c *Catalog) domainTaken(ctx context.Context, err error, domains ...string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" || pgErr.ConstraintName != "domains_pkey" {
		return catalogError(err, "")
	}
	var domain, slug string
	if qerr := c.pool.QueryRow(ctx, `SELECT d.domain, t.slug FROM tenancy.domains d JOIN tenancy.tenants t ON t.id = d.tenant_id
		WHERE d.domain = ANY($1) ORDER BY 1 LIMIT 1`, domains).Scan(&domain, &slug); qerr != nil {
		return catalogError(err, strings.Join(domains, ", "))
	}
	return &refusal{fmt.Sprintf("domain %s already belongs to tenant %s", domain, slug), tenancy.ErrDuplicateDomain}
}

// TenantByID returns the tenant with that ID, or tenancy.ErrTenantNotFound (also for a string that
// is not a UUID).
func (c *Catalog) TenantByID(ctx context.Context, id string) (*tenancy.Tenant, error) {
	if !tenancy.IsID(id) {
		return nil, tenancy.ErrTenantNotFound
	}
	return scanTenant(c.pool.QueryRow(ctx, selectTenant+"WHERE t.id = $1::uuid", id))
}

// TenantBySlug returns the tenant with that slug, or tenancy.ErrTenantNotFound.
func (c *Catalog) TenantBySlug(ctx context.Context, slug string) (*tenancy.Tenant, error) {
	if !sendable(slug) { // no tenant has it, and PostgreSQL would refuse the text
		return nil, tenancy.ErrTenantNotFound
	}
	return scanTenant(c.pool.QueryRow(ctx, selectTenant+"WHERE t.slug = $1", slug))
}

// TenantByDomain returns the tenant that owns the custom domain, or tenancy.ErrTenantNotFound.
func (c *Catalog) TenantByDomain(ctx context.Context, domain string) (*tenancy.Tenant, error) {
	if !sendable(domain) {
		return nil, tenancy.ErrTenantNotFound
	}
	return scanTenant(c.pool.QueryRow(ctx,
		selectTenant+"WHERE t.id = (SELECT tenant_id FROM tenancy.domains WHERE domain = $1)", domain))
}

// ListOpts filters List and pages through it. A nil *ListOpts lists every tenant that is not
// deleted.
type ListOpts struct {
	// Status lists only tenants with this status. Defaults to all but deleted ones.
	Status tenancy.Status
	// IncludeDeleted lists deleted tenants too when Status is empty.
	IncludeDeleted bool
	// Isolation lists only tenants of this model. Defaults to all.
	Isolation tenancy.Isolation
	// Plan lists only tenants on this plan. Defaults to all.
	Plan string
	// Search lists only tenants whose slug, name or one of whose domains contains it (case
	// insensitive; % and _ are plain characters). Defaults to "": no search. A search reads every
	// tenant the other filters leave (in slug order, stopping at Limit): tens of milliseconds for
	// 100,000 tenants.
	Search string
	// After lists only tenants whose slug sorts after it: the last slug of the previous page.
	// Pages are read by the slug's index, so the millionth page costs what the first does.
	After string
	// Limit is the most tenants returned. Defaults to 0: all of them — for a catalog of many
	// tenants, page with Limit and After instead (or Each), rather than hold them all.
	Limit int
}

// sendable reports whether s can be sent to PostgreSQL as text: UTF-8 without NUL.
func sendable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// likeEscaper makes a string match itself in a LIKE pattern (the default escape, backslash).
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// List returns tenants ordered by slug.
func (c *Catalog) List(ctx context.Context, opts *ListOpts) ([]*tenancy.Tenant, error) {
	if opts == nil {
		opts = &ListOpts{}
	}
	if opts.Limit < 0 {
		return nil, errors.New("tenancycatalog: ListOpts.Limit must not be negative")
	}
	for _, v := range []string{opts.Plan, opts.Search, opts.After} {
		if !sendable(v) {
			return nil, fmt.Errorf("%w: a filter of the list is not UTF-8 text", tenancy.ErrInvalidTenant)
		}
	}
	var where []string
	var args []any
	switch {
	case opts.Status != "":
		if _, err := tenancy.ParseStatus(string(opts.Status)); err != nil {
			return nil, err
		}
		args = append(args, string(opts.Status))
		where = append(where, fmt.Sprintf("t.status = $%d", len(args)))
	case !opts.IncludeDeleted:
		where = append(where, "t.status <> 'deleted'")
	}
	if opts.Isolation != "" {
		if _, err := tenancy.ParseIsolation(string(opts.Isolation)); err != nil {
			return nil, err
		}
		args = append(args, string(opts.Isolation))
		where = append(where, fmt.Sprintf("t.isolation = $%d", len(args)))
	}
	if opts.Plan != "" {
		args = append(args, opts.Plan)
		where = append(where, fmt.Sprintf("t.plan = $%d", len(args)))
	}
	if opts.Search != "" {
		args = append(args, "%"+likeEscaper.Replace(opts.Search)+"%")
		n := len(args)
		where = append(where, fmt.Sprintf(`(t.slug ILIKE $%d OR t.name ILIKE $%d
			OR EXISTS (SELECT FROM tenancy.domains d WHERE d.tenant_id = t.id AND d.domain ILIKE $%d))`, n, n, n))
	}
	if opts.After != "" {
		args = append(args, opts.After)
		where = append(where, fmt.Sprintf("t.slug > $%d", len(args)))
	}
	q := selectTenant
	if len(where) > 0 {
		q += "WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY t.slug"
	if opts.Limit > 0 {
		args = append(args, opts.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, err := c.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	defer rows.Close()
	var out []*tenancy.Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return out, nil
}

// Each calls fn with every tenant List would return for opts (its Limit is the page size, 500
// when 0), a page at a time, so a catalog of a million tenants is never held in memory at once.
// It stops at fn's first error and returns it.
func (c *Catalog) Each(ctx context.Context, opts *ListOpts, fn func(*tenancy.Tenant) error) error {
	page := ListOpts{}
	if opts != nil {
		page = *opts
	}
	if page.Limit == 0 {
		page.Limit = 500
	}
	for {
		ts, err := c.List(ctx, &page)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if err := fn(t); err != nil {
				return err
			}
		}
		if len(ts) < page.Limit {
			return nil
		}
		page.After = ts[len(ts)-1].Slug
	}
}

// Suspend refuses the tenant from now on, everywhere (see Watch), keeping its data. Suspending a
// suspended tenant is a no-op; a deleted or unknown one is tenancy.ErrTenantNotFound.
func (c *Catalog) Suspend(ctx context.Context, id string) (*tenancy.Tenant, error) {
	return c.setStatus(ctx, id, tenancy.StatusSuspended)
}

// Resume serves a suspended tenant again. Resuming an active tenant is a no-op; a deleted or
// unknown one is tenancy.ErrTenantNotFound.
func (c *Catalog) Resume(ctx context.Context, id string) (*tenancy.Tenant, error) {
	return c.setStatus(ctx, id, tenancy.StatusActive)
}

// Delete marks the tenant deleted: from now on lookups return it with Status deleted, which
// Tenant.Err (and so the middleware and tenancypgx) refuses as unknown; its rows, slug and domains
// are kept until it is purged (tenancyprovision.Purge). Deleting a deleted or unknown tenant is
// tenancy.ErrTenantNotFound.
func (c *Catalog) Delete(ctx context.Context, id string) (*tenancy.Tenant, error) {
	return c.setStatus(ctx, id, tenancy.StatusDeleted)
}

func (c *Catalog) setStatus(ctx context.Context, id string, st tenancy.Status) (*tenancy.Tenant, error) {
	if !tenancy.IsID(id) {
		return nil, tenancy.ErrTenantNotFound
	}
	// A provisioning tenant becomes active only through Provision; it may be deleted.
	tag, err := c.pool.Exec(ctx, `UPDATE tenancy.tenants SET status = $2
		WHERE id = $1::uuid AND status <> 'deleted' AND status IS DISTINCT FROM $2
		  AND (status <> 'provisioning' OR $2 = 'deleted')`, id, string(st))
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	t, err := c.TenantByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == 0 && t.Status == tenancy.StatusDeleted {
		return nil, tenancy.ErrTenantNotFound
	}
	if tag.RowsAffected() == 0 && t.Status == tenancy.StatusProvisioning {
		return nil, fmt.Errorf("%w: %s: provision it first (tenancy tenant provision %s)", tenancy.ErrTenantNotReady, t.Slug, t.Slug)
	}
	return t, nil
}

// AddDomain gives the tenant a custom domain in normal form (see tenancy.ValidateDomain). It returns
// an error wrapping tenancy.ErrInvalidDomain or tenancy.ErrDuplicateDomain, or
// tenancy.ErrTenantNotFound.
func (c *Catalog) AddDomain(ctx context.Context, id, domain string) (*tenancy.Tenant, error) {
	if err := tenancy.ValidateDomain(domain); err != nil {
		return nil, err
	}
	if !tenancy.IsID(id) {
		return nil, tenancy.ErrTenantNotFound
	}
	tag, err := c.pool.Exec(ctx, `INSERT INTO tenancy.domains (domain, tenant_id)
		SELECT $2, id FROM tenancy.tenants WHERE id = $1::uuid AND status <> 'deleted'`, id, domain)
	if err != nil {
		return nil, c.domainTaken(ctx, err, domain)
	}
	if tag.RowsAffected() == 0 {
		return nil, tenancy.ErrTenantNotFound
	}
	return c.TenantByID(ctx, id)
}

// RemoveDomain takes a custom domain away from the tenant. A domain the tenant does not have is
// tenancy.ErrTenantNotFound.
func (c *Catalog) RemoveDomain(ctx context.Context, id, domain string) (*tenancy.Tenant, error) {
	if !tenancy.IsID(id) {
		return nil, tenancy.ErrTenantNotFound
	}
	tag, err := c.pool.Exec(ctx, `DELETE FROM tenancy.domains WHERE tenant_id = $1::uuid AND domain = $2`, id, domain)
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	if tag.RowsAffected() == 0 {
		t, err := c.TenantByID(ctx, id)
		if err != nil {
			return nil, err
		}
		return nil, &refusal{fmt.Sprintf("tenant %s has no domain %s", t.Slug, domain), tenancy.ErrTenantNotFound}
	}
	return c.TenantByID(ctx, id)
}

// SetRateLimit overrides the tenant's request rate ("500/min", see tenancyrate.ParseLimit), or
// with "" returns it to its plan's. The change reaches every instance like any catalog change.
// It returns an error wrapping tenancyrate.ErrInvalidLimit for a limit that does not parse, and
// tenancy.ErrTenantNotFound.
func (c *Catalog) SetRateLimit(ctx context.Context, id, limit string) (*tenancy.Tenant, error) {
	var value any
	if limit != "" {
		l, err := tenancyrate.ParseLimit(limit)
		if err != nil {
			return nil, err
		}
		value = l.String()
	}
	if !tenancy.IsID(id) {
		return nil, tenancy.ErrTenantNotFound
	}
	tag, err := c.pool.Exec(ctx, `UPDATE tenancy.tenants SET rate_limit = $2 WHERE id = $1 AND status <> 'deleted'`, id, value)
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil, tenancy.ErrTenantNotFound
	}
	return c.TenantByID(ctx, id)
}

// UpdateOpts changes a tenant's display name and plan; an empty field is left as it is.
type UpdateOpts struct {
	Name string `json:"name"`
	Plan string `json:"plan"`
}

// Update changes the tenant's name or plan (a plan change moves it to that plan's rate limit on
// every instance within a second). It returns an error wrapping tenancy.ErrInvalidTenant for a
// name or plan that is not allowed, and tenancy.ErrTenantNotFound.
func (c *Catalog) Update(ctx context.Context, id string, opts *UpdateOpts) (*tenancy.Tenant, error) {
	if opts == nil || (opts.Name == "" && opts.Plan == "") {
		return nil, fmt.Errorf("%w: nothing to update: give a name or a plan", tenancy.ErrInvalidTenant)
	}
	if err := validateName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Plan != "" {
		if err := validatePlan(opts.Plan); err != nil {
			return nil, err
		}
	}
	if !tenancy.IsID(id) {
		return nil, tenancy.ErrTenantNotFound
	}
	tag, err := c.pool.Exec(ctx, `UPDATE tenancy.tenants SET name = coalesce(nullif($2, ''), name), plan = coalesce(nullif($3, ''), plan)
		WHERE id = $1 AND status <> 'deleted'`, id, opts.Name, opts.Plan)
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil, tenancy.ErrTenantNotFound
	}
	return c.TenantByID(ctx, id)
}

// TenantCount is how many tenants have a status and an isolation model.
type TenantCount struct {
	Status    tenancy.Status
	Isolation tenancy.Isolation
	Tenants   int64
}

// Counts returns how many tenants there are by status and isolation model (one query over the
// whole table: for metrics, read seldom).
func (c *Catalog) Counts(ctx context.Context) ([]TenantCount, error) {
	rows, err := c.pool.Query(ctx, `SELECT status, isolation, count(*) FROM tenancy.tenants GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (tc TenantCount, err error) {
		err = r.Scan(&tc.Status, &tc.Isolation, &tc.Tenants)
		return tc, err
	})
}
