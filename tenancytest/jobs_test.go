package tenancytest_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

var jobsLine = fstest.MapFS{
	"0001_notes.sql": notesLine["0001_notes.sql"],
	"0002_seen.sql": {Data: []byte(`CREATE TABLE seen (tenant_id uuid NOT NULL, note_id uuid NOT NULL,
		PRIMARY KEY (tenant_id, note_id)); SELECT tenancy.isolate('seen');`)},
}

// copyArgs is a job that records the IDs of the notes it can see.
type copyArgs struct{}

func (copyArgs) Kind() string { return "copy_notes" }

type copyWorker struct {
	river.WorkerDefaults[copyArgs]
	db   *tenancypgx.DB
	read func(ctx context.Context) ([]string, error) // how the job reads the notes
}

func (w *copyWorker) Work(ctx context.Context, job *river.Job[copyArgs]) error {
	ids, err := w.read(ctx)
	if err != nil {
		return err
	}
	return w.db.Tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO seen (note_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING`, ids)
		return err
	})
}

func jobIsolated(read func(db *tenancypgx.DB) func(ctx context.Context) ([]string, error)) tenancytest.JobIsolated {
	return tenancytest.JobIsolated{
		Create: notes.Create,
		Workers: func(w *river.Workers, db *tenancypgx.DB) {
			river.AddWorker(w, &copyWorker{db: db, read: read(db)})
		},
		Args: func(context.Context) river.JobArgs { return copyArgs{} },
		Seen: func(ctx context.Context, db *tenancypgx.DB) ([]string, error) {
			rows, _ := db.Query(ctx, `SELECT note_id::text FROM seen`)
			return pgx.CollectRows(rows, pgx.RowTo[string])
		},
	}
}

// A job that reads through db as its tenant passes; one that reads around row-level security
// fails with a breach, and one that reads nothing fails as broken.
func TestRequireIsolatedJobs(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: jobsLine})
	tenancytest.RequireIsolatedJobs(t, env, jobIsolated(func(db *tenancypgx.DB) func(context.Context) ([]string, error) {
		return func(ctx context.Context) ([]string, error) { return notes.List(ctx, db) }
	}))

	leakyEnv := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: jobsLine})
	leaky := jobIsolated(func(*tenancypgx.DB) func(context.Context) ([]string, error) {
		return func(ctx context.Context) ([]string, error) { // the migration role's pool: every shared tenant's notes
			rows, _ := leakyEnv.Pool.Query(ctx, `SELECT id::text FROM notes`)
			return pgx.CollectRows(rows, pgx.RowTo[string])
		}
	})
	if failed, msg := runJobs(t, leakyEnv, leaky); !failed || !strings.Contains(msg, "ISOLATION BREACH") {
		t.Fatalf("a job reading every tenant's notes passed: %q", msg)
	}
	blind := jobIsolated(func(*tenancypgx.DB) func(context.Context) ([]string, error) {
		return func(context.Context) ([]string, error) { return nil, nil }
	})
	if failed, msg := runJobs(t, tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: jobsLine}), blind); !failed || !strings.Contains(msg, "did not see its tenant's item") {
		t.Fatalf("a job that sees nothing passed as isolated: %q", msg)
	}
}

func runJobs(t *testing.T, env *tenancytest.Env, iso tenancytest.JobIsolated) (bool, string) {
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); tenancytest.RequireIsolatedJobs(rec, env, iso) }()
	<-done
	return rec.failed, strings.Join(rec.msgs, "\n")
}
