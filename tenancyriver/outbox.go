package tenancyriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"golang.org/x/sync/errgroup"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// The transactional outbox: a job enqueued inside a tenant's unit of work (db.Tx) is a row of the
// tenant's own table tenancy_job_outbox, written in that transaction — so it commits or rolls
// back with the tenant's data, in every isolation model, and the runtime role needs no grant on
// River's tables. After the commit, the Outbox moves the rows into River (Drain, right after the
// unit in Outbox.Tx; on the commit's notification for shared and schema tenants, in Run; and
// every SweepEvery for every tenant, which recovers rows a crash left between the commit and the
// drain). A row is never seen before its commit, and leaves its outbox only once its job is in
// River: shared and schema tenants' outboxes are in River's database, and a row is deleted in
// the transaction that inserts its job (exactly once); a database tenant's outbox is in its own
// database, and its rows are deleted after their jobs are inserted (at least once: a crash
// between the two inserts the jobs again on the next drain; each job carries its row's ID in its
// metadata under OutboxKey for a worker that must not do its work twice).

// OutboxTable is the outbox's name in every placement.
const OutboxTable = "tenancy_job_outbox"

// OutboxKey is the metadata key of a job that came through the outbox: its row's ID there.
const OutboxKey = "tenancy_outbox"

// outboxChannel is where an enqueue's commit is announced in the catalog's database.
const outboxChannel = "tenancy_job_outbox"

// OutboxMigration makes the outbox: add it to your tenant migration line as a file of its own
// (NNNN_job_outbox.sql), so every placement — the shared schema, each tenant schema, each tenant
// database — has one, isolated like any tenant table.
const OutboxMigration = `-- The tenant's jobs, enqueued in its transactions, waiting to be moved into River (tenancyriver).
CREATE TABLE tenancy_job_outbox (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    kind       text        NOT NULL,
    args       jsonb       NOT NULL,
    opts       jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id)
);
SELECT tenancy.isolate('tenancy_job_outbox');
`

// outboxOpts are the insert options an outbox row keeps.
type outboxOpts struct {
	Queue       string          `json:"queue,omitempty"`
	Priority    int             `json:"priority,omitempty"`
	MaxAttempts int             `json:"max_attempts,omitempty"`
	ScheduledAt *time.Time      `json:"scheduled_at,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

// Enqueue records a job in the outbox of ctx's tenant, in tx — a transaction of that tenant's
// unit of work (db.Tx): the job commits or rolls back with it, and reaches River after the
// commit (see Outbox). The args' own InsertOpts apply, then opts' fields that are set; unique
// jobs are not supported through the outbox.
func Enqueue(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	t, ok := tenancy.FromContext(ctx)
	if !ok {
		return fmt.Errorf("%w: tenancyriver.Enqueue runs in a tenant's unit of work", tenancy.ErrNoTenant)
	}
	o := river.InsertOpts{}
	if withOpts, ok := args.(river.JobArgsWithInsertOpts); ok {
		o = withOpts.InsertOpts()
	}
	if opts != nil {
		if opts.Queue != "" {
			o.Queue = opts.Queue
		}
		if opts.Priority != 0 {
			o.Priority = opts.Priority
		}
		if opts.MaxAttempts != 0 {
			o.MaxAttempts = opts.MaxAttempts
		}
		if !opts.ScheduledAt.IsZero() {
			o.ScheduledAt = opts.ScheduledAt
		}
		if opts.Tags != nil {
			o.Tags = opts.Tags
		}
		if opts.Metadata != nil {
			o.Metadata = opts.Metadata
		}
		if !uniqueEmpty(opts.UniqueOpts) {
			return errors.New("tenancyriver: Enqueue: unique jobs are not supported through the outbox")
		}
	}
	if !uniqueEmpty(o.UniqueOpts) {
		return errors.New("tenancyriver: Enqueue: unique jobs are not supported through the outbox")
	}
	if o.Priority < 0 || o.Priority > lowestPriority {
		return fmt.Errorf("tenancyriver: Enqueue %s: priority %d is not River's 1 to 4", args.Kind(), o.Priority)
	}
	if named, has := tenantIn(o.Metadata); has && !strings.EqualFold(named, t.ID) {
		return fmt.Errorf("%w: job %s", ErrForgedTenant, args.Kind())
	}
	encoded, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("tenancyriver: job %s: %w", args.Kind(), err)
	}
	keep := outboxOpts{Queue: o.Queue, Priority: o.Priority, MaxAttempts: o.MaxAttempts, Tags: o.Tags, Metadata: o.Metadata}
	if !o.ScheduledAt.IsZero() {
		at := o.ScheduledAt
		keep.ScheduledAt = &at
	}
	kept, err := json.Marshal(keep)
	if err != nil {
		return err
	}
	// The tenant's own table, by the unit's search_path: its schema, the shared one, its database.
	if _, err := tx.Exec(ctx, `INSERT INTO tenancy_job_outbox (tenant_id, kind, args, opts) VALUES ($1, $2, $3, $4)`,
		t.ID, args.Kind(), encoded, kept); err != nil {
		return fmt.Errorf("tenancyriver: enqueue %s: %w", args.Kind(), err)
	}
	// Heard at commit by Outbox.Run, for a placement in the catalog's database.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, outboxChannel, t.ID); err != nil {
		return fmt.Errorf("tenancyriver: enqueue %s: %w", args.Kind(), err)
	}
	return nil
}

func uniqueEmpty(u river.UniqueOpts) bool {
	return !u.ByArgs && u.ByPeriod == 0 && !u.ByQueue && u.ByState == nil && !u.ExcludeKind
}

// isUUID reports whether s is a UUID in its text form (a notification's payload is only that).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'):
			return false
		}
	}
	return true
}

// OutboxConfig configures an Outbox. Client and Catalog are required.
type OutboxConfig struct {
	// Client inserts the jobs into River: the application's client, with Jobs' middleware, on
	// the catalog's database.
	Client *river.Client[pgx.Tx]
	// Catalog finds the tenants and their placements; its pool (the migration role) reads and
	// empties the outboxes.
	Catalog *tenancycatalog.Catalog
	// SharedSchema is the schema of the shared tenants' tables (tenancymigrate.Migrator's
	// SharedSchema). Defaults to "public".
	SharedSchema string
	// Store looks up the tenants named by announcements (anyone may send them, with any ID): give
	// the cached lookup requests use (tenancycache.Lookup), which also remembers unknown IDs
	// briefly. Defaults to Catalog (a query each).
	Store tenancy.Store
	// DB, when set, is the runtime DB (*tenancypgx.DB): database tenants' outboxes are drained
	// through its pooled connections, as the tenant. Defaults to nil: each drain of a database
	// tenant opens a connection of the migration role (tens of milliseconds, every sweep).
	DB Unit
	// Kinds are the only job kinds the outbox moves into River; a row of another kind is refused
	// (kept in the outbox, logged). The outbox is the tenant's own table, so SQL in the tenant's
	// unit of work can write any row there: list the kinds tenants may enqueue, never a
	// tenant-less one. Required.
	Kinds []string
	// SweepEvery is how often Run drains every tenant's outbox. Defaults to a minute.
	SweepEvery time.Duration
	// SweepConcurrency is how many tenants a sweep drains at once: tenants whose database does
	// not answer hold up that many drains, not the sweep (each waits up to its connect timeout).
	// Defaults to half the connections of the catalog's pool, which the drains of shared and
	// schema tenants use, from 1 to 8.
	SweepConcurrency int
	// DrainTimeout bounds one tenant's drain (a database server that does not answer holds no
	// one else's). Defaults to 30 s.
	DrainTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Outbox moves jobs enqueued in tenants' transactions (Enqueue) into River after they commit.
type Outbox struct {
	cfg   OutboxConfig
	kinds map[string]bool

	mu       sync.Mutex
	refused  map[string]map[string]bool // row IDs River (or Kinds) refused, by tenant ID: skipped until restart
	pending  map[string]bool            // tenant IDs announced, to drain (Run)
	overflow bool                       // announcements were dropped: sweep
	wake     chan struct{}
	moved    atomic.Uint64
	refusals atomic.Uint64
}

// OutboxStats counts what an Outbox did.
type OutboxStats struct {
	Moved   uint64 `json:"moved"`   // jobs moved into River
	Refused uint64 `json:"refused"` // rows River or Kinds refused (kept in the outbox, skipped)
}

// Stats returns the counts so far.
func (o *Outbox) Stats() OutboxStats {
	return OutboxStats{Moved: o.moved.Load(), Refused: o.refusals.Load()}
}

// NewOutbox returns an Outbox.
func NewOutbox(cfg *OutboxConfig) (*Outbox, error) {
	if cfg == nil || cfg.Client == nil || cfg.Catalog == nil || len(cfg.Kinds) == 0 {
		return nil, errors.New("tenancyriver: NewOutbox needs Client, Catalog and Kinds (the kinds tenants may enqueue)")
	}
	o := &Outbox{cfg: *cfg, refused: map[string]map[string]bool{}, pending: map[string]bool{}, wake: make(chan struct{}, 1),
		kinds: map[string]bool{}}
	for _, k := range o.cfg.Kinds {
		o.kinds[k] = true
	}
	if o.cfg.Store == nil {
		o.cfg.Store = o.cfg.Catalog
	}
	if o.cfg.DrainTimeout <= 0 {
		o.cfg.DrainTimeout = 30 * time.Second
	}
	if o.cfg.SharedSchema == "" {
		o.cfg.SharedSchema = "public"
	}
	if o.cfg.SweepEvery <= 0 {
		o.cfg.SweepEvery = time.Minute
	}
	if o.cfg.SweepConcurrency <= 0 {
		o.cfg.SweepConcurrency = min(8, max(1, int(o.cfg.Catalog.Pool().Config().MaxConns)/2))
	}
	if o.cfg.Logger == nil {
		o.cfg.Logger = slog.Default()
	}
	return o, nil
}

// Unit runs units of work: *tenancypgx.DB.
type Unit interface {
	Tx(ctx context.Context, fn func(pgx.Tx) error) error
}

// Tx runs fn in db.Tx for ctx's tenant and, once it committed, moves the jobs fn enqueued into
// River: when Tx returns nil they are in River — or, if that failed (logged), in the outbox, for
// Run's next drain.
func (o *Outbox) Tx(ctx context.Context, db Unit, fn func(pgx.Tx) error) error {
	t, ok := tenancy.FromContext(ctx)
	if !ok {
		return tenancy.ErrNoTenant
	}
	if err := db.Tx(ctx, fn); err != nil {
		return err
	}
	// Committed: a client that goes away now must not cut the move short (the sweep would have
	// to find the jobs).
	if _, err := o.Drain(context.WithoutCancel(ctx), t); err != nil {
		o.cfg.Logger.WarnContext(ctx, "tenancyriver: jobs committed but not yet moved into River; the outbox keeps them", "tenant", t.Slug, "err", err)
	}
	return nil
}

// drainBatch is how many rows one drain transaction moves.
const drainBatch = 500

// Drain moves tenant t's committed jobs from its outbox into River and returns how many it moved.
// Concurrent drains of one tenant each take rows no other holds.
func (o *Outbox) Drain(ctx context.Context, t *tenancy.Tenant) (int, error) {
	ctx, cancel := context.WithTimeout(tenancy.WithTenant(ctx, t), o.cfg.DrainTimeout)
	defer cancel()
	// Read before any transaction holds a connection: drains at once must not wait for the pool.
	key, err := o.cfg.Catalog.BindingKey(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	after := position{at: time.Time{}, id: "00000000-0000-0000-0000-000000000000"}
	for { // batch after batch, each after the last one's last row: a drain sees each row once
		var b batchResult
		if t.Isolation == tenancy.IsolationDatabase {
			b, err = o.drainDatabase(ctx, t, key, after)
		} else {
			b, err = o.drainCatalog(ctx, t, key, after)
		}
		total += b.moved
		if err != nil || b.taken < drainBatch {
			return total, err
		}
		after = b.last
	}
}

// position is where a drain is in a tenant's outbox: the last row it took.
type position struct {
	at time.Time
	id string
}

// batchResult is what one batch of a drain did.
type batchResult struct {
	taken, moved int
	last         position
}

// outboxIdent is the outbox of a tenant whose placement is in the catalog's database.
func (o *Outbox) outboxIdent(t *tenancy.Tenant) pgx.Identifier {
	if t.Isolation == tenancy.IsolationSchema {
		return pgx.Identifier{tenancycatalog.SchemaName(t.ID), OutboxTable}
	}
	return pgx.Identifier{o.cfg.SharedSchema, OutboxTable}
}

type outboxRow struct {
	id, kind string
	at       time.Time
	args     []byte
	opts     outboxOpts
	bad      error // why it cannot be a job whatever River says: opts that do not decode, a kind Kinds lacks
}

// selectOutbox takes a batch of the tenant's committed rows after a position, oldest first,
// locked, skipping rows another drain holds.
const selectOutbox = `SELECT id::text, created_at, kind, args, opts FROM %s
	WHERE tenant_id = $1 AND (created_at, id) > ($2, $3::uuid) ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED`

// drainCatalog moves a batch of a shared or schema tenant's rows in one transaction with their
// jobs' insertion: exactly once.
func (o *Outbox) drainCatalog(ctx context.Context, t *tenancy.Tenant, key *tenancycatalog.BindingKey, after position) (batchResult, error) {
	tx, err := o.cfg.Catalog.Pool().Begin(ctx)
	if err != nil {
		return batchResult{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	table := o.outboxIdent(t).Sanitize()
	return o.drainTx(ctx, tx, key, t, table, after, func(params []river.InsertManyParams) error {
		sp, err := tx.Begin(ctx) // a savepoint: a refused insertion leaves the transaction usable
		if err != nil {
			return err
		}
		if _, err := o.cfg.Client.InsertManyTx(ctx, sp, params); err != nil {
			_ = sp.Rollback(ctx)
			return err
		}
		return sp.Commit(ctx)
	}, tx.Commit)
}

// drainDatabase moves a batch of a database tenant's rows: their jobs are inserted, then the rows
// deleted (at least once).
func (o *Outbox) drainDatabase(ctx context.Context, t *tenancy.Tenant, key *tenancycatalog.BindingKey, after position) (batchResult, error) {
	insert := func(params []river.InsertManyParams) error {
		_, err := o.cfg.Client.InsertMany(ctx, params)
		return err
	}
	if o.cfg.DB != nil {
		var b batchResult
		var inner error
		err := o.cfg.DB.Tx(ctx, func(tx pgx.Tx) error { // the unit binds the tenant itself
			b, inner = o.drainTx(ctx, tx, nil, t, OutboxTable, after, insert, func(context.Context) error { return nil })
			return nil // commit what moved, also when a later row failed
		})
		if err == nil {
			err = inner
		}
		return b, err
	}
	cfg, err := o.cfg.Catalog.Servers().ConnConfig(t.Server, t.Database)
	if err != nil {
		return batchResult{}, err
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 10*time.Second {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return batchResult{}, fmt.Errorf("tenancyriver: the database of %s: %w", t.Slug, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return batchResult{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return o.drainTx(ctx, tx, key, t, OutboxTable, after, insert, tx.Commit)
}

// drainTx takes a batch of t's rows in tx (binding it first when key is set), inserts their jobs
// with insert, deletes the rows whose jobs are in and commits with commit — also when a row
// failed for a reason that may pass (then the drain stops there, with that error, and the row
// waits for the next).
func (o *Outbox) drainTx(ctx context.Context, tx pgx.Tx, key *tenancycatalog.BindingKey, t *tenancy.Tenant, table string,
	after position, insert func([]river.InsertManyParams) error, commit func(context.Context) error) (batchResult, error) {
	if key != nil {
		if err := key.Bind(ctx, tx, t.ID); err != nil {
			return batchResult{}, err
		}
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(selectOutbox, table), t.ID, after.at, after.id, drainBatch)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // no outbox in this placement: nothing to move
			return batchResult{}, nil
		}
		return batchResult{}, fmt.Errorf("tenancyriver: the outbox of %s: %w", t.Slug, err)
	}
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
		var row outboxRow
		var opts []byte
		if err := r.Scan(&row.id, &row.at, &row.kind, &row.args, &opts); err != nil {
			return row, err
		}
		if err := json.Unmarshal(opts, &row.opts); err != nil {
			row.bad = fmt.Errorf("opts: %w", err)
		} else if err := row.opts.check(); err != nil {
			row.bad = err
		}
		if o.kinds != nil && !o.kinds[row.kind] {
			row.bad = errors.New("a kind OutboxConfig.Kinds does not list")
		}
		return row, nil
	})
	if err != nil || len(batch) == 0 {
		return batchResult{}, err
	}
	b := batchResult{taken: len(batch), last: position{batch[len(batch)-1].at, batch[len(batch)-1].id}}
	moved, insertErr := o.insert(ctx, t, batch, insert)
	if len(moved) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, t.ID, moved); err != nil {
			return batchResult{}, fmt.Errorf("tenancyriver: the outbox of %s: %w", t.Slug, err)
		}
	}
	if err := commit(ctx); err != nil {
		return batchResult{}, err
	}
	b.moved = len(moved)
	o.moved.Add(uint64(len(moved)))
	return b, insertErr
}

// insert inserts the batch's jobs with do, all at once, or, when River refuses the batch, one by
// one. It returns the IDs of the rows whose jobs are in. A row refused for good (a kind no
// worker knows, opts River cannot take, another tenant named) is set aside: it stays in the
// outbox, logged once. Any other error (the database, the network, the drain's time) stops the
// insertion there and is returned: the rest wait for the next drain.
func (o *Outbox) insert(ctx context.Context, t *tenancy.Tenant, batch []outboxRow, do func([]river.InsertManyParams) error) ([]string, error) {
	var ok []outboxRow
	for _, r := range batch {
		switch {
		case r.bad != nil:
			o.refuse(ctx, t, r, r.bad)
		case o.wasRefused(t.ID, r.id):
		default:
			ok = append(ok, r)
		}
	}
	ids := func(rows []outboxRow) []string {
		out := make([]string, len(rows))
		for i, r := range rows {
			out[i] = r.id
		}
		return out
	}
	if len(ok) == 0 {
		return nil, nil
	}
	err := do(o.params(ok))
	if err == nil {
		return ids(ok), nil
	}
	if !refusedForGood(err) {
		return nil, err
	}
	var moved []outboxRow
	for _, r := range ok {
		err := do(o.params([]outboxRow{r}))
		switch {
		case err == nil:
			moved = append(moved, r)
		case refusedForGood(err):
			o.refuse(ctx, t, r, err)
		default:
			return ids(moved), err
		}
	}
	return ids(moved), nil
}

// refusedForGood reports whether River (or the middleware) refused a job in a way a retry would
// repeat.
func refusedForGood(err error) bool {
	var unknown *river.UnknownJobKindError
	return errors.As(err, &unknown) || errors.Is(err, ErrForgedTenant) || errors.Is(err, tenancy.ErrNoTenant)
}

// check refuses what River would refuse of a row's options, so it is refused for good here.
func (o outboxOpts) check() error {
	switch {
	case o.Priority < 0 || o.Priority > lowestPriority:
		return fmt.Errorf("priority %d is not River's 1 to 4", o.Priority)
	case o.Queue != "" && (len(o.Queue) > 64 || !queueName.MatchString(o.Queue)):
		return fmt.Errorf("queue %q is not a River queue name", o.Queue)
	case o.MaxAttempts < 0:
		return fmt.Errorf("max_attempts %d", o.MaxAttempts)
	}
	for _, tag := range o.Tags {
		if len(tag) > 255 {
			return errors.New("a tag longer than 255 characters")
		}
	}
	return nil
}

// queueName is what River accepts as a queue's name.
var queueName = regexp.MustCompile(`^[a-z0-9]+([_|-]?[a-z0-9]+)*$`)

// refuse sets a row River would not take aside: it stays in the outbox, logged the first time;
// this process remembers it (for at most maxRefused rows of maxRefusedTenants tenants) so it does
// not offer it to River again.
func (o *Outbox) refuse(ctx context.Context, t *tenancy.Tenant, r outboxRow, err error) {
	o.refusals.Add(1)
	o.mu.Lock()
	m := o.refused[t.ID]
	if m == nil && len(o.refused) < maxRefusedTenants {
		m = map[string]bool{}
		o.refused[t.ID] = m
	}
	first := m == nil || !m[r.id]
	if m != nil && len(m) < maxRefused {
		m[r.id] = true
	}
	o.mu.Unlock()
	if first {
		o.cfg.Logger.ErrorContext(ctx, "tenancyriver: a job in the outbox was refused; it stays there",
			"tenant", t.Slug, "row", r.id, "kind", r.kind, "err", err)
	}
}

const (
	maxRefused        = 1000
	maxRefusedTenants = 1000
)

func (o *Outbox) wasRefused(tenant, row string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.refused[tenant][row]
}

// params are the River insertions of outbox rows, each marked with its row's ID.
func (o *Outbox) params(batch []outboxRow) []river.InsertManyParams {
	out := make([]river.InsertManyParams, len(batch))
	for i, r := range batch {
		m := map[string]json.RawMessage{}
		if len(r.opts.Metadata) > 0 {
			_ = json.Unmarshal(r.opts.Metadata, &m) // not an object: its keys are dropped
		}
		id, _ := json.Marshal(r.id)
		m[OutboxKey] = id
		meta, _ := json.Marshal(m)
		opts := &river.InsertOpts{Queue: r.opts.Queue, Priority: r.opts.Priority, MaxAttempts: r.opts.MaxAttempts,
			Tags: r.opts.Tags, Metadata: meta}
		if r.opts.ScheduledAt != nil {
			opts.ScheduledAt = *r.opts.ScheduledAt
		}
		out[i] = river.InsertManyParams{Args: rawArgs{kind: r.kind, raw: r.args}, InsertOpts: opts}
	}
	return out
}

// rawArgs are a job's arguments as the outbox kept them.
type rawArgs struct {
	kind string
	raw  json.RawMessage
}

func (a rawArgs) Kind() string                 { return a.kind }
func (a rawArgs) MarshalJSON() ([]byte, error) { return a.raw, nil }

// Sweep drains every tenant whose outbox holds jobs: the shared outbox's tenants (found in one
// query when the migration role bypasses row-level security, else each shared tenant of the
// catalog in turn), then each schema and database tenant's. It returns how many jobs it moved,
// and the tenants' errors joined (one tenant's failure does not stop the others'). It drains up
// to SweepConcurrency tenants at once.
func (o *Outbox) Sweep(ctx context.Context) (int, error) {
	var (
		mu    sync.Mutex
		total int
		errs  []error
		g     errgroup.Group
	)
	g.SetLimit(o.cfg.SweepConcurrency)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	drain := func(t *tenancy.Tenant) error {
		g.Go(func() error {
			n, err := o.Drain(ctx, t)
			mu.Lock()
			total += n
			mu.Unlock()
			if err != nil {
				fail(err)
			}
			return nil
		})
		return ctx.Err()
	}
	var bypass bool
	if err := o.cfg.Catalog.Pool().QueryRow(ctx, `SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&bypass); err != nil {
		return 0, fmt.Errorf("tenancyriver: %w", err)
	}
	if bypass {
		var ids []string
		rows, err := o.cfg.Catalog.Pool().Query(ctx, `SELECT DISTINCT tenant_id::text FROM `+pgx.Identifier{o.cfg.SharedSchema, OutboxTable}.Sanitize())
		if err == nil {
			ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P01") {
			fail(fmt.Errorf("tenancyriver: the shared outbox: %w", err))
		}
		for _, id := range ids {
			t, err := o.cfg.Catalog.TenantByID(ctx, id)
			if err != nil {
				fail(err)
				continue
			}
			if t.Isolation == tenancy.IsolationShared && (t.Status == tenancy.StatusActive || t.Status == tenancy.StatusSuspended) {
				if drain(t) != nil { // (a tenant that moved away took its rows with it)
					break
				}
			}
		}
	}
	isolations := []tenancy.Isolation{tenancy.IsolationSchema, tenancy.IsolationDatabase}
	if !bypass {
		isolations = append(isolations, tenancy.IsolationShared)
	}
	for _, iso := range isolations {
		err := o.cfg.Catalog.Each(ctx, &tenancycatalog.ListOpts{Isolation: iso}, func(t *tenancy.Tenant) error {
			if t.Status == tenancy.StatusActive || t.Status == tenancy.StatusSuspended {
				return drain(t)
			}
			return nil
		})
		if err != nil {
			fail(err)
		}
	}
	g.Wait()
	return total, errors.Join(errs...)
}

// Run drains a shared or schema tenant's outbox as soon as a commit that enqueued into it is
// announced, and sweeps every tenant's every SweepEvery (and once at start), until ctx ends. The
// announcements are coalesced per tenant (anyone may send one: at most one drain of a tenant is
// pending), and the sweep runs beside them, so a slow tenant holds up neither.
func (o *Outbox) Run(ctx context.Context) error {
	go o.listen(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		tick := time.NewTicker(o.cfg.SweepEvery)
		defer tick.Stop()
		for {
			if _, err := o.Sweep(ctx); err != nil && ctx.Err() == nil {
				o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox sweep", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { <-swept }()
	var lastFlush time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.wake:
		}
		ids, overflow := o.takePending()
		if overflow && time.Since(lastFlush) > 5*time.Second { // at most every 5 s: the flood goes on
			lastFlush = time.Now()
			if _, err := o.Sweep(ctx); err != nil && ctx.Err() == nil {
				o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox sweep after a flood of announcements", "err", err)
			}
		}
		for _, id := range ids {
			t, err := o.cfg.Store.TenantByID(ctx, id)
			if err != nil || t.Isolation == tenancy.IsolationDatabase {
				continue // no such tenant, or one whose outbox is elsewhere: a notification nobody committed
			}
			if _, err := o.Drain(ctx, t); err != nil && ctx.Err() == nil {
				o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox drain", "tenant", t.Slug, "err", err)
			}
		}
	}
}

// maxPending bounds the announced tenants waiting for a drain; beyond it, the sweep finds them.
const maxPending = 10000

func (o *Outbox) announce(id string) {
	o.mu.Lock()
	if len(o.pending) < maxPending {
		o.pending[id] = true
	} else {
		o.overflow = true // a flood (of made-up IDs, likely): sweep instead of dropping real ones
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *Outbox) takePending() (ids []string, overflow bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids = make([]string, 0, len(o.pending))
	for id := range o.pending {
		ids = append(ids, id)
	}
	clear(o.pending)
	overflow, o.overflow = o.overflow, false
	return ids, overflow
}

// listen announces the tenant IDs notified on the outbox channel, reconnecting after a failure.
func (o *Outbox) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := o.cfg.Catalog.Pool().Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, `LISTEN `+outboxChannel); err != nil {
				return err
			}
			defer conn.Exec(context.WithoutCancel(ctx), `UNLISTEN `+outboxChannel)
			for {
				n, err := conn.Conn().WaitForNotification(ctx)
				if err != nil {
					return err
				}
				if id := strings.ToLower(n.Payload); isUUID(id) { // anyone may notify: only a tenant ID is heard
					o.announce(id)
				}
			}
		}()
		if err != nil && ctx.Err() == nil {
			o.cfg.Logger.WarnContext(ctx, "tenancyriver: outbox listener", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
