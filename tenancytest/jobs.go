package tenancytest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyriver"
)

// JobIsolated describes a job handler to RequireIsolatedJobs: the data a tenant has, the job that
// works on it, and what the job did, read back as the tenant.
type JobIsolated struct {
	// Create writes data as the tenant in ctx and returns the IDs of what it made. Required.
	Create func(ctx context.Context, db *tenancypgx.DB) ([]string, error)
	// Workers registers the worker under test, which works with db. Required.
	Workers func(w *river.Workers, db *tenancypgx.DB)
	// Args is the job the tenant in ctx enqueues. Required.
	Args func(ctx context.Context) river.JobArgs
	// Seen returns the IDs of the items the tenant's jobs saw, as the tenant in ctx reads what
	// they wrote (an export's contents, a report's rows). Required.
	Seen func(ctx context.Context, db *tenancypgx.DB) ([]string, error)
}

// RequireIsolatedJobs runs iso's worker on a real River client with tenancyriver's middleware:
// for each isolation model, tenants A and B each create data and enqueue a job from their own
// context; it fails t if a job sees another tenant's item — or does not see its own tenant's, or
// does not complete, because a broken job would otherwise pass as isolated. River's tables are
// made in env's database (tenancyriver.Migrate).
func RequireIsolatedJobs(t testing.TB, env *Env, iso JobIsolated) {
	t.Helper()
	if iso.Create == nil || iso.Workers == nil || iso.Args == nil || iso.Seen == nil {
		t.Fatal("tenancytest: RequireIsolatedJobs needs Create, Workers, Args and Seen")
	}
	ctx := context.Background()
	if _, err := tenancyriver.Migrate(ctx, env.Pool); err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	jobs, err := tenancyriver.New(&tenancyriver.Config{Store: env.Catalog})
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	workers := river.NewWorkers()
	iso.Workers(workers, env.DB)
	client, err := river.NewClient(riverpgxv5.New(env.Pool), &river.Config{
		Schema: tenancyriver.Schema, Workers: workers, Middleware: jobs.Middleware(), PollOnly: true,
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 4}},
		FetchCooldown: 5 * time.Millisecond, FetchPollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = client.Stop(stop)
	}()
	for _, m := range Models {
		a, b := env.Pair(t, m)
		made := map[*tenancy.Tenant][]string{}
		for _, tn := range []*tenancy.Tenant{a, b} {
			ids, err := iso.Create(Context(tn), env.DB)
			if err != nil {
				t.Fatalf("Create as %s (%s): %v", tn.Slug, m, err)
			}
			if len(ids) == 0 {
				t.Fatalf("Create as %s (%s) made nothing: the test would prove nothing", tn.Slug, m)
			}
			made[tn] = ids
		}
		for _, tn := range []*tenancy.Tenant{a, b} {
			res, err := client.Insert(Context(tn), iso.Args(Context(tn)), nil)
			if err != nil {
				t.Fatalf("enqueue as %s (%s): %v", tn.Slug, m, err)
			}
			waitDone(t, client, res.Job.ID, fmt.Sprintf("%s's job (%s)", tn.Slug, m))
		}
		for tn, other := range map[*tenancy.Tenant]*tenancy.Tenant{a: b, b: a} {
			who := fmt.Sprintf("%s's job (%s)", tn.Slug, m)
			seen, err := iso.Seen(Context(tn), env.DB)
			if err != nil {
				t.Fatalf("Seen as %s: %v", tn.Slug, err)
			}
			for _, id := range made[tn] {
				if !slices.Contains(seen, id) {
					t.Errorf("%s did not see its tenant's item %s: the job is broken, so isolation is not proven", who, id)
				}
			}
			for _, id := range made[other] {
				if slices.Contains(seen, id) {
					t.Errorf("ISOLATION BREACH: %s saw %s's item %s", who, other.Slug, id)
				}
			}
		}
	}
}

// waitDone waits for the job to complete, and fails t if it ends otherwise or takes a minute.
func waitDone(t testing.TB, client *river.Client[pgx.Tx], id int64, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		j, err := client.JobGet(context.Background(), id)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		switch j.State {
		case rivertype.JobStateCompleted:
			return
		case rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
			t.Fatalf("%s ended %s: %v", what, j.State, j.Errors)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still %s after a minute (errors: %v)", what, j.State, j.Errors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
