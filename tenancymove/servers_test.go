package tenancymove_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancymove"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrouter"
	"github.com/gotenancy/tenancy/tenancytest"
)

// TestMoveBetweenServers serves database tenants from two PostgreSQL servers and moves one, while
// it is written to, from the first server to the second: every committed row arrives once, the
// tenant left on the first server is served throughout and sees only its own rows, units of work
// follow the tenant to its new server (the router's pool on the old one serves it no more), and
// finalizing drops the old database.
func TestMoveBetweenServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: line})
	second := tenancytest.StartPostgres(t)
	servers := tenancycatalog.Servers{
		tenancycatalog.DefaultServer: env.Pool.Config().ConnString(),
		"second":                     second.URL("postgres"),
	}
	cat, err := tenancycatalog.NewCatalog(env.Pool, &tenancycatalog.CatalogConfig{Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	migrator, err := tenancymigrate.New(env.Pool, &tenancymigrate.Config{Tenant: line, Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tenancyprovision.DropTemplate(context.Background(), cat, "second", migrator) })
	router := tenancytest.NewRouter(t, tenancyrouter.Config{Servers: tenancytest.RuntimeServers(t, servers)})
	// No catalog watch: the lookup hears of no change (a notification lost) for an hour.
	lookups, err := tenancycache.NewLookup(cat, &tenancycache.LookupConfig{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	db := tenancytest.NewDB(t, env.Pool, &tenancypgx.Config{Store: lookups, Router: router, MoveWait: 3 * time.Second})
	mover, err := tenancymove.New(cat, &tenancymove.Config{Migrator: migrator})
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{env: env, db: db, mover: mover}

	a := env.NewTenant(t, tenancy.IsolationDatabase)
	b := env.NewTenant(t, tenancy.IsolationDatabase)
	s.seed(t, a, 100, 3)
	s.seed(t, b, 4, 1)
	want, bWant := s.names(t, a), s.names(t, b)
	w := s.startWriter(t, a)
	time.Sleep(20 * time.Millisecond)
	res, err := mover.Move(ctx, a.ID, &tenancymove.Opts{To: tenancycatalog.Placement{Isolation: tenancy.IsolationDatabase, Server: "second"}})
	written := w.finish(t)
	if err != nil {
		t.Fatalf("move to the second server: %v", err)
	}
	t.Logf("copy %s, pause %s, total %s, %d writes during the move", res.Copy, res.Pause, res.Total, len(written))
	if len(written) == 0 {
		t.Fatal("the writer committed nothing: the test proves nothing")
	}
	now, err := cat.TenantByID(ctx, a.ID)
	if err != nil || now.Server != "second" || now.Database != tenancycatalog.DatabaseName(a.ID) {
		t.Fatalf("after the move the catalog places %s on %q/%q (%v)", a.Slug, now.Server, now.Database, err)
	}
	got := s.names(t, a)
	if len(got) != len(want)+len(written) {
		t.Fatalf("after the move %s has %d projects, want %d", a.Slug, len(got), len(want)+len(written))
	}
	// On the second server itself, as its superuser.
	conn, err := pgx.Connect(ctx, second.URL(tenancycatalog.DatabaseName(a.ID)))
	if err != nil {
		t.Fatal(err)
	}
	var there, foreign int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id <> $1) FROM projects`, a.ID).Scan(&there, &foreign)
	conn.Close(ctx)
	if err != nil || there != len(got) || foreign != 0 {
		t.Fatalf("the second server holds %d of %s's projects and %d of others' (%v); want %d and none", there, a.Slug, foreign, err, len(got))
	}
	if got := s.names(t, b); len(got) != len(bWant) {
		t.Fatalf("tenant B, left on the first server, sees %v, want %v", got, bWant)
	}
	// A unit whose lookup cache still holds the tenant as it was before the move (its change
	// notification lost) is refused by the old database's fence, and follows the tenant to the
	// second server: the lookup is asked again, the router's pool on the first server retired.
	if err := s.db.Tx(tenancytest.Context(a), func(tx pgx.Tx) error {
		var port int
		if err := tx.QueryRow(ctx, `SELECT inet_server_port()`).Scan(&port); err != nil {
			return err
		}
		if port != second.Port() {
			t.Errorf("the unit ran on the server on port %d, want the second's (%d)", port, second.Port())
		}
		_, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ('stale')`)
		return err
	}); err != nil {
		t.Fatalf("a unit with the old placement: %v", err)
	}
	if got := s.names(t, a); len(got) != len(want)+len(written)+1 {
		t.Fatalf("the stale unit's row is not in the new placement: %d projects", len(got))
	}
	if _, err := mover.Finalize(ctx, a.ID); err != nil {
		t.Fatalf("finalize: %v", err)
	}
	var old int
	if err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, tenancycatalog.DatabaseName(a.ID)).Scan(&old); err != nil || old != 0 {
		t.Fatalf("the old database stays on the first server after finalizing (%d, %v)", old, err)
	}
	conn, err = pgx.Connect(ctx, second.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP DATABASE `+pgx.Identifier{tenancycatalog.DatabaseName(a.ID)}.Sanitize()+` WITH (FORCE)`); err != nil {
		t.Fatal(err)
	}
}

// TestTargetServerDownMidMove takes the new placement's server down in the middle of a move: the
// move stops with an error, the tenant is served from its old database throughout (read and
// written), and once the server is back Resume finishes the move with every row.
func TestTargetServerDownMidMove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: line})
	second := tenancytest.StartPostgres(t)
	servers := tenancycatalog.Servers{tenancycatalog.DefaultServer: env.Pool.Config().ConnString(), "second": second.URL("postgres")}
	cat, err := tenancycatalog.NewCatalog(env.Pool, &tenancycatalog.CatalogConfig{Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	migrator, err := tenancymigrate.New(env.Pool, &tenancymigrate.Config{Tenant: line, Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	router := tenancytest.NewRouter(t, tenancyrouter.Config{Servers: tenancytest.RuntimeServers(t, servers)})
	db := tenancytest.NewDB(t, env.Pool, &tenancypgx.Config{Store: cat, Router: router, MoveWait: 3 * time.Second})
	mover, err := tenancymove.New(cat, &tenancymove.Config{Migrator: migrator})
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{env: env, db: db, mover: mover}
	a := env.NewTenant(t, tenancy.IsolationDatabase)
	s.seed(t, a, 40, 2)
	to := tenancycatalog.Placement{Isolation: tenancy.IsolationDatabase, Server: "second"}
	down := false
	_, err = mover.Move(ctx, a.ID, &tenancymove.Opts{To: to, Progress: func(p tenancymove.Progress) {
		if p.Step == "catch up" && !down {
			down = true
			if err := s.write(a, "before the crash"); err != nil { // recorded for the catch-up
				t.Errorf("a write before the crash: %v", err)
			}
			second.Down()
		}
	}})
	if err == nil {
		t.Fatal("the move went on with its new server down")
	}
	if now, _ := cat.TenantByID(ctx, a.ID); now.Server != tenancycatalog.DefaultServer {
		t.Fatalf("after the failed move the catalog places %s on %s", a.Slug, now.Server)
	}
	if err := s.write(a, "while down"); err != nil {
		t.Fatalf("a write while the new server is down: %v", err)
	}
	if got := s.names(t, a); len(got) != 42 {
		t.Fatalf("while the new server is down %s has %d projects, want 42", a.Slug, len(got))
	}
	second.Up()
	res, err := mover.Resume(ctx, a.ID, nil)
	if err != nil {
		t.Fatalf("resume once the server is back: %v", err)
	}
	if res.Move.State != tenancycatalog.MoveSwitched {
		t.Fatalf("resumed move is %s", res.Move.State)
	}
	if got := s.names(t, a); len(got) != 42 {
		t.Fatalf("after the move %s has %d projects, want 42", a.Slug, len(got))
	}
	if _, err := mover.Finalize(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
}
