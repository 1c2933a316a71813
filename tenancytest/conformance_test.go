package tenancytest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymove"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyrouter"
	"github.com/gotenancy/tenancy/tenancytest"
)

// projectsLine is the reference article's projects and tasks, as tenant tables.
var projectsLine = fstest.MapFS{
	"0001_projects.sql": {Data: []byte(`
		CREATE TABLE projects (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), name text NOT NULL,
			PRIMARY KEY (tenant_id, id));
		SELECT tenancy.isolate('projects');
		CREATE TABLE tasks (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), project_id uuid NOT NULL,
			title text NOT NULL, PRIMARY KEY (tenant_id, id),
			FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id) ON DELETE CASCADE);
		SELECT tenancy.isolate('tasks');`)},
}

// The conformance suite: the same checks, unchanged, for a tenant of each isolation model.
func TestConformance(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	for i, model := range tenancytest.Models {
		t.Run(string(model), func(t *testing.T) {
			t.Parallel()
			conformance(t, env, model, nil)
		})
		// And with tenant A in the middle of a move to the next model: its rows copied there,
		// its changes captured, its placement not switched yet.
		to := tenancycatalog.Placement{Isolation: tenancytest.Models[(i+1)%len(tenancytest.Models)]}
		if to.Isolation == tenancy.IsolationDatabase {
			to.Server = tenancycatalog.DefaultServer
		}
		t.Run(string(model)+" moving to "+string(to.Isolation), func(t *testing.T) {
			t.Parallel()
			conformance(t, env, model, &to)
		})
	}
}

// stopMidMove starts moving a to another placement and stops the move before its switch: a's
// rows are in both placements, a is served from the old one.
func stopMidMove(t *testing.T, env *tenancytest.Env, a *tenancy.Tenant, to tenancycatalog.Placement) {
	t.Helper()
	mover, err := tenancymove.New(env.Catalog, &tenancymove.Config{Migrator: env.Migrator})
	if err != nil {
		t.Fatal(err)
	}
	if to.Isolation == tenancy.IsolationDatabase {
		t.Cleanup(func() { tenancytest.DropDatabase(t, tenancycatalog.DatabaseName(a.ID)) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = mover.Move(ctx, a.ID, &tenancymove.Opts{To: to, Progress: func(p tenancymove.Progress) {
		if p.Step == "switch" {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the move stopped before its switch returned %v", err)
	}
	t.Cleanup(func() {
		if _, err := mover.Abort(context.Background(), a.ID); err != nil {
			t.Errorf("abort the move: %v", err)
		}
	})
}

func conformance(t *testing.T, env *tenancytest.Env, model tenancy.Isolation, moving *tenancycatalog.Placement) {
	db := env.DB
	a, b := env.Pair(t, model)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	one := func(ctx context.Context, q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	var p string
	err := db.Tx(ctxA, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctxA, `INSERT INTO projects (name) VALUES ('A secret') RETURNING id::text`).Scan(&p); err != nil {
			return err
		}
		_, err := tx.Exec(ctxA, `INSERT INTO tasks (project_id, title) VALUES ($1, 'one'), ($1, 'two')`, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctxB, `INSERT INTO projects (name) VALUES ('B own')`); err != nil {
		t.Fatal(err)
	}
	if moving != nil {
		stopMidMove(t, env, a, *moving)
		if moving.Isolation == tenancy.IsolationSchema {
			// A's copy in its new schema, named by B: nothing.
			copyTable := pgx.Identifier{tenancycatalog.SchemaName(a.ID), "projects"}.Sanitize()
			var n int
			if err := db.QueryRow(ctxB, `SELECT count(*) FROM `+copyTable).Scan(&n); err == nil && n != 0 {
				t.Errorf("ISOLATION BREACH: B sees %d rows of A's copy in %s", n, copyTable)
			}
			if err := env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+copyTable).Scan(&n); err != nil || n != 1 {
				t.Fatalf("control: A's copy in %s holds %d projects (%v), want 1", copyTable, n, err)
			}
		}
	}

	reads := []struct {
		name  string
		query string
		a, b  int // what A and B must see
	}{
		{"list", `SELECT count(*) FROM projects WHERE name = 'A secret'`, 1, 0},
		{"by id", `SELECT count(*) FROM projects WHERE id = '` + p + `'`, 1, 0},
		{"count", `SELECT count(*) FROM tasks`, 2, 0},
		{"join", `SELECT count(*) FROM projects p JOIN tasks t ON t.project_id = p.id AND t.tenant_id = p.tenant_id`, 2, 0},
		{"subquery", `SELECT count(*) FROM tasks WHERE project_id IN (SELECT id FROM projects WHERE name LIKE 'A%')`, 2, 0},
		{"aggregate over all", `SELECT count(DISTINCT tenant_id) FROM projects`, 1, 1},
		{"by A's tenant_id", `SELECT count(*) FROM projects WHERE tenant_id = '` + a.ID + `'`, 1, 0},
	}
	for _, r := range reads {
		if got := one(ctxA, r.query); got != r.a {
			t.Errorf("%s: A sees %d, want %d (positive control)", r.name, got, r.a)
		}
		if got := one(ctxB, r.query); got != r.b {
			t.Errorf("ISOLATION BREACH %s: B sees %d, want %d", r.name, got, r.b)
		}
	}

	// B's writes aimed at A's rows touch nothing or fail.
	for _, w := range []string{`UPDATE projects SET name = 'pwned' WHERE id = $1`, `DELETE FROM tasks WHERE project_id = $1`,
		`DELETE FROM projects WHERE id = $1`} {
		tag, err := db.Exec(ctxB, w, p)
		if err != nil || tag.RowsAffected() != 0 {
			t.Errorf("B: %s: %v rows, %v", w, tag.RowsAffected(), err)
		}
	}
	for _, w := range []struct{ q, arg string }{
		{`INSERT INTO tasks (project_id, title) VALUES ($1, 'planted')`, p},     // A's project from B
		{`INSERT INTO projects (tenant_id, name) VALUES ($1, 'planted')`, a.ID}, // naming A
		{`UPDATE projects SET tenant_id = $1 WHERE name = 'B own'`, a.ID},       // moving to A
	} {
		if _, err := db.Exec(ctxB, w.q, w.arg); err == nil {
			t.Errorf("ISOLATION BREACH: B's %q succeeded", w.q)
		}
	}
	if got := one(ctxA, `SELECT count(*) FROM tasks WHERE project_id = $1`, p); got != 2 {
		t.Fatalf("A's tasks after B's attempts: %d, want 2", got)
	}
	if got := one(ctxA, `SELECT count(*) FROM projects WHERE name = 'A secret'`); got != 1 {
		t.Fatalf("A's project after B's attempts: %d", got)
	}

	// No tenant, an empty one: an error, never rows.
	for name, ctx := range map[string]context.Context{
		"no tenant":    context.Background(),
		"empty tenant": tenancy.WithTenant(context.Background(), &tenancy.Tenant{Status: tenancy.StatusActive, Isolation: model}),
	} {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&n); !errors.Is(err, tenancy.ErrNoTenant) {
			t.Errorf("%s: %d rows, %v; want ErrNoTenant", name, n, err)
		}
	}
	// The runtime role where A's rows are, with no or an empty tenant setting: nothing; with A's id
	// set by hand, without the proof only the toolkit can make: refused.
	pool := env.Runtime
	if model == tenancy.IsolationDatabase {
		lease, err := env.Router.Lease(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Done(nil)
		pool = lease.Pool()
	}
	table := `projects`
	if model == tenancy.IsolationSchema {
		table = tenancycatalog.SchemaName(a.ID) + `.projects`
	}
	if got := one(ctxA, `SELECT count(*) FROM `+table+` WHERE name = 'A secret'`); got != 1 {
		t.Fatalf("control: A sees %d of its projects in %s, want 1", got, table)
	}
	for name, setting := range map[string]*string{"missing": nil, "empty": new(""), "A's forged": &a.ID} {
		n, err := asRuntimeRole(pool, table, setting)
		switch {
		case name == "A's forged" && err == nil:
			t.Errorf("ISOLATION BREACH: the runtime role with A's id set by hand read %d rows instead of being refused", n)
		case name != "A's forged" && (err != nil || n != 0):
			t.Errorf("runtime role with %s setting sees %d of A's projects, %v; want 0", name, n, err)
		}
	}

	// A cancelled context and a panic roll back.
	cctx, cancel := context.WithCancel(ctxA)
	err = db.Tx(cctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(cctx, `INSERT INTO projects (name) VALUES ('cancelled')`); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if err == nil {
		t.Error("a transaction whose context was cancelled committed")
	}
	func() {
		defer func() { recover() }()
		db.Tx(ctxA, func(tx pgx.Tx) error {
			tx.Exec(ctxA, `INSERT INTO projects (name) VALUES ('panicked')`)
			panic("boom")
		})
	}()
	if got := one(ctxA, `SELECT count(*) FROM projects WHERE name IN ('cancelled', 'panicked')`); got != 0 {
		t.Errorf("%d rows of rolled-back transactions", got)
	}
	if got := one(ctxA, `SELECT count(*) FROM projects`); got != 1 {
		t.Errorf("control: A has %d projects, want 1", got)
	}
}

// asRuntimeRole counts the rows of table on pool (which logs in as the runtime role) with the
// tenant setting unset (nil) or set to a value by hand, without a proof.
func asRuntimeRole(pool *pgxpool.Pool, table string, setting *string) (int, error) {
	ctx := context.Background()
	var n int
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if setting != nil {
			if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", *setting); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE name = 'A secret'").Scan(&n)
	})
	return n, err
}

// One connection serves tenants of all three models in turn, with failures in between: nothing
// of one transaction's scope reaches the next.
func TestConformanceOneConnectionInterleaved(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine,
		Router: &tenancyrouter.Config{MaxConnsPerPool: 1}})
	single, err := tenancypgx.NewRuntimePool(context.Background(), env.Runtime.Config().ConnString(),
		&tenancypgx.RuntimePoolOpts{Configure: func(c *pgxpool.Config) { c.MaxConns = 1 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(single.Close)
	key, err := env.Catalog.BindingKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	db, _ := tenancypgx.New(single, &tenancypgx.Config{Key: key, Router: env.Router})
	var tenants []*tenancy.Tenant
	for _, m := range tenancytest.Models {
		a, b := env.Pair(t, m)
		tenants = append(tenants, a, b)
	}
	for i, tn := range tenants {
		for j := range i + 1 { // tenant i owns i+1 projects
			if _, err := db.Exec(tenancytest.Context(tn), `INSERT INTO projects (name) VALUES ($1)`, fmt.Sprint(j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	boom := errors.New("boom")
	for round := range 60 {
		i := round % len(tenants)
		tn := tenants[i]
		ctx := tenancytest.Context(tn)
		switch round % 3 {
		case 0:
			var n int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&n); err != nil || n != i+1 {
				t.Fatalf("round %d, %s: %d projects, %v; want %d", round, tn.Slug, n, err, i+1)
			}
		case 1:
			db.Tx(ctx, func(tx pgx.Tx) error { tx.Exec(ctx, `SELECT 1/0`); return boom })
		case 2:
			var n int
			err := db.Tx(ctx, func(tx pgx.Tx) error { return tx.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&n) })
			if err != nil || n != i+1 {
				t.Fatalf("round %d, %s in a transaction: %d, %v; want %d", round, tn.Slug, n, err, i+1)
			}
		}
	}
	if s := single.Stat(); s.TotalConns() != 1 {
		t.Fatalf("the shared pool opened %d connections", s.TotalConns())
	}
}
