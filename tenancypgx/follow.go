package tenancypgx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
)

// codeFenced is the SQLSTATE with which the scoping statement (tenancy.fenced) refuses a tenant
// whose move fences the placement the unit of work tried (see the catalog's
// sql/catalog/0014_move_fence.sql): DETAIL "switching" while the move switches (units that may
// write wait), "moved" once the tenant lives elsewhere.
const codeFenced = "TNCY3"

// fenceError is a unit of work refused by a move's fence before it ran.
type fenceError struct {
	moved bool // the tenant lives elsewhere now; else its move is switching
	err   error
}

func (e *fenceError) Error() string { return e.err.Error() }
func (e *fenceError) Unwrap() error { return e.err }

// fenced marks err as a fence's refusal when it is one; other errors pass through. Only the
// scoping statement's errors go through it, so fn's own errors are never taken for one.
func fenced(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == codeFenced {
		return &fenceError{moved: pgErr.Detail == "moved", err: err}
	}
	return err
}

// follow runs unit, and runs it again while a move's fence refuses it: at once after looking the
// tenant up again when the tenant has moved (so it runs in the new placement), after a short wait
// while the move switches; at most db.wait in all. Without a Store nothing tells the new
// placement, so a unit refused because the tenant moved returns tenancy.ErrTenantMoving at once.
func (db *DB) follow(ctx context.Context, unit func() error) error {
	err := unit()
	var fe *fenceError
	if !errors.As(err, &fe) {
		return err
	}
	t, _ := tenancy.FromContext(ctx)
	deadline := time.Now().Add(db.wait)
	delay := time.Millisecond
	for attempt := 0; ; attempt++ {
		if fe.moved {
			if db.store == nil {
				break
			}
			if inv, ok := db.store.(tenancy.Invalidator); ok {
				_ = inv.Invalidate(ctx, t.ID) // the lookup cache may not have heard of the switch yet
			}
		}
		if attempt > 0 || !fe.moved {
			if time.Now().Add(delay).After(deadline) {
				break
			}
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return ctx.Err()
			}
			delay = min(2*delay, 10*time.Millisecond)
		}
		if err = unit(); !errors.As(err, &fe) {
			return err
		}
	}
	return fmt.Errorf("%w (tenant %s, waited %s): %w", tenancy.ErrTenantMoving, t.Slug, db.wait, err)
}
