package tenancymove_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymove"
	"github.com/gotenancy/tenancy/tenancytest"
)

// rebindAndWrite is SQL inside a unit of work that ends the transaction its scoping statement
// checked, opens a read-write one, binds it to its own tenant again with the id and proof the
// scoping statement set (readable with current_setting) and writes a project.
func rebindAndWrite(ctx context.Context, tx pgx.Tx, id, proof, name string) error {
	for _, q := range []string{"COMMIT", "BEGIN READ WRITE"} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true)`, id, proof); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ($1)`, name); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "COMMIT")
	return err
}

// projectsIn counts tn's projects named like pattern in its schema (placed) or in the shared
// tables, as the migration role.
func projectsIn(t *testing.T, s *setup, tn *tenancy.Tenant, schema bool, pattern string) int {
	t.Helper()
	table := "public.projects"
	if schema {
		table = pgx.Identifier{tenancycatalog.SchemaName(tn.ID), "projects"}.Sanitize()
	}
	var n int
	if err := s.env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table+` WHERE tenant_id = $1 AND name LIKE $2`,
		tn.ID, pattern).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAWriterInFlightIsWaitedFor starts a unit of work just before the switch that writes 300 ms
// later: the switch waits for it (the barrier is the tenant's own, whatever role or privileges
// the units run with) and its row is in the new placement.
func TestAWriterInFlightIsWaitedFor(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	s.seed(t, a, 3, 1)
	done := make(chan error, 1)
	started := make(chan struct{})
	once := false
	_, err := s.mover.Move(ctx, a.ID, &tenancymove.Opts{To: tenancycatalog.Placement{Isolation: tenancy.IsolationSchema},
		Progress: func(p tenancymove.Progress) {
			if p.Step == "switch" && !once {
				once = true
				go func() {
					done <- s.db.Tx(tenancytest.Context(a), func(tx pgx.Tx) error {
						close(started)
						time.Sleep(300 * time.Millisecond)
						_, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ('in flight')`)
						return err
					})
				}()
				<-started
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the unit in flight: %v", err)
	}
	if n := projectsIn(t, s, a, true, "in flight"); n != 1 {
		t.Fatalf("the write in flight at the switch is %d times in the new placement, want once", n)
	}
}

// TestSQLThatRebindsItselfCannotWriteBehindTheMove runs, across a move, a unit of work whose SQL
// keeps ending its transaction and binding a new one to its tenant by hand — past the scoping
// statement that checks the move — and writing. Every write that committed is in the new
// placement; the writes the move held back or that came after the switch were refused, not lost.
func TestSQLThatRebindsItselfCannotWriteBehindTheMove(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	s.seed(t, a, 20, 1)
	var committed atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.db.Tx(tenancytest.Context(a), func(tx pgx.Tx) error {
			var id, proof string
			if err := tx.QueryRow(ctx, `SELECT current_setting('app.tenant_id'), current_setting('app.tenant_proof')`).Scan(&id, &proof); err != nil {
				return err
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				if err := rebindAndWrite(ctx, tx, id, proof, fmt.Sprintf("long%06d", i)); err != nil {
					return err
				}
				committed.Add(1)
				if _, err := tx.Exec(ctx, "BEGIN"); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}()
	time.Sleep(50 * time.Millisecond)
	res, err := s.mover.Move(ctx, a.ID, &tenancymove.Opts{To: tenancycatalog.Placement{Isolation: tenancy.IsolationSchema}})
	time.Sleep(50 * time.Millisecond)
	close(stop)
	unitErr := <-done
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(unitErr, &pgErr) || (pgErr.Code != "TNCY3" && pgErr.Code != "40001") {
		t.Fatalf("the unit that wrote past its scoping statement ended with %v; want its write refused (TNCY3)", unitErr)
	}
	old, moved := projectsIn(t, s, a, false, "long%"), projectsIn(t, s, a, true, "long%")
	t.Logf("committed %d, in the old placement %d, in the new %d; pause %s; the unit: %v", committed.Load(), old, moved, res.Pause, unitErr)
	if committed.Load() == 0 {
		t.Fatal("the unit committed nothing before the move: the test proves nothing")
	}
	if int64(moved) != committed.Load() || old != moved {
		t.Fatalf("%d writes committed; %d are in the new placement and %d in the old: committed writes were lost", committed.Load(), moved, old)
	}
}

// holdBarrier takes tenant tn's move barrier exclusive on a connection of pool, as a move's switch
// does, until the returned function is called (or, as when a mover dies, the connection closes).
func holdBarrier(t *testing.T, s *setup, tn *tenancy.Tenant) (release func()) {
	t.Helper()
	ctx := context.Background()
	key, err := s.env.Catalog.BindingKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, s.env.Pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, tenancycatalog.UnitKey(key, tn.ID)); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			conn.Close(ctx) // a mover's session ending: the lock goes with it
		}
	}
	t.Cleanup(release)
	return release
}

// TestAnOldSnapshotCannotWriteBehindTheMove: SQL in a unit of work ends its transaction, begins a
// repeatable-read one and fixes its snapshot before the move begins; the whole move runs; then it
// binds the transaction by hand and writes into the old placement. The write is refused (the
// capture trigger finds no fence in that snapshot: the move began after it), not lost.
func TestAnOldSnapshotCannotWriteBehindTheMove(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	s.seed(t, a, 3, 1)
	for _, level := range []string{"REPEATABLE READ", "SERIALIZABLE"} {
		snapshot, moved := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- s.db.Tx(tenancytest.Context(a), func(tx pgx.Tx) error {
				var id, proof string
				if err := tx.QueryRow(ctx, `SELECT current_setting('app.tenant_id'), current_setting('app.tenant_proof')`).Scan(&id, &proof); err != nil {
					return err
				}
				for _, q := range []string{"COMMIT", "BEGIN ISOLATION LEVEL " + level, "SELECT 1"} {
					if _, err := tx.Exec(ctx, q); err != nil {
						return err
					}
				}
				close(snapshot)
				<-moved
				if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true)`, id, proof); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ('old snapshot')`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "COMMIT")
				return err
			})
		}()
		<-snapshot
		// From the shared tables (where the unit's unqualified names resolve once its scoping
		// statement's transaction is over) to a schema.
		if _, err := s.mover.Move(ctx, a.ID, &tenancymove.Opts{To: tenancycatalog.Placement{Isolation: tenancy.IsolationSchema}}); err != nil {
			t.Fatal(err)
		}
		close(moved)
		unitErr := <-done
		var pgErr *pgconn.PgError
		if !errors.As(unitErr, &pgErr) || pgErr.Code != "40001" {
			t.Errorf("%s: the write from a snapshot older than the move ended with %v; want a serialization failure", level, unitErr)
		}
		if inOld, inNew := projectsIn(t, s, a, false, "old snapshot"), projectsIn(t, s, a, true, "old snapshot"); inOld != 0 || inNew != 0 {
			t.Fatalf("%s: the refused write is %d times in the old placement and %d in the new", level, inOld, inNew)
		}
		// Back to the shared tables for the next level.
		for _, step := range []func() error{
			func() error { _, err := s.mover.Finalize(ctx, a.ID); return err },
			func() error {
				_, err := s.mover.Move(ctx, a.ID, &tenancymove.Opts{To: tenancycatalog.Placement{Isolation: tenancy.IsolationShared}})
				return err
			},
			func() error { _, err := s.mover.Finalize(ctx, a.ID); return err },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
