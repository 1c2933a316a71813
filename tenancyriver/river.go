package tenancyriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancyrate"
)

// MetadataKey is the key of a job's River metadata under which its tenant is recorded:
// {"tenancy_tenant": "<tenant id>"}.
const MetadataKey = "tenancy_tenant"

// Errors a job ends with when it cannot run as its tenant.
var (
	// ErrUnknownTenant: the job names a tenant the catalog does not have (never had, or purged).
	// The job is discarded at once: no retry can make the tenant known.
	ErrUnknownTenant = errors.New("tenancyriver: the job's tenant is unknown")
	// ErrTenantDeleted: the job's tenant was deleted. The job is cancelled.
	ErrTenantDeleted = errors.New("tenancyriver: the job's tenant was deleted")
	// ErrForgedTenant: a job inserted with metadata naming a tenant other than its context's.
	ErrForgedTenant = errors.New("tenancyriver: the job's metadata names another tenant than its context")
)

// Config configures Jobs. Store is required.
type Config struct {
	// Store looks the tenant of each job up when it runs, fresh: give the same cached lookup the
	// requests use (tenancycache.Lookup), whose entries the catalog's changes invalidate.
	Store tenancy.Store
	// TenantLess are the job kinds that may be inserted without a tenant (maintenance across
	// tenants); inserted so, they run with none. Inserted from a tenant's context, such a job
	// records and runs as that tenant, like any. Every other kind needs a tenant: inserting it
	// from a context without one fails with tenancy.ErrNoTenant.
	TenantLess []string
	// PerTenant is how many jobs of one tenant may run at once in this client; a job over it is
	// snoozed for BusySnooze, not failed, so one tenant's flood leaves the workers to the others.
	// Defaults to 4.
	PerTenant int
	// Limiter and Policy, when both set, limit the rate at which each tenant's jobs start
	// (tenancyrate: the tenant's own limit, else its plan's); a job over it is snoozed until
	// the limit allows it. Defaults to nil: no rate limit.
	Limiter tenancyrate.Limiter
	Policy  *tenancyrate.Policy
	// FloodAfter is how many jobs a tenant may insert in a FloodWindow at their own priority;
	// the ones beyond go in at River's lowest (4), so the jobs other tenants insert meanwhile are
	// fetched before the rest of the flood — which still runs at full speed when no one else has
	// work. Counted per process. Defaults to 100; -1 turns it off.
	FloodAfter int
	// FloodWindow is FloodAfter's window. Defaults to 10 s.
	FloodWindow time.Duration
	// BusySnooze is how long a job over its tenant's PerTenant waits (with up to half again of
	// jitter). Defaults to 250 ms.
	BusySnooze time.Duration
	// SuspendedSnooze is how long a suspended (or still provisioning) tenant's job waits before
	// it looks at its tenant again. Defaults to a minute.
	SuspendedSnooze time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Jobs is River middleware that makes a job keep its tenant: insertion records the tenant of the
// inserting context in the job's metadata, and running restores it, looked up again, into the
// job's context — so db.Tx in a worker is bound to the tenant that enqueued the job. Give
// Middleware to river.Config.Middleware.
type Jobs struct {
	cfg        Config
	tenantLess map[string]bool
	mu         sync.Mutex
	running    map[string]int // jobs running by tenant ID
	inserts    map[string]*insertWindow
	sweeps     int
	stats      struct {
		inserted, demoted, ran, busy, rateLimited, suspended, cancelled, discarded, unavailable atomic.Uint64
	}
}

// insertWindow counts a tenant's inserts since start (FloodAfter).
type insertWindow struct {
	start time.Time
	n     int
}

// New returns Jobs.
func New(cfg *Config) (*Jobs, error) {
	if cfg == nil || cfg.Store == nil {
		return nil, errors.New("tenancyriver: New needs Config.Store")
	}
	j := &Jobs{cfg: *cfg, tenantLess: map[string]bool{}, running: map[string]int{}, inserts: map[string]*insertWindow{}}
	if j.cfg.PerTenant < 0 || j.cfg.BusySnooze < 0 || j.cfg.SuspendedSnooze < 0 || j.cfg.FloodWindow < 0 || j.cfg.FloodAfter < -1 {
		return nil, errors.New("tenancyriver: PerTenant, FloodWindow, BusySnooze and SuspendedSnooze must not be negative (FloodAfter -1 is off)")
	}
	if j.cfg.FloodAfter == 0 {
		j.cfg.FloodAfter = 100
	}
	if j.cfg.FloodWindow == 0 {
		j.cfg.FloodWindow = 10 * time.Second
	}
	if (j.cfg.Limiter == nil) != (j.cfg.Policy == nil) {
		return nil, errors.New("tenancyriver: Limiter and Policy go together")
	}
	if j.cfg.PerTenant == 0 {
		j.cfg.PerTenant = 4
	}
	if j.cfg.BusySnooze == 0 {
		j.cfg.BusySnooze = 250 * time.Millisecond
	}
	if j.cfg.SuspendedSnooze == 0 {
		j.cfg.SuspendedSnooze = time.Minute
	}
	if j.cfg.Logger == nil {
		j.cfg.Logger = slog.Default()
	}
	for _, k := range j.cfg.TenantLess {
		j.tenantLess[k] = true
	}
	return j, nil
}

// Middleware returns the insert and worker middleware, for river.Config.Middleware.
func (j *Jobs) Middleware() []rivertype.Middleware {
	return []rivertype.Middleware{&inserter{j: j}, &worker{j: j}}
}

// Stats counts what the middleware did.
type Stats struct {
	Inserted    uint64 `json:"inserted"`     // jobs inserted with a tenant
	Demoted     uint64 `json:"demoted"`      // of which inserted at the lowest priority: their tenant's flood (FloodAfter)
	Ran         uint64 `json:"ran"`          // jobs run as their tenant (or tenant-less)
	Busy        uint64 `json:"busy"`         // snoozed: their tenant had PerTenant jobs running
	RateLimited uint64 `json:"rate_limited"` // snoozed: over their tenant's rate
	Suspended   uint64 `json:"suspended"`    // snoozed: their tenant is suspended or provisioning
	Cancelled   uint64 `json:"cancelled"`    // their tenant was deleted
	Discarded   uint64 `json:"discarded"`    // their tenant is unknown, or they have none and need one
	Unavailable uint64 `json:"unavailable"`  // the catalog could not answer: retried as River retries errors
}

// Stats returns the counts so far.
func (j *Jobs) Stats() Stats {
	s := &j.stats
	return Stats{Inserted: s.inserted.Load(), Demoted: s.demoted.Load(), Ran: s.ran.Load(), Busy: s.busy.Load(), RateLimited: s.rateLimited.Load(),
		Suspended: s.suspended.Load(), Cancelled: s.cancelled.Load(), Discarded: s.discarded.Load(), Unavailable: s.unavailable.Load()}
}

// TenantOf returns the ID of the tenant a job was inserted for, if it has one.
func TenantOf(job *rivertype.JobRow) (string, bool) {
	return tenantIn(job.Metadata)
}

func tenantIn(metadata []byte) (string, bool) {
	if len(metadata) == 0 {
		return "", false
	}
	var m struct {
		Tenant *string `json:"tenancy_tenant"` // MetadataKey
	}
	if json.Unmarshal(metadata, &m) != nil || m.Tenant == nil || *m.Tenant == "" {
		return "", false
	}
	return *m.Tenant, true
}

// inserter records the inserting context's tenant in each job's metadata.
type inserter struct {
	river.MiddlewareDefaults
	j *Jobs
}

func (in *inserter) InsertMany(ctx context.Context, params []*rivertype.JobInsertParams, doInner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
	t, hasTenant := tenancy.FromContext(ctx)
	for _, p := range params {
		m := map[string]json.RawMessage{}
		if len(p.Metadata) > 0 {
			if err := json.Unmarshal(p.Metadata, &m); err != nil {
				return nil, fmt.Errorf("tenancyriver: job %s: metadata is not a JSON object: %w", p.Kind, err)
			}
		}
		named, has := tenantIn(p.Metadata)
		if _, present := m[MetadataKey]; present && !has {
			return nil, fmt.Errorf("%w: job %s: %s is not a tenant ID", ErrForgedTenant, p.Kind, MetadataKey)
		}
		switch {
		case !hasTenant && in.j.tenantLess[p.Kind] && !has:
			continue // a tenant-less job, inserted as one
		case !hasTenant:
			if has {
				return nil, fmt.Errorf("%w: job %s names tenant %s in its metadata, its context none (insert it from the tenant's context)", ErrForgedTenant, p.Kind, named)
			}
			return nil, fmt.Errorf("%w: job %s is inserted without a tenant in its context (declare its kind in Config.TenantLess if it has none)", tenancy.ErrNoTenant, p.Kind)
		case has && !strings.EqualFold(named, t.ID):
			return nil, fmt.Errorf("%w: job %s", ErrForgedTenant, p.Kind)
		}
		id, _ := json.Marshal(t.ID)
		m[MetadataKey] = id
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		p.Metadata = b
		if in.j.flooding(t.ID) && p.Priority < lowestPriority {
			p.Priority = lowestPriority
			in.j.stats.demoted.Add(1)
		}
	}
	res, err := doInner(ctx)
	if err == nil && hasTenant {
		n := uint64(len(params))
		for _, r := range res { // InsertManyFast returns no results: then every job counts
			if r != nil && r.UniqueSkippedAsDuplicate {
				n--
			}
		}
		in.j.stats.inserted.Add(n)
	}
	return res, err
}

// worker restores the job's tenant into its context, or snoozes, cancels or discards the job.
type worker struct {
	river.MiddlewareDefaults
	j *Jobs
}

func (w *worker) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	j := w.j
	log := func() *slog.Logger { return j.cfg.Logger.With("job_id", job.ID, "job_kind", job.Kind) } // only when there is something to say
	id, ok := TenantOf(job)
	if !ok {
		if j.tenantLess[job.Kind] {
			j.stats.ran.Add(1)
			return doInner(tenancy.WithTenant(ctx, nil))
		}
		j.stats.discarded.Add(1)
		log().WarnContext(ctx, "tenancyriver: a job without a tenant, of a kind that needs one, discarded")
		return discard(job, fmt.Errorf("%w: job %s has no tenant in its metadata", tenancy.ErrNoTenant, job.Kind))
	}
	t, err := j.cfg.Store.TenantByID(ctx, id)
	switch {
	case errors.Is(err, tenancy.ErrTenantNotFound):
		j.stats.discarded.Add(1)
		log().WarnContext(ctx, "tenancyriver: a job of an unknown tenant, discarded", "tenant_id", id)
		return discard(job, fmt.Errorf("%w: %s", ErrUnknownTenant, id))
	case err != nil:
		j.stats.unavailable.Add(1)
		return fmt.Errorf("tenancyriver: looking up the job's tenant %s: %w", id, err)
	}
	switch t.Status {
	case tenancy.StatusActive:
	case tenancy.StatusSuspended, tenancy.StatusProvisioning:
		j.stats.suspended.Add(1)
		return river.JobSnooze(jitter(j.cfg.SuspendedSnooze)) // spread: a backlog does not come back at once
	default: // deleted
		j.stats.cancelled.Add(1)
		return river.JobCancel(fmt.Errorf("%w: %s", ErrTenantDeleted, t))
	}
	if !j.acquire(t.ID) {
		j.stats.busy.Add(1)
		return river.JobSnooze(jitter(j.cfg.BusySnooze))
	}
	defer j.release(t.ID)
	if j.cfg.Limiter != nil {
		res, err := j.cfg.Limiter.Allow(ctx, "jobs:"+t.ID, j.cfg.Policy.For(t))
		if err != nil {
			j.stats.unavailable.Add(1)
			return fmt.Errorf("tenancyriver: the rate limit of tenant %s: %w", t.Slug, err)
		}
		if !res.Allowed {
			j.stats.rateLimited.Add(1)
			return river.JobSnooze(jitter(res.RetryAfter))
		}
	}
	j.stats.ran.Add(1)
	return doInner(tenancy.WithTenant(ctx, t))
}

// lowestPriority is River's lowest job priority.
const lowestPriority = 4

// flooding counts one insert of the tenant's and reports whether it is beyond FloodAfter in the
// current window.
func (j *Jobs) flooding(id string) bool {
	if j.cfg.FloodAfter < 0 {
		return false
	}
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.sweeps++; j.sweeps >= 4096 { // forget the windows that ended, so idle tenants cost nothing
		j.sweeps = 0
		for k, w := range j.inserts {
			if now.Sub(w.start) >= j.cfg.FloodWindow {
				delete(j.inserts, k)
			}
		}
	}
	w := j.inserts[id]
	if w == nil || now.Sub(w.start) >= j.cfg.FloodWindow {
		w = &insertWindow{start: now}
		j.inserts[id] = w
	}
	w.n++
	return w.n > j.cfg.FloodAfter
}

// acquire takes one of the tenant's PerTenant slots; false when none is free.
func (j *Jobs) acquire(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running[id] >= j.cfg.PerTenant {
		return false
	}
	j.running[id]++
	return true
}

func (j *Jobs) release(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running[id]--; j.running[id] <= 0 {
		delete(j.running, id)
	}
}

// jitter spreads snoozed jobs over up to half again d, so a flood does not come back at once.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d/2)+1))
}

// discard makes River discard the job now, with err, whatever attempts it has left: River
// discards a failed job that has used its last attempt.
func discard(job *rivertype.JobRow, err error) error {
	job.MaxAttempts = job.Attempt
	return err
}
