package tenancytest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

var notesLine = fstest.MapFS{
	"0001_notes.sql": {Data: []byte(`CREATE TABLE notes (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
		body text NOT NULL, PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('notes');`)},
}

// notes is code under test written the right way: everything through db.
var notes = tenancytest.Isolated{
	Create: func(ctx context.Context, db *tenancypgx.DB) ([]string, error) {
		var id string
		err := db.QueryRow(ctx, `INSERT INTO notes (body) VALUES ('secret') RETURNING id::text`).Scan(&id)
		return []string{id}, err
	},
	List: func(ctx context.Context, db *tenancypgx.DB) ([]string, error) {
		rows, _ := db.Query(ctx, `SELECT id::text FROM notes`)
		return pgx.CollectRows(rows, pgx.RowTo[string])
	},
	Count: func(ctx context.Context, db *tenancypgx.DB) (n int, err error) {
		err = db.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n)
		return n, err
	},
	Get: func(ctx context.Context, db *tenancypgx.DB, id string) (bool, error) {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM notes WHERE id = $1`, id).Scan(&n)
		return n == 1, err
	},
}

func TestRequireIsolatedPassesIsolatedCode(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: notesLine})
	tenancytest.RequireIsolated(t, env, notes)
}

// recorder is a testing.TB that records failures instead of failing the test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	msgs   []string
	failed bool
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)                 { r.Errorf("%s", fmt.Sprint(args...)); runtime.Goexit() }
func (r *recorder) Helper()                           {}

// run runs RequireIsolated against a recorder and returns what it reported.
func run(t *testing.T, env *tenancytest.Env, iso tenancytest.Isolated) (bool, string) {
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); tenancytest.RequireIsolated(rec, env, iso) }()
	<-done
	return rec.failed, strings.Join(rec.msgs, "\n")
}

// The harness cannot be fooled: code that leaks fails it, and so does code whose reads are broken.
func TestRequireIsolatedCatchesLeaksAndBrokenReads(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: notesLine})
	leaky := notes
	leaky.List = func(ctx context.Context, db *tenancypgx.DB) ([]string, error) {
		// The forgotten filter, on the wrong pool: the migration role's, around row-level security.
		// (Straight to db.Pool() would see nothing: it logs in as the runtime role.)
		rows, _ := env.Pool.Query(ctx, `SELECT id::text FROM notes`)
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if failed, msg := run(t, env, leaky); !failed || !strings.Contains(msg, "ISOLATION BREACH") {
		t.Fatalf("a leaking List passed: %q", msg)
	}
	blind := notes
	blind.List = func(ctx context.Context, db *tenancypgx.DB) ([]string, error) { return nil, nil }
	if failed, msg := run(t, env, blind); !failed || !strings.Contains(msg, "cannot list its own") {
		t.Fatalf("a List that sees nothing passed as isolated: %q", msg)
	}
	nothing := notes
	nothing.Create = func(context.Context, *tenancypgx.DB) ([]string, error) { return nil, nil }
	if failed, msg := run(t, env, nothing); !failed || !strings.Contains(msg, "made nothing") {
		t.Fatalf("a Create that makes nothing passed: %q", msg)
	}
}
