package tenancyriver_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyriver"
	"github.com/gotenancy/tenancy/tenancytest"
)

// newOutbox makes the outbox; viaRuntime drains database tenants through the runtime DB's pools,
// else on connections of the migration role.
func newOutbox(t *testing.T, s *setup, viaRuntime bool) *tenancyriver.Outbox {
	t.Helper()
	cfg := &tenancyriver.OutboxConfig{Client: s.client, Catalog: s.env.Catalog, SharedSchema: s.env.Migrator.SharedSchema(),
		SweepEvery: time.Hour, Kinds: []string{"note"}, DrainTimeout: 3 * time.Second}
	if viaRuntime {
		cfg.DB = s.env.DB
	}
	o, err := tenancyriver.NewOutbox(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// riverJobs counts River's jobs with this label.
func (s *setup) riverJobs(t *testing.T, label string) int {
	t.Helper()
	var n int
	if err := s.env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river.river_job WHERE args->>'label' = $1`, label).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// outboxRows counts the rows of the outbox tn's unit of work sees (as the runtime role).
func (s *setup) outboxRows(t *testing.T, tn *tenancy.Tenant) int {
	t.Helper()
	var n int
	if err := s.env.DB.Tx(tenancytest.Context(tn), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM tenancy_job_outbox`).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// A job enqueued in a tenant's unit of work commits with the tenant's data and runs as the tenant;
// rolled back, it never reaches River — in every isolation model.
func TestOutboxCommitsAndRollsBackWithTheTenantsData(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	o := newOutbox(t, s, false)
	for _, iso := range tenancytest.Models {
		a := s.env.NewTenant(t, iso)
		ctx := tenancytest.Context(a)
		committed, rolledBack := "committed-"+string(iso), "rolled-back-"+string(iso)
		if err := o.Tx(ctx, s.env.DB, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('kept')`); err != nil {
				return err
			}
			return tenancyriver.Enqueue(ctx, tx, noteArgs{Label: committed}, nil)
		}); err != nil {
			t.Fatal(err)
		}
		if n := s.riverJobs(t, committed); n != 1 {
			t.Fatalf("%s: %d jobs in River once the unit returned, want 1", iso, n)
		}
		oops := errors.New("the unit fails")
		if err := o.Tx(ctx, s.env.DB, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('lost')`); err != nil {
				return err
			}
			if err := tenancyriver.Enqueue(ctx, tx, noteArgs{Label: rolledBack}, nil); err != nil {
				return err
			}
			return oops
		}); !errors.Is(err, oops) {
			t.Fatalf("%s: the failing unit returned %v", iso, err)
		}
		if r := s.next(t); r.label != committed || r.tenant != a.Slug || fmt.Sprint(r.notes) != "[kept]" {
			t.Fatalf("%s: the committed job ran as %+v; want %s seeing its kept note only", iso, r, a.Slug)
		}
		if _, err := o.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n, left := s.riverJobs(t, rolledBack), s.outboxRows(t, a); n != 0 || left != 0 {
			t.Fatalf("%s: the rolled-back job: %d in River, %d in the outbox; want none", iso, n, left)
		}
	}
}

// A crash between the commit and the drain loses no job: the row waits in the tenant's outbox
// (which only its tenant sees), and the sweep moves it; a drain before the commit moves nothing.
func TestOutboxLosesNoJobAndSendsNoneEarly(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	o := newOutbox(t, s, true)
	for _, iso := range tenancytest.Models {
		a, b := s.env.Pair(t, iso)
		ctx := tenancytest.Context(a)
		label := "crashed-" + string(iso)
		// The unit commits, and the process "dies" before the drain: plain db.Tx, no Outbox.Tx.
		if err := s.env.DB.Tx(ctx, func(tx pgx.Tx) error {
			return tenancyriver.Enqueue(ctx, tx, noteArgs{Label: label}, nil)
		}); err != nil {
			t.Fatal(err)
		}
		if inA, inB, inRiver := s.outboxRows(t, a), s.outboxRows(t, b), s.riverJobs(t, label); inA != 1 || inB != 0 || inRiver != 0 {
			t.Fatalf("%s: after the commit, outbox rows seen by a %d (want 1), by b %d (want 0); in River %d (want 0)", iso, inA, inB, inRiver)
		}
		if n, err := o.Sweep(context.Background()); err != nil || n != 1 {
			t.Fatalf("%s: the sweep moved %d (%v), want 1", iso, n, err)
		}
		if r := s.next(t); r.label != label || r.tenant != a.Slug {
			t.Fatalf("%s: the recovered job ran as %+v, want %s", iso, r, a.Slug)
		}

		// Before the commit: the row is not there for a drain.
		open, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- s.env.DB.Tx(ctx, func(tx pgx.Tx) error {
				if err := tenancyriver.Enqueue(ctx, tx, noteArgs{Label: "early-" + string(iso)}, nil); err != nil {
					return err
				}
				close(open)
				<-release
				return nil
			})
		}()
		<-open
		if n, err := o.Drain(context.Background(), a); err != nil || n != 0 {
			t.Fatalf("%s: a drain during the open unit moved %d (%v), want 0", iso, n, err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n, err := o.Drain(context.Background(), a); err != nil || n != 1 {
			t.Fatalf("%s: the drain after the commit moved %d (%v), want 1", iso, n, err)
		}
		if r := s.next(t); r.label != "early-"+string(iso) || r.tenant != a.Slug {
			t.Fatalf("%s: %+v", iso, r)
		}
	}
}

// Drains at once move each job exactly once (shared and schema tenants: the row goes in the
// transaction that inserts its job).
func TestOutboxConcurrentDrainsMoveEachJobOnce(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	o := newOutbox(t, s, true)
	for _, iso := range []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationSchema} {
		a := s.env.NewTenant(t, iso)
		ctx := tenancytest.Context(a)
		label := "many-" + string(iso)
		if err := s.env.DB.Tx(ctx, func(tx pgx.Tx) error {
			for range 1200 { // more than one drain's batch
				if err := tenancyriver.Enqueue(ctx, tx, noteArgs{Label: label}, &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		moved := 0
		for range 4 {
			wg.Go(func() {
				n, err := o.Drain(context.Background(), a)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				moved += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if inRiver := s.riverJobs(t, label); moved != 1200 || inRiver != 1200 || s.outboxRows(t, a) != 0 {
			t.Fatalf("%s: drains moved %d, River has %d, want 1200 each and an empty outbox", iso, moved, inRiver)
		}
	}
}

// Run moves a shared or schema tenant's job as soon as its commit is announced, without a sweep.
func TestOutboxRunHearsTheCommit(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	o := newOutbox(t, s, true) // sweeps every hour: only the notification can move the job in time
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(200 * time.Millisecond) // the first sweep and the listener
	for _, iso := range []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationSchema} {
		a := s.env.NewTenant(t, iso)
		tctx := tenancytest.Context(a)
		label := "heard-" + string(iso)
		if err := s.env.DB.Tx(tctx, func(tx pgx.Tx) error {
			return tenancyriver.Enqueue(tctx, tx, noteArgs{Label: label}, nil)
		}); err != nil {
			t.Fatal(err)
		}
		if r := s.next(t); r.label != label || r.tenant != a.Slug {
			t.Fatalf("%s: %+v", iso, r)
		}
	}
}

// A migration role that owns the outbox but is not a superuser is held by row-level security like
// any role: the drains bind each tenant, and the sweep goes through the catalog's tenants.
func TestOutboxWithAnOwnerThatIsNotASuperuser(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	sc := s.env.NewTenant(t, tenancy.IsolationSchema)
	role := tenancytest.UniqueName("tenancy_test_owner")
	id := pgx.Identifier{role}.Sanitize()
	shared := pgx.Identifier{s.env.Migrator.SharedSchema()}.Sanitize()
	schema := pgx.Identifier{tenancycatalog.SchemaName(sc.ID)}.Sanitize()
	for _, q := range []string{
		"CREATE ROLE " + id + " LOGIN NOSUPERUSER NOBYPASSRLS",
		"GRANT USAGE ON SCHEMA tenancy, river, " + shared + ", " + schema + " TO " + id,
		"GRANT ALL ON ALL TABLES IN SCHEMA tenancy, river TO " + id,
		"GRANT ALL ON ALL SEQUENCES IN SCHEMA river TO " + id,
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tenancy, river TO " + id,
		"ALTER TABLE " + shared + ".tenancy_job_outbox OWNER TO " + id,
		"ALTER TABLE " + schema + ".tenancy_job_outbox OWNER TO " + id,
	} {
		if _, err := s.env.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cfg := s.env.Pool.Config().Copy()
	cfg.ConnConfig.User = role
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		s.env.Pool.Exec(context.Background(), "DROP OWNED BY "+id)
		if _, err := s.env.Pool.Exec(context.Background(), "DROP ROLE "+id); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := tenancyriver.NewOutbox(&tenancyriver.OutboxConfig{Client: s.client, Catalog: cat,
		SharedSchema: s.env.Migrator.SharedSchema(), SweepEvery: time.Hour, Kinds: []string{"note"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range []*tenancy.Tenant{a, sc} {
		tctx := tenancytest.Context(tn)
		label := "owner-" + string(tn.Isolation)
		if err := s.env.DB.Tx(tctx, func(tx pgx.Tx) error { return tenancyriver.Enqueue(tctx, tx, noteArgs{Label: label}, nil) }); err != nil {
			t.Fatal(err)
		}
		if n, err := o.Sweep(ctx); err != nil || n != 1 || s.riverJobs(t, label) != 1 {
			t.Fatalf("%s: the sweep moved %d (%v), River has %d; want the job moved", tn.Isolation, n, err, s.riverJobs(t, label))
		}
		if r := s.next(t); r.label != label || r.tenant != tn.Slug {
			t.Fatalf("%s: %+v", tn.Isolation, r)
		}
	}
}

// A row River refuses (a kind no worker knows, a kind the outbox may not move) stays in the outbox
// and is skipped: the tenant's later jobs still move.
func TestOutboxRefusedRowDoesNotBlockTheTenant(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	o, err := tenancyriver.NewOutbox(&tenancyriver.OutboxConfig{Client: s.client, Catalog: s.env.Catalog,
		SharedSchema: s.env.Migrator.SharedSchema(), SweepEvery: time.Hour, Kinds: []string{"note", "no_such_kind"}}) // River knows no worker of the second
	if err != nil {
		t.Fatal(err)
	}
	for _, iso := range []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationDatabase} {
		a := s.env.NewTenant(t, iso)
		ctx := tenancytest.Context(a)
		label := "after-poison-" + string(iso)
		if err := s.env.DB.Tx(ctx, func(tx pgx.Tx) error {
			// What SQL in the tenant's own unit can write: a kind nobody works, and a tenant-less one.
			if _, err := tx.Exec(ctx, `INSERT INTO tenancy_job_outbox (tenant_id, kind, args) VALUES
				(tenancy.current_tenant()::uuid, 'no_such_kind', '{}'), (tenancy.current_tenant()::uuid, 'sweep', '{}')`); err != nil {
				return err
			}
			return tenancyriver.Enqueue(ctx, tx, noteArgs{Label: label}, nil)
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := o.Drain(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		if r := s.next(t); r.label != label || r.tenant != a.Slug {
			t.Fatalf("%s: %+v, want the good job run after the refused rows", iso, r)
		}
		if left := s.outboxRows(t, a); left != 2 {
			t.Fatalf("%s: %d rows left in the outbox, want the 2 refused", iso, left)
		}
	}
	select {
	case r := <-s.seen:
		t.Fatalf("a refused row ran: %+v", r)
	default:
	}
	if st := o.Stats(); st.Refused != 4 || st.Moved != 2 {
		t.Fatalf("outbox stats %+v, want 4 refused, 2 moved", st)
	}
}

// A failure that may pass (here: River's table locked past the drain's time) strands nothing: the
// next drain moves the job. And rows refused for good, however many, do not make a drain go round
// until its time is up: it takes each row once.
func TestOutboxTransientFailureAndManyRefusedRows(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	o := newOutbox(t, s, true) // drains time out after 3 s
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	actx := tenancytest.Context(a)
	if err := s.env.DB.Tx(actx, func(tx pgx.Tx) error { return tenancyriver.Enqueue(actx, tx, noteArgs{Label: "held"}, nil) }); err != nil {
		t.Fatal(err)
	}
	lock, err := s.env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `LOCK TABLE river.river_job IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	if n, err := o.Drain(ctx, a); err == nil || n != 0 {
		t.Fatalf("a drain while River's table is locked: moved %d, %v; want an error", n, err)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// (The failed drain's session may hold the row until the server notices it is gone.)
	tenancytest.WaitFor(t, 10*time.Second, "a drain after the lock moves the held job", func() bool {
		n, err := o.Drain(ctx, a)
		return err == nil && n == 1
	})
	if r := s.next(t); r.label != "held" || r.tenant != a.Slug {
		t.Fatalf("%+v", r)
	}

	// 1,600 rows the outbox refuses for good (a kind Kinds does not list), then one good job.
	if err := s.env.DB.Tx(actx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(actx, `INSERT INTO tenancy_job_outbox (tenant_id, kind, args)
			SELECT tenancy.current_tenant()::uuid, 'sweep', '{}' FROM generate_series(1, 1600)`); err != nil {
			return err
		}
		return tenancyriver.Enqueue(actx, tx, noteArgs{Label: "after-many"}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second drain finds the same refused rows
		if n, err := o.Drain(ctx, a); err != nil || n > 1 {
			t.Fatalf("a drain past 1,600 refused rows: moved %d, %v; want no error (the good job once)", n, err)
		}
	}
	if r := s.next(t); r.label != "after-many" {
		t.Fatalf("%+v", r)
	}
	if st := o.Stats(); st.Moved != 2 {
		t.Fatalf("outbox stats %+v, want 2 moved", st)
	}
}

// A tenant whose drain hangs (its outbox locked) holds up one of the sweep's drains, not the
// sweep: the other tenant's job moves meanwhile, and the hung one's once the lock goes.
func TestOutboxSweepIsNotHeldUpByOneTenant(t *testing.T) {
	t.Parallel()
	s := newSetup(t, tenancyriver.Config{}, 4, 0)
	o, err := tenancyriver.NewOutbox(&tenancyriver.OutboxConfig{Client: s.client, Catalog: s.env.Catalog,
		SharedSchema: s.env.Migrator.SharedSchema(), SweepEvery: time.Hour, Kinds: []string{"note"},
		DrainTimeout: time.Minute, SweepConcurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	hung, other := s.env.Pair(t, tenancy.IsolationSchema) // hung's slug sorts first: a sweep meets it first
	if hung.Slug > other.Slug {
		hung, other = other, hung
	}
	for _, tn := range []*tenancy.Tenant{hung, other} {
		ctx := tenancytest.Context(tn)
		if err := s.env.DB.Tx(ctx, func(tx pgx.Tx) error {
			return tenancyriver.Enqueue(ctx, tx, noteArgs{Label: "swept-" + tn.Slug}, nil)
		}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	lock, err := s.env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `LOCK TABLE `+pgx.Identifier{hung.Schema, tenancyriver.OutboxTable}.Sanitize()+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	type swept struct {
		n   int
		err error
	}
	done := make(chan swept, 1)
	go func() {
		n, err := o.Sweep(ctx)
		done <- swept{n, err}
	}()
	tenancytest.WaitFor(t, 20*time.Second, "the other tenant's job in River while the hung tenant's drain waits",
		func() bool { return s.riverJobs(t, "swept-"+other.Slug) == 1 })
	select {
	case r := <-done:
		t.Fatalf("the sweep returned (%d, %v) while a tenant's outbox was locked", r.n, r.err)
	default:
	}
	if n := s.riverJobs(t, "swept-"+hung.Slug); n != 0 {
		t.Fatalf("the hung tenant's job reached River (%d) while its outbox was locked", n)
	}
	lock.Rollback(ctx)
	r := <-done
	if r.err != nil || r.n != 2 || s.riverJobs(t, "swept-"+hung.Slug) != 1 {
		t.Fatalf("after the lock went the sweep moved %d (%v), the hung tenant's job in River %d; want 2 and 1",
			r.n, r.err, s.riverJobs(t, "swept-"+hung.Slug))
	}
}
