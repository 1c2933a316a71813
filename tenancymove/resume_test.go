package tenancymove_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymove"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// interrupt starts a move of tn to to and stops it (as a killed process would: nothing after the
// step's start runs, not even its record in the catalog) when it reaches step.
func interrupt(t *testing.T, s *setup, tn *tenancy.Tenant, to tenancycatalog.Placement, step string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := s.mover.Move(ctx, tn.ID, &tenancymove.Opts{To: to, Progress: func(p tenancymove.Progress) {
		if p.Step == step {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a move stopped at %s returned %v, want context.Canceled", step, err)
	}
	m, err := s.env.Catalog.OpenMove(context.Background(), tn.ID)
	if err != nil || m.State != tenancycatalog.MoveCopying || m.LastError == "" {
		t.Fatalf("after stopping at %s the move is %+v (%v), want copying with its error recorded", step, m, err)
	}
}

// write inserts a project named name as tn.
func (s *setup) write(tn *tenancy.Tenant, name string) error {
	return s.db.Tx(tenancytest.Context(tn), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `INSERT INTO projects (name) VALUES ($1)`, name)
		return err
	})
}

// TestAStoppedMoveResumes stops moves at the catch-up and, as if the process died while its
// writes were paused, inside the switch; each time the tenant is served from where it was (read,
// and written once the pause is lifted) and Resume finishes the move with every row.
func TestAStoppedMoveResumes(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	t.Cleanup(func() { tenancytest.DropDatabase(t, tenancycatalog.DatabaseName(a.ID)) })
	s.seed(t, a, 30, 2)

	// Stopped at the switch: the first copy and the catch-up completed, and are not done again.
	interrupt(t, s, a, tenancycatalog.Placement{Isolation: tenancy.IsolationSchema}, "switch")
	if m, _ := s.env.Catalog.OpenMove(ctx, a.ID); m.Step != "verify" {
		t.Fatalf("the stopped move is at %q, want verify", m.Step)
	}
	if err := s.write(a, "between"); err != nil {
		t.Fatalf("a write while the move is stopped: %v", err)
	}
	var steps []string
	gap := false
	res, err := s.mover.Resume(ctx, a.ID, func(p tenancymove.Progress) {
		steps = append(steps, p.Step)
		if p.Step == "switch" && !gap { // after the comparison at a snapshot, before the fence
			gap = true
			if err := s.write(a, "in the gap"); err != nil {
				t.Errorf("a write before the switch: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if slices.Contains(steps, "copy") || slices.Contains(steps, "prepare") {
		t.Fatalf("the resumed move copied again from the start: steps %v", steps)
	}
	now, _ := s.env.Catalog.TenantByID(ctx, a.ID)
	if now.Isolation != tenancy.IsolationSchema || res.Move.State != tenancycatalog.MoveSwitched {
		t.Fatalf("after resuming, %s is in %s (move %s)", a.Slug, now.Isolation, res.Move.State)
	}
	if got := s.names(t, a); len(got) != 32 || !slices.Contains(got, "between") || !slices.Contains(got, "in the gap") {
		t.Fatalf("after resuming, %s has %d projects (%v), want 32 with those written while stopped and before the switch", a.Slug, len(got), got)
	}
	// The checks the switch reports — the snapshot's, with the rows changed since — are those of
	// the new placement's rows.
	var rows int64
	var sum string
	if err := s.env.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(hashtextextended(ROW(r.tenant_id, r.id, r.name)::text, 0)::numeric), 0)::text
		FROM `+pgx.Identifier{tenancycatalog.SchemaName(a.ID), "projects"}.Sanitize()+` r WHERE r.tenant_id = $1`, a.ID).Scan(&rows, &sum); err != nil {
		t.Fatal(err)
	}
	if res.Tables[0].Table != "projects" || res.Tables[0].Rows != rows || res.Tables[0].Checksum != sum {
		t.Fatalf("the switch reported %+v for projects; the new placement holds %d rows, checksum %s", res.Tables[0], rows, sum)
	}

	// Stopped inside the switch, holding the tenant's writes back — then the mover dies.
	to := tenancycatalog.Placement{Isolation: tenancy.IsolationDatabase, Server: tenancycatalog.DefaultServer}
	interrupt(t, s, a, to, "switch")
	release := holdBarrier(t, s, a)
	quick := tenancytest.NewDB(t, s.env.Pool, &tenancypgx.Config{Store: s.env.Catalog, Router: s.env.Router, MoveWait: 50 * time.Millisecond})
	err = quick.Tx(tenancytest.Context(a), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ('paused')`)
		return err
	})
	if !errors.Is(err, tenancy.ErrTenantMoving) {
		t.Fatalf("a write while the switch is paused returned %v, want tenancy.ErrTenantMoving", err)
	}
	var n int
	if err := quick.ReadTx(tenancytest.Context(a), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&n)
	}); err != nil || n != 32 {
		t.Fatalf("a read while the switch is paused: %d projects, %v; want the 32 (reads are served)", n, err)
	}
	if err := quick.QueryRow(tenancytest.Context(a), `SELECT count(*) FROM projects`, tenancypgx.ReadOnly).Scan(&n); err != nil || n != 32 {
		t.Fatalf("a read-only statement while the switch is paused: %d projects, %v; want the 32", n, err)
	}
	var pgErr *pgconn.PgError
	if _, err := quick.Exec(tenancytest.Context(a), `INSERT INTO projects (name) VALUES ('sneaked')`, tenancypgx.ReadOnly); !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("a write marked read-only while the switch is paused: %v; want SQLSTATE 25006", err)
	}
	release() // the mover's session ends: the tenant's writes go on where it is
	if err := s.write(a, "after the mover died"); err != nil {
		t.Fatalf("a write once the mover died: %v", err)
	}
	if _, err := s.mover.Resume(ctx, a.ID, nil); err != nil {
		t.Fatalf("resume after a stop inside the switch: %v", err)
	}
	if err := s.write(a, "after"); err != nil {
		t.Fatal(err)
	}
	if got := s.names(t, a); len(got) != 34 || slices.Contains(got, "paused") {
		t.Fatalf("after the second move, %s has %v; want the 32 and the two written after (the refused write nowhere)", a.Slug, got)
	}
	now, _ = s.env.Catalog.TenantByID(ctx, a.ID)
	if tenancycatalog.PlacementOf(now) != to {
		t.Fatalf("%s is in %s, want %s", a.Slug, tenancycatalog.PlacementOf(now), to)
	}
	if n := physicalRows(t, s, now); n != 34 {
		t.Fatalf("the database holds %d of %s's projects, want 34", n, a.Slug)
	}
}

// TestAbortLeavesTheTenantWhereItWas stops a move after its copy and aborts it: the copy is
// removed, the capture triggers and recorded changes are gone, and the tenant is read and written
// where it was.
func TestAbortLeavesTheTenantWhereItWas(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	s.seed(t, a, 10, 1)
	interrupt(t, s, a, tenancycatalog.Placement{Isolation: tenancy.IsolationSchema}, "catch up")
	schema := tenancycatalog.SchemaName(a.ID)
	exists := func() (n int) {
		s.env.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n)
		return n
	}
	triggers := func() (n int) {
		s.env.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tenancy_move_%'`).Scan(&n)
		return n
	}
	if exists() != 1 || triggers() == 0 {
		t.Fatalf("a stopped move has no copy (%d) or no capture triggers (%d): the test proves nothing", exists(), triggers())
	}
	if err := s.write(a, "during"); err != nil {
		t.Fatal(err)
	}
	m, err := s.mover.Abort(ctx, a.ID)
	if err != nil || m.State != tenancycatalog.MoveAborted {
		t.Fatalf("abort: %+v %v", m, err)
	}
	if exists() != 0 || triggers() != 0 {
		t.Fatalf("after the abort the copy (%d) or capture triggers (%d) remain", exists(), triggers())
	}
	var changes int
	if err := s.env.Pool.QueryRow(ctx, `SELECT count(*) FROM tenancy.move_changes`).Scan(&changes); err != nil || changes != 0 {
		t.Fatalf("recorded changes remain after the abort: %d (%v)", changes, err)
	}
	if err := s.write(a, "after"); err != nil {
		t.Fatal(err)
	}
	if got := s.names(t, a); len(got) != 12 {
		t.Fatalf("after the abort %s has %d projects, want 12", a.Slug, len(got))
	}
	if now, _ := s.env.Catalog.TenantByID(ctx, a.ID); now.Isolation != tenancy.IsolationShared {
		t.Fatalf("after the abort %s is in %s", a.Slug, now.Isolation)
	}
	if _, err := s.mover.Abort(ctx, a.ID); !errors.Is(err, tenancymove.ErrNoMove) {
		t.Fatalf("a second abort: %v, want ErrNoMove", err)
	}
}
