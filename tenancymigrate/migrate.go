package tenancymigrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/lockkey"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// Config configures a Migrator. A nil *Config means the defaults (and no lines at all).
type Config struct {
	// Shared is the shared line: NNNN_name.sql files at the root of the FS, applied once to the
	// database, in the shared schema. Defaults to none.
	Shared fs.FS
	// Tenant is the tenant line, applied to the shared schema (for every shared-model tenant at
	// once) and to every schema-model tenant's schema. Defaults to none.
	Tenant fs.FS
	// SharedSchema is where the shared line and the shared-model tenants' tables live. Defaults to
	// "public".
	SharedSchema string
	// Workers is how many tenants are migrated at once. Defaults to twice the CPUs, at most the
	// pool's size.
	Workers int
	// Servers holds the servers of database-model tenants by alias. Defaults to one, "default":
	// the server of the pool.
	Servers tenancycatalog.Servers
}

// Migrator applies the shared and tenant lines across a database and its tenants.
type Migrator struct {
	keyMu        sync.Mutex
	key          *tenancycatalog.BindingKey // the catalog's, read on first need
	pool         *pgxpool.Pool
	shared       []tenancycatalog.Migration
	tenant       []tenancycatalog.Migration
	sharedSchema string
	workers      int
	servers      tenancycatalog.Servers
}

// New reads the lines of cfg and returns a Migrator on pool, whose database has the catalog.
func New(pool *pgxpool.Pool, cfg *Config) (*Migrator, error) {
	if pool == nil {
		return nil, errors.New("tenancymigrate: New needs a pool")
	}
	m := &Migrator{pool: pool, sharedSchema: "public", workers: 2 * runtime.GOMAXPROCS(0)}
	if cfg == nil {
		cfg = &Config{}
	}
	var err error
	if cfg.Shared != nil {
		if m.shared, err = tenancycatalog.ReadMigrations(cfg.Shared, "."); err != nil {
			return nil, fmt.Errorf("tenancymigrate: shared line: %w", err)
		}
	}
	if cfg.Tenant != nil {
		if m.tenant, err = tenancycatalog.ReadMigrations(cfg.Tenant, "."); err != nil {
			return nil, fmt.Errorf("tenancymigrate: tenant line: %w", err)
		}
		for i, mg := range m.tenant {
			if mg.Version != i+1 {
				return nil, fmt.Errorf("tenancymigrate: tenant line: versions must run 1, 2, 3, … without gaps; %s is version %d at position %d",
					mg.Name, mg.Version, i+1)
			}
		}
	}
	if cfg.SharedSchema != "" {
		m.sharedSchema = cfg.SharedSchema
	}
	if cfg.Workers < 0 {
		return nil, errors.New("tenancymigrate: Workers must not be negative")
	}
	if cfg.Workers > 0 {
		m.workers = cfg.Workers
	}
	m.workers = min(m.workers, int(pool.Config().MaxConns))
	m.servers = cfg.Servers
	if m.servers == nil {
		m.servers = tenancycatalog.Servers{tenancycatalog.DefaultServer: pool.Config().ConnString()}
	}
	return m, nil
}

// Latest is the version of the last migration of the tenant line (0 without one).
func (m *Migrator) Latest() int { return len(m.tenant) }

// SharedSchema is the schema of the shared line and of the shared-model tenants' tables.
func (m *Migrator) SharedSchema() string { return m.sharedSchema }

// MigrateSchema applies the whole tenant line, in one transaction, to a new, empty schema of the
// catalog's database, recording nothing in the ledger: a tenant's placement being made for a move
// (tenancymove), which records the version when the tenant switches to it. It returns the version
// applied.
func (m *Migrator) MigrateSchema(ctx context.Context, schema string) (int, error) {
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		for _, mg := range m.tenant {
			if _, err := tx.Exec(ctx, mg.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", mg.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("tenancymigrate: schema %s: %w", schema, err)
	}
	return m.Latest(), nil
}

// LineHash is a digest of the tenant line's files: names and SQL.
func (m *Migrator) LineHash() string {
	h := sha256.New()
	for _, mg := range m.tenant {
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00", mg.Version, mg.Name, mg.SQL)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Opts says what Migrate does. A nil *Opts migrates the shared line and every tenant.
type Opts struct {
	// Shared applies the shared line.
	Shared bool
	// Tenant applies the tenant line to the shared schema and every schema tenant, or to the
	// tenants of Slugs only.
	Tenant bool
	// Slugs restricts Tenant to these tenants (migrate --tenant --schema acme).
	Slugs []string
	// DryRun reports what would be applied, changing nothing.
	DryRun bool
	// Workers overrides Config.Workers for this run (1 is the sequential loop).
	Workers int
	// Progress, when set, is called after each target with the counts so far.
	Progress func(Progress)
}

// Progress is how far a run is.
type Progress struct {
	Done, Total, Failed, Skipped int
}

// Target is one place the tenant line is applied to: "shared" or one tenant.
type Target struct {
	Name      string            `json:"target"`              // "shared" or the tenant's slug
	TenantID  string            `json:"tenant_id,omitempty"` // "" for shared
	Isolation tenancy.Isolation `json:"isolation"`
	Status    tenancy.Status    `json:"status,omitempty"`
	Server    string            `json:"server,omitempty"`   // database tenants: the server alias
	Database  string            `json:"database,omitempty"` // database tenants: the database
	Version   int               `json:"version"`            // last migration applied
	Support   int               `json:"support,omitempty"`  // database tenants: the isolation support version installed
	Pending   int               `json:"pending"`            // migrations still to apply
	LastError string            `json:"last_error"`         // why the last run failed here, if it did
}

// TargetResult is what a run did to one target.
type TargetResult struct {
	Target
	From    int    `json:"from"`
	To      int    `json:"to"`
	Applied []int  `json:"applied"`
	Skipped bool   `json:"skipped,omitempty"` // another runner held the target's lock
	Err     error  `json:"-"`
	Error   string `json:"error,omitempty"`
}

// Result is what a run did.
type Result struct {
	SharedApplied []int          `json:"shared_applied"`
	Targets       []TargetResult `json:"targets"` // every target the run looked at, in name order
	DryRun        bool           `json:"dry_run"`
	Elapsed       time.Duration  `json:"elapsed_ns"`
}

// Failed returns the targets that failed.
func (r *Result) Failed() []TargetResult {
	var out []TargetResult
	for _, t := range r.Targets {
		if t.Err != nil {
			out = append(out, t)
		}
	}
	return out
}

// MigrateError lists the targets a run could not migrate; the others were migrated.
type MigrateError struct {
	Failed []TargetResult
}

func (e *MigrateError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tenancymigrate: %d target(s) failed:", len(e.Failed))
	for _, f := range e.Failed {
		fmt.Fprintf(&b, " %s (at version %d): %v;", f.Name, f.Version, f.Err)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Unwrap returns each failure, for errors.Is and errors.As.
func (e *MigrateError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f.Err
	}
	return errs
}

// Migrate applies what opts asks. Each tenant's pending migrations apply in one transaction of
// their own, under a lock that another runner cannot take at the same time (it skips the tenant
// and says so). A tenant that fails keeps its previous version and the error (see Status); the
// run goes on with the others and returns a *MigrateError listing the failures with the Result.
// Running it again applies only what is still pending. Finding nothing pending costs one query.
func (m *Migrator) Migrate(ctx context.Context, opts *Opts) (*Result, error) {
	if opts == nil {
		opts = &Opts{Shared: true, Tenant: true}
	}
	start := time.Now()
	res := &Result{DryRun: opts.DryRun, Targets: []TargetResult{}}
	if opts.Shared && len(m.shared) > 0 {
		if opts.DryRun {
			pending, err := m.sharedPending(ctx)
			if err != nil {
				return nil, err
			}
			res.SharedApplied = pending
		} else {
			applied, err := m.applyShared(ctx)
			if err != nil {
				return nil, fmt.Errorf("tenancymigrate: shared line: %w", err)
			}
			res.SharedApplied = applied
		}
	}
	if opts.Tenant || len(opts.Slugs) > 0 {
		targets, err := m.pendingTargets(ctx, opts.Slugs)
		if err != nil {
			return nil, err
		}
		res.Targets = m.run(ctx, targets, opts)
	}
	res.Elapsed = time.Since(start)
	if failed := res.Failed(); len(failed) > 0 {
		return res, &MigrateError{Failed: failed}
	}
	return res, nil
}

// MigrateTenant applies the pending tenant line to one tenant (Provision calls it).
func (m *Migrator) MigrateTenant(ctx context.Context, t *tenancy.Tenant) error {
	target := Target{Name: t.Slug, TenantID: t.ID, Isolation: t.Isolation, Status: t.Status, Server: t.Server, Database: t.Database}
	if t.Isolation == tenancy.IsolationShared {
		target = Target{Name: "shared", Isolation: tenancy.IsolationShared}
	}
	r := m.migrateTarget(ctx, target)
	if r.Skipped {
		return fmt.Errorf("tenancymigrate: %s is being migrated by another runner", target.Name)
	}
	return r.Err
}

func (m *Migrator) run(ctx context.Context, targets []Target, opts *Opts) []TargetResult {
	results := make([]TargetResult, len(targets))
	workers := m.workers
	if opts.Workers > 0 {
		workers = min(opts.Workers, int(m.pool.Config().MaxConns))
	}
	var (
		mu   sync.Mutex
		prog = Progress{Total: len(targets)}
		next = make(chan int)
		wg   sync.WaitGroup
	)
	for range min(workers, len(targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if opts.DryRun {
					t := targets[i]
					results[i] = TargetResult{Target: t, From: t.Version, To: m.Latest(), Applied: versions(t.Version+1, m.Latest())}
				} else {
					results[i] = m.migrateTarget(ctx, targets[i])
				}
				mu.Lock()
				prog.Done++
				if results[i].Err != nil {
					prog.Failed++
				}
				if results[i].Skipped {
					prog.Skipped++
				}
				p := prog
				if opts.Progress != nil {
					opts.Progress(p)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range targets {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func versions(from, to int) []int {
	var out []int
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

// migrateTarget applies the pending tenant line to one target in one transaction.
func (m *Migrator) migrateTarget(ctx context.Context, t Target) TargetResult {
	if t.Isolation == tenancy.IsolationDatabase {
		return m.migrateDatabaseTarget(ctx, t)
	}
	r := TargetResult{Target: t, From: t.Version, To: t.Version}
	key := "shared"
	if t.TenantID != "" {
		key = t.TenantID
	}
	var applied []int
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended($1 || $2, 0))`, lockkey.TenantLinePrefix, key).Scan(&locked); err != nil {
			return err
		}
		if !locked {
			r.Skipped = true
			return nil
		}
		version, err := tenancycatalog.LineVersion(ctx, tx, key)
		if err != nil {
			return err
		}
		r.From, r.To = version, version
		if version >= m.Latest() {
			return nil // migrated meanwhile by another runner
		}
		schema, err := m.schemaOf(t)
		if err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("schema %s does not exist: provision the tenant (tenancy tenant provision %s)", schema, t.Name)
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		for _, mg := range m.tenant[version:] {
			if _, err := tx.Exec(ctx, mg.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", mg.Name, err)
			}
			applied = append(applied, mg.Version)
		}
		if err := tenancycatalog.RecordLine(ctx, tx, tenancycatalog.LineEntry{Target: key, TenantID: t.TenantID, Version: m.Latest()}); err != nil {
			return err
		}
		r.To = m.Latest()
		return nil
	})
	if err != nil {
		r.Err, r.Error, r.To = err, err.Error(), r.From
		r.LastError = err.Error()
		m.recordError(ctx, key, t.TenantID, err)
		return r
	}
	r.Applied = applied
	r.Version, r.Pending = r.To, m.Latest()-r.To
	return r
}

// migrateDatabaseTarget applies the pending tenant line in a database tenant's own database,
// where its truth is kept (tenancy.tenant_migrations), then mirrors the version into the catalog's
// ledger. Should the mirror fail, the next run finds the tenant pending, connects, finds nothing
// to apply and mirrors again.
func (m *Migrator) migrateDatabaseTarget(ctx context.Context, t Target) TargetResult {
	r := TargetResult{Target: t, From: t.Version, To: t.Version}
	fail := func(err error) TargetResult {
		r.Err, r.Error, r.LastError = err, err.Error(), err.Error()
		m.recordError(ctx, t.TenantID, t.TenantID, err)
		return r
	}
	cfg, err := m.servers.ConnConfig(t.Server, t.Database)
	if err != nil {
		return fail(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied, version, err := m.migrateDatabase(ctx, conn, true)
	if errors.Is(err, tenancycatalog.ErrLineLocked) {
		r.Skipped = true
		return r
	}
	if err != nil {
		return fail(err)
	}
	if err := tenancycatalog.RecordLine(ctx, m.pool, tenancycatalog.LineEntry{Target: t.TenantID, TenantID: t.TenantID,
		Version: version, Support: tenancycatalog.SupportVersion}); err != nil {
		return fail(err)
	}
	r.Support = tenancycatalog.SupportVersion
	r.Applied, r.To, r.Version, r.Pending = applied, version, version, m.Latest()-version
	return r
}

// MigrateDatabase installs the isolation support and applies the pending tenant line in the
// database behind conn (a database tenant's, or the template new ones are copied from), waiting
// for a concurrent run. It returns the database's version afterwards.
func (m *Migrator) MigrateDatabase(ctx context.Context, conn *pgx.Conn) (int, error) {
	_, v, err := m.migrateDatabase(ctx, conn, false)
	return v, err
}

func (m *Migrator) migrateDatabase(ctx context.Context, conn *pgx.Conn, tryLock bool) ([]int, int, error) {
	key, err := m.bindingKey(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := tenancycatalog.InstallSupport(ctx, conn, key); err != nil {
		return nil, 0, err
	}
	return tenancycatalog.ApplyTenantDatabaseLine(ctx, conn, m.tenant, tryLock)
}

// bindingKey returns the catalog's binding key, which tenant databases get a copy of.
func (m *Migrator) bindingKey(ctx context.Context) (*tenancycatalog.BindingKey, error) {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if m.key == nil {
		k, err := tenancycatalog.ReadBindingKey(ctx, m.pool)
		if err != nil {
			return nil, err
		}
		m.key = k
	}
	return m.key, nil
}

// recordError keeps why a target failed, for Status, outside the rolled-back transaction.
func (m *Migrator) recordError(ctx context.Context, key, tenantID string, cause error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tenancycatalog.RecordLineError(rctx, m.pool, key, tenantID, cause)
}

// schemaOf returns the unquoted schema a target's tenant line lives in.
func (m *Migrator) schemaOf(t Target) (string, error) {
	switch t.Isolation {
	case tenancy.IsolationShared:
		return m.sharedSchema, nil
	case tenancy.IsolationSchema:
		if s := tenancycatalog.SchemaName(t.TenantID); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("no schema for tenant id %q", t.TenantID)
	}
	return "", fmt.Errorf("%w: %s", tenancy.ErrIsolationNotSupported, t.Isolation)
}

// Status returns every target of the tenant line with its version, pending count and last error,
// in one query.
func (m *Migrator) Status(ctx context.Context) ([]Target, error) {
	return m.query(tenancycatalog.LineStatus(ctx, m.pool))
}

// Pending returns the targets that are behind the tenant line, or (database tenants) behind the
// isolation support, in one query against the ledger: a no-op deploy over thousands of tenants
// opens no connection to any of them.
func (m *Migrator) Pending(ctx context.Context) ([]Target, error) {
	return m.query(tenancycatalog.LineBehind(ctx, m.pool, m.Latest()))
}

func (m *Migrator) pendingTargets(ctx context.Context, slugs []string) ([]Target, error) {
	pending, err := m.Pending(ctx)
	if err != nil || len(slugs) == 0 {
		return pending, err
	}
	all, err := m.Status(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, t := range all {
		known[t.Name] = true
	}
	want := map[string]bool{}
	for _, s := range slugs {
		if !known[s] || s == "shared" {
			return nil, fmt.Errorf("tenancymigrate: %w: %q is not a schema or database tenant (tenancy migrate status lists them)", tenancy.ErrTenantNotFound, s)
		}
		want[s] = true
	}
	var out []Target
	for _, t := range pending {
		if want[t.Name] {
			out = append(out, t)
		}
	}
	return out, nil
}

// query turns what the ledger says into targets.
func (m *Migrator) query(lines []tenancycatalog.LineTarget, err error) ([]Target, error) {
	if err != nil {
		return nil, fmt.Errorf("tenancymigrate: read the ledger: %w", err)
	}
	targets := make([]Target, len(lines))
	for i, l := range lines {
		targets[i] = Target{Name: l.Name, TenantID: l.TenantID, Isolation: l.Isolation, Status: l.Status, Server: l.Server,
			Database: l.Database, Version: l.Version, Support: l.Support, Pending: max(0, m.Latest()-l.Version), LastError: l.LastError}
	}
	sort.SliceStable(targets, func(i, j int) bool { return targets[i].Name < targets[j].Name })
	return targets, nil
}

// applyShared applies the shared line, once, in the shared schema.
func (m *Migrator) applyShared(ctx context.Context) ([]int, error) {
	return tenancycatalog.ApplySharedLine(ctx, m.pool, m.shared, pgx.Identifier{m.sharedSchema}.Sanitize())
}

func (m *Migrator) sharedPending(ctx context.Context) ([]int, error) {
	done, err := tenancycatalog.SharedLineApplied(ctx, m.pool)
	if err != nil {
		return nil, err
	}
	have := map[int]bool{}
	for _, v := range done {
		have[v] = true
	}
	var out []int
	for _, mg := range m.shared {
		if !have[mg.Version] {
			out = append(out, mg.Version)
		}
	}
	return out, nil
}
