package tenancyriver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyriver"
	"github.com/gotenancy/tenancy/tenancytest"
)

var line = fstest.MapFS{
	"0001_notes.sql": {Data: []byte(`CREATE TABLE notes (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
		body text NOT NULL, PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('notes');`)},
	"0002_job_outbox.sql": {Data: []byte(tenancyriver.OutboxMigration)},
}

// noteArgs is a job that reads its tenant's notes.
type noteArgs struct {
	Label string `json:"label"`
}

func (noteArgs) Kind() string { return "note" }

// sweepArgs is a job of no tenant (declared TenantLess).
type sweepArgs struct{}

func (sweepArgs) Kind() string { return "sweep" }

// ran is what a job saw when it ran.
type ran struct {
	label  string
	tenant string // the slug of the tenant in its context, "" for none
	notes  []string
	err    error
	at     time.Time
}

type noteWorker struct {
	river.WorkerDefaults[noteArgs]
	db   *tenancypgx.DB
	hold time.Duration // how long each job takes
	seen chan ran
}

func (w *noteWorker) Work(ctx context.Context, job *river.Job[noteArgs]) error {
	r := ran{label: job.Args.Label, at: time.Now()}
	if t, ok := tenancy.FromContext(ctx); ok {
		r.tenant = t.Slug
		r.err = w.db.Tx(ctx, func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, `SELECT body FROM notes ORDER BY body`)
			var err error
			r.notes, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
	}
	time.Sleep(w.hold)
	w.seen <- r
	return r.err
}

type sweepWorker struct {
	river.WorkerDefaults[sweepArgs]
	seen chan ran
}

func (w *sweepWorker) Work(ctx context.Context, job *river.Job[sweepArgs]) error {
	r := ran{label: "sweep"}
	if t, ok := tenancy.FromContext(ctx); ok {
		r.tenant = t.Slug
	}
	w.seen <- r
	return nil
}

type setup struct {
	env    *tenancytest.Env
	jobs   *tenancyriver.Jobs
	client *river.Client[pgx.Tx]
	seen   chan ran
}

func newSetup(t *testing.T, cfg tenancyriver.Config, maxWorkers int, hold time.Duration) *setup {
	t.Helper()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: line})
	ctx := context.Background()
	if _, err := tenancyriver.Migrate(ctx, env.Pool); err != nil {
		t.Fatal(err)
	}
	cfg.Store = env.Catalog
	cfg.TenantLess = []string{"sweep"}
	jobs, err := tenancyriver.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{env: env, jobs: jobs, seen: make(chan ran, 100000)}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noteWorker{db: env.DB, hold: hold, seen: s.seen})
	river.AddWorker(workers, &sweepWorker{seen: s.seen})
	s.client, err = river.NewClient(riverpgxv5.New(env.Pool), &river.Config{
		Schema:            tenancyriver.Schema,
		PollOnly:          true,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		Workers:           workers,
		Middleware:        jobs.Middleware(),
		FetchCooldown:     5 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.client.Stop(stop)
	})
	return s
}

// note writes a note as tn.
func (s *setup) note(t *testing.T, tn *tenancy.Tenant, body string) {
	t.Helper()
	if err := s.env.DB.Tx(tenancytest.Context(tn), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `INSERT INTO notes (body) VALUES ($1)`, body)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func (s *setup) next(t *testing.T) ran {
	t.Helper()
	select {
	case r := <-s.seen:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no job ran within 15 s")
		return ran{}
	}
}

func (s *setup) state(t *testing.T, id int64) rivertype.JobState {
	t.Helper()
	j, err := s.client.JobGet(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j.State
}

// floodThenOne queues n jobs of a (labelled "a"), then one of b ("b"), and returns when it began.
func (s *setup) floodThenOne(t *testing.T, a, b *tenancy.Tenant, n int) time.Time {
	t.Helper()
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: noteArgs{Label: "a"}}
	}
	began := time.Now()
	if _, err := s.client.InsertMany(tenancytest.Context(a), params); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Insert(tenancytest.Context(b), noteArgs{Label: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	return began
}

// A job enqueued by a tenant runs as that tenant, in every isolation model: db.Tx in the worker
// sees that tenant's rows and none of the other's.
func TestJobRunsAsItsTenant(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	for _, iso := range tenancytest.Models {
		a, b := s.env.Pair(t, iso)
		s.note(t, a, "a's secret")
		s.note(t, b, "b's secret")
		for _, tn := range []*tenancy.Tenant{a, b} {
			res, err := s.client.Insert(tenancytest.Context(tn), noteArgs{Label: tn.Slug}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if id, ok := tenancyriver.TenantOf(res.Job); !ok || id != tn.ID {
				t.Fatalf("%s: the job's recorded tenant %q, want %s", iso, id, tn.ID)
			}
		}
		got := map[string]ran{}
		for range 2 {
			r := s.next(t)
			got[r.label] = r
		}
		for tn, want := range map[*tenancy.Tenant]string{a: "a's secret", b: "b's secret"} {
			r := got[tn.Slug]
			if r.err != nil || r.tenant != tn.Slug || fmt.Sprint(r.notes) != "["+want+"]" {
				t.Fatalf("%s: %s's job ran as %q and saw %v (%v); want only %q", iso, tn.Slug, r.tenant, r.notes, r.err, want)
			}
		}
	}
	if st := s.jobs.Stats(); st.Inserted != 6 || st.Ran != 6 {
		t.Fatalf("stats %+v, want 6 inserted and run", st)
	}
}

// A job needs a tenant: inserted without one it is refused (unless its kind is tenant-less, which
// runs with none), and metadata cannot name a tenant other than the context's.
func TestInsertNeedsTheTenant(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 2, 0)
	a, b := s.env.Pair(t, tenancy.IsolationShared)
	bg := context.Background()
	if _, err := s.client.Insert(bg, noteArgs{Label: "orphan"}, nil); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Fatalf("a note job without a tenant: %v, want ErrNoTenant", err)
	}
	forged := []byte(`{"` + tenancyriver.MetadataKey + `": "` + b.ID + `"}`)
	for name, ctx := range map[string]context.Context{"a's context": tenancytest.Context(a), "no tenant": bg} {
		if _, err := s.client.Insert(ctx, noteArgs{Label: "forged"}, &river.InsertOpts{Metadata: forged}); !errors.Is(err, tenancyriver.ErrForgedTenant) {
			t.Fatalf("metadata naming b from %s: %v, want ErrForgedTenant", name, err)
		}
	}
	if _, err := s.client.Insert(bg, sweepArgs{}, &river.InsertOpts{Metadata: forged}); !errors.Is(err, tenancyriver.ErrForgedTenant) {
		t.Fatalf("a tenant-less job naming b: %v, want ErrForgedTenant", err)
	}
	// Controls: the tenant-less kind from no tenant, and a's job with metadata of its own.
	if _, err := s.client.Insert(bg, sweepArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Insert(tenancytest.Context(a), noteArgs{Label: "own"}, &river.InsertOpts{Metadata: []byte(`{"trace": "x"}`)}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for range 2 {
		r := s.next(t)
		got[r.label] = r.tenant
	}
	if got["sweep"] != "" || got["own"] != a.Slug {
		t.Fatalf("ran as %v; want sweep with no tenant and own as %s", got, a.Slug)
	}
}

// A suspended tenant's job waits (snoozed, not failed) and runs after the tenant is resumed; a
// deleted tenant's is cancelled; one naming a tenant the catalog does not have is discarded.
func TestJobFollowsItsTenantsStatus(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{SuspendedSnooze: 300 * time.Millisecond}, 2, 0)
	ctx := context.Background()
	a, b := s.env.Pair(t, tenancy.IsolationShared)
	s.note(t, a, "a's note")
	if _, err := s.env.Catalog.Suspend(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	waiting, err := s.client.Insert(tenancytest.Context(a), noteArgs{Label: "waits"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tenancytest.WaitFor(t, 10*time.Second, "the suspended tenant's job snoozed", func() bool { return s.jobs.Stats().Suspended >= 2 })
	if st := s.state(t, waiting.Job.ID); st != rivertype.JobStateScheduled && st != rivertype.JobStateAvailable && st != rivertype.JobStateRunning {
		t.Fatalf("the suspended tenant's job is %s, want waiting", st)
	}
	select {
	case r := <-s.seen:
		t.Fatalf("a job ran while its tenant was suspended: %+v", r)
	default:
	}
	if _, err := s.env.Catalog.Resume(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if r := s.next(t); r.label != "waits" || r.tenant != a.Slug || fmt.Sprint(r.notes) != "[a's note]" {
		t.Fatalf("after resume: %+v, want the job run as %s", r, a.Slug)
	}
	tenancytest.WaitFor(t, 5*time.Second, "the job completed", func() bool { return s.state(t, waiting.Job.ID) == rivertype.JobStateCompleted })

	// Deleted: cancelled.
	doomed, err := s.client.Insert(tenancytest.Context(b), noteArgs{Label: "doomed"}, &river.InsertOpts{ScheduledAt: time.Now().Add(500 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.env.Catalog.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	tenancytest.WaitFor(t, 10*time.Second, "the deleted tenant's job cancelled", func() bool { return s.state(t, doomed.Job.ID) == rivertype.JobStateCancelled })

	// Unknown: inserted by a client without the middleware, as another program might.
	plain, err := river.NewClient(riverpgxv5.New(s.env.Pool), &river.Config{Schema: tenancyriver.Schema, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stray, err := plain.Insert(ctx, noteArgs{Label: "stray"}, &river.InsertOpts{
		Metadata: []byte(`{"` + tenancyriver.MetadataKey + `": "00000000-0000-4000-8000-00000000dead"}`)})
	if err != nil {
		t.Fatal(err)
	}
	untenanted, err := plain.Insert(ctx, noteArgs{Label: "untenanted"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{stray.Job.ID, untenanted.Job.ID} {
		tenancytest.WaitFor(t, 10*time.Second, "the job without a known tenant discarded", func() bool { return s.state(t, id) == rivertype.JobStateDiscarded })
	}
	j, err := s.client.JobGet(ctx, stray.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "unknown") {
		t.Fatalf("the stray job's errors %+v, want one naming the unknown tenant", j.Errors)
	}
	select {
	case r := <-s.seen:
		t.Fatalf("a job ran without its tenant: %+v", r)
	default:
	}
	if st := s.jobs.Stats(); st.Cancelled != 1 || st.Discarded != 2 || st.Ran != 1 {
		t.Fatalf("stats %+v, want 1 cancelled, 2 discarded, 1 run", st)
	}
}

// Fairness: with tenant A's 400 slow jobs queued first, tenant B's single job starts long before
// A's backlog is through — by either of the two means, each alone: A runs at most PerTenant jobs
// at once (its others snoozed while the remaining workers serve B), or A's jobs beyond
// FloodAfter go in at the lowest priority (B's is fetched first). With neither, B waits for the
// whole flood: the control that shows the test can tell.
func TestOneTenantsFloodDoesNotStarveAnother(t *testing.T) {
	t.Parallel()
	const flood = 400
	for _, c := range []struct {
		name    string
		cfg     tenancyriver.Config
		starved bool
	}{
		{"per-tenant limit", tenancyriver.Config{PerTenant: 2, BusySnooze: 200 * time.Millisecond, FloodAfter: -1}, false},
		{"flood demoted", tenancyriver.Config{PerTenant: 1000, FloodAfter: 100}, false},
		{"neither (control)", tenancyriver.Config{PerTenant: 1000, FloodAfter: -1}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, c.cfg, 6, 20*time.Millisecond)
			a, b := s.env.Pair(t, tenancy.IsolationShared)
			began := s.floodThenOne(t, a, b, flood)
			aDone := 0
			var bAt time.Time
			for bAt.IsZero() {
				if r := s.next(t); r.label == "b" {
					bAt = r.at
				} else {
					aDone++
				}
			}
			left := flood - aDone
			t.Logf("b's job started %v after the flood was queued, with %d of a's %d jobs still to run (stats %+v)",
				bAt.Sub(began).Round(time.Millisecond), left, flood, s.jobs.Stats())
			// 400 jobs of 20 ms on 6 workers take at least 1.3 s: b must not wait for them.
			if starved := left < flood/2; starved != c.starved {
				t.Fatalf("b's job ran after %d of a's %d jobs; starved %v, want %v", flood-left, flood, starved, c.starved)
			}
		})
	}
}

// With a limiter, a tenant's jobs start at most at its rate: the ones over it are snoozed until
// the limit allows them, and all run in the end; another tenant's rate is its own.
func TestJobsKeepTheirTenantsRate(t *testing.T) {
	t.Parallel()
	limiter, err := tenancyrate.NewMemoryLimiter(nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &tenancyrate.Policy{Plans: map[string]tenancyrate.Limit{"free": {Rate: 5, Period: time.Second, Burst: 2}}}
	s := newSetup(t, tenancyriver.Config{Limiter: limiter, Policy: policy}, 6, 0)
	a, b := s.env.Pair(t, tenancy.IsolationShared)
	began := s.floodThenOne(t, a, b, 10)
	var aAt []time.Duration
	var bAt time.Duration
	for range 11 {
		r := s.next(t)
		if r.label == "b" {
			bAt = r.at.Sub(began)
		} else {
			aAt = append(aAt, r.at.Sub(began))
		}
	}
	// 10 jobs at 5 a second with a burst of 2 take at least 1.6 s; b's one is within its own burst.
	if last := aAt[len(aAt)-1]; last < 1500*time.Millisecond {
		t.Fatalf("a's 10 jobs all started within %v: faster than its 5/s", last)
	}
	if bAt > aAt[len(aAt)-1] {
		t.Fatalf("b's job started after %v, after all of a's: held by a's rate", bAt)
	}
	if st := s.jobs.Stats(); st.RateLimited == 0 || st.Ran != 11 {
		t.Fatalf("stats %+v, want jobs snoozed for the rate and all 11 run", st)
	}
}
