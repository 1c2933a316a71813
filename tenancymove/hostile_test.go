package tenancymove_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// TestAnotherTenantLearnsNothingOfAMove holds tenant A back as a move's switch does and has tenant B,
// from SQL inside its own unit of work, try to read the fences and the recorded changes, lift
// A's fence, and find A's fence by what it knows: each is refused or tells nothing, while A's own
// units are held back (the positive control) and B's are served.
func TestAnotherTenantLearnsNothingOfAMove(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	a := s.env.NewTenant(t, tenancy.IsolationShared)
	b := s.env.NewTenant(t, tenancy.IsolationShared)
	s.seed(t, a, 3, 1)
	interrupt(t, s, a, tenancycatalog.Placement{Isolation: tenancy.IsolationSchema}, "switch")
	if err := s.write(a, "changed"); err != nil { // recorded by the capture
		t.Fatal(err)
	}
	release := holdBarrier(t, s, a) // as the move's switch does
	quick := &setup{db: tenancytest.NewDB(t, s.env.Pool, &tenancypgx.Config{Store: s.env.Catalog, MoveWait: 50 * time.Millisecond})}
	if err := quick.write(a, "held"); !errors.Is(err, tenancy.ErrTenantMoving) {
		t.Fatalf("control: A's write while the switch holds it returned %v, want ErrTenantMoving", err)
	}
	code := func(err error) string {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return pgErr.Code
		}
		return ""
	}
	var fences int
	if err := s.env.Pool.QueryRow(ctx, `SELECT count(*) FROM tenancy.fences`).Scan(&fences); err != nil || fences != 1 {
		t.Fatalf("control: the migration role sees %d fences (%v), want A's", fences, err)
	}
	for _, c := range []struct{ name, sql, want string }{
		{"read the changes", `SELECT count(*) FROM tenancy.move_changes`, "42501"},
		{"read whose the fences are", `SELECT tenant_id FROM tenancy.fences`, "42501"},
		{"lift the fence", `DELETE FROM tenancy.fences`, "42501"},
		{"forge a change", `INSERT INTO tenancy.move_changes (move_id, tbl, key) VALUES (1, 'projects', '{}')`, "42501"},
		{"call the capture", `SELECT tenancy.capture_change()`, "42501"},
		{"list the locks others hold (their barriers' keys)", `SELECT count(*) FROM pg_locks`, "42501"},
		{"list them through the function", `SELECT count(*) FROM pg_lock_status()`, "42501"},
	} {
		err := s.db.Tx(tenancytest.Context(b), func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, c.sql)
			return err
		})
		if code(err) != c.want {
			t.Errorf("B: %s: %v; want SQLSTATE %s", c.name, err, c.want)
		}
	}
	// The fences B may read are those of the proof its transaction sets: its own, or one it
	// guesses (A's id is not A's proof).
	for name, set := range map[string]string{"its own": "", "A's id as the proof": a.ID, "an empty proof": "''"} {
		var n int
		err := s.db.Tx(tenancytest.Context(b), func(tx pgx.Tx) error {
			if set != "" {
				if set == "''" {
					set = ""
				}
				if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_proof', $1, true)`, set); err != nil {
					return err
				}
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM tenancy.fences`).Scan(&n)
		})
		if err != nil || n != 0 {
			t.Errorf("B reading the fences with %s: %d (%v); want none", name, n, err)
		}
	}
	if err := s.write(b, "b's own"); err != nil {
		t.Fatalf("B is held back by A's move: %v", err)
	}
	release()
	if _, err := s.mover.Resume(ctx, a.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.names(t, a); len(got) != 4 {
		t.Fatalf("after the move A has %v, want its 3 projects and the changed one", got)
	}
}
