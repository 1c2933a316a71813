package tenancymove

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// switchOver is a move's switch, after settle compared both placements at a snapshot of the
// source (settled). It takes the tenant's barrier in the old placement exclusive — which waits
// for the tenant's units in flight there, and refuses new ones that may write (and every write of
// the tenant's rows, however SQL came to make it) while held — copies the rows changed since the
// snapshot and compares those on both sides (every other row is as it was then: a change would
// have been recorded), moves the sequences on, marks the old placement's fence moved and switches
// the catalog, then lets go of the barrier: all within mv.maxPause of asking for it, or it gives
// up (ErrPauseTooLong) and the tenant's writes go on in the old placement. It returns the tables'
// checks at the switch and the pause.
func (mv *Mover) switchOver(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move, src, tgt *site, pairs []pair,
	settled []TableCheck, key *tenancycatalog.BindingKey, version int, prog *progress) (checks []TableCheck, pause time.Duration, err error) {
	fence := m.From.FenceName(t.ID)
	unitKey := tenancycatalog.UnitKey(key, t.ID)
	began := time.Now()
	deadline := began.Add(mv.maxPause)
	barrier, err := src.pool.Acquire(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("tenancymove: %s: %w", m.From, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := barrier.Exec(uctx, "SELECT pg_advisory_unlock($1)", unitKey); uerr != nil {
			barrier.Conn().Close(uctx) // the session ends, and the lock with it
		}
		barrier.Release()
	}()
	tooLong := func(step string, err error) error {
		var pgErr *pgconn.PgError
		if (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) || (errors.As(err, &pgErr) && pgErr.Code == "55P03") {
			return fmt.Errorf("%w (%s after %s, more than %s)", ErrPauseTooLong, step, time.Since(began).Round(time.Millisecond), mv.maxPause)
		}
		return fmt.Errorf("tenancymove: switch: %s: %w", step, err)
	}
	// Waiting for the tenant's units in flight, at most the pause; units that ask meanwhile are
	// refused the shared lock (a waiting exclusive request is ahead of them) and wait in the driver.
	if _, err := barrier.Exec(ctx, "SELECT set_config('lock_timeout', $1, false)", strconv.FormatInt(mv.maxPause.Milliseconds(), 10)); err != nil {
		return nil, 0, fmt.Errorf("tenancymove: %s: %w", m.From, err)
	}
	_, err = barrier.Exec(ctx, "SELECT pg_advisory_lock($1)", unitKey)
	if _, rerr := barrier.Exec(ctx, "RESET lock_timeout"); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return nil, 0, tooLong("waiting for the tenant's writes in flight", err)
	}
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// The last changes: the rows changed since the settled snapshot. Before each is written to the
	// target, the target's rows of keys not seen before are summed (they are as the snapshot had
	// them); after, those rows are compared on both sides.
	delta := map[string][]string{}
	before := map[string]TableCheck{}
	known := map[string]bool{}
	hooks := &roundHooks{beforeApply: func(ctx context.Context, ttx pgx.Tx, keys map[string][]string) error {
		for _, p := range pairs {
			var fresh []string
			for _, k := range keys[p.src.label] {
				if !known[p.src.label+"\x00"+k] {
					known[p.src.label+"\x00"+k] = true
					fresh = append(fresh, k)
				}
			}
			if len(fresh) == 0 {
				continue
			}
			c, err := checksum(ctx, ttx, p.tgt, p.src.cols, t.ID, keyArray(fresh))
			if err != nil {
				return err
			}
			b, ok := before[p.src.label]
			if !ok {
				b = TableCheck{Table: p.src.label, Checksum: "0"}
			}
			before[p.src.label] = b.plus(c, TableCheck{Checksum: "0"})
			delta[p.src.label] = append(delta[p.src.label], fresh...)
		}
		return nil
	}}
	for {
		n, err := mv.catchUp(pctx, t.ID, m.ID, src, tgt, pairs, 50000, hooks)
		if err != nil {
			return nil, 0, tooLong("copying the last changes", err)
		}
		prog.changed(n)
		if n == 0 {
			break
		}
	}
	checks = make([]TableCheck, len(pairs))
	srcDelta := make([]TableCheck, len(pairs))
	tgtDelta := make([]TableCheck, len(pairs))
	g, gctx := errgroup.WithContext(pctx)
	for i, p := range pairs {
		checks[i] = settled[i]
		keys := delta[p.src.label]
		if len(keys) == 0 {
			srcDelta[i], tgtDelta[i] = TableCheck{Table: p.src.label, Checksum: "0"}, TableCheck{Table: p.src.label, Checksum: "0"}
			continue
		}
		g.Go(func() (err error) {
			srcDelta[i], err = checksum(gctx, src.pool, p.src, p.src.cols, t.ID, keyArray(keys))
			return err
		})
		g.Go(func() (err error) {
			tgtDelta[i], err = checksum(gctx, tgt.pool, p.tgt, p.src.cols, t.ID, keyArray(keys))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, tooLong("comparing the changed rows", err)
	}
	if err := mismatch("the rows changed since", src, tgt, pairs, srcDelta, tgtDelta); err != nil {
		return nil, 0, err
	}
	for i, p := range pairs {
		if len(delta[p.src.label]) > 0 {
			checks[i] = settled[i].plus(tgtDelta[i], before[p.src.label])
		}
	}
	if err := advanceSequences(pctx, t.ID, src, tgt, pairs); err != nil {
		return nil, 0, tooLong("moving the sequences on", err)
	}
	if time.Now().After(deadline) {
		return nil, 0, tooLong("switching", context.DeadlineExceeded)
	}
	// The decision. Where the old placement is in the catalog's database, its fence says moved in
	// the catalog's transaction; elsewhere it says so first (a mover that dies between the two
	// leaves the tenant refused, not written in two places, until Resume switches the catalog).
	if !m.From.InCatalogDatabase() {
		if err := tenancycatalog.Fence(ctx, src.pool, key, t.ID, fence, tenancycatalog.FenceMoved, m.ID); err != nil {
			return nil, 0, fmt.Errorf("tenancymove: %s: %w", m.From, err)
		}
	}
	if err := mv.switchCatalog(ctx, t, m, key, version); err != nil {
		return nil, 0, err
	}
	pause = time.Since(began)
	m.State = tenancycatalog.MoveSwitched
	prog.paused(pause)
	prog.step("switched")
	return checks, pause, nil
}

// switchCatalog switches the catalog to the move's target, in one transaction with the fences of
// placements in the catalog's database: the target's opened, the source's marked moved.
func (mv *Mover) switchCatalog(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move, key *tenancycatalog.BindingKey, version int) error {
	err := mv.c.SwitchMove(ctx, m, version, time.Now().Add(mv.grace), func(tx pgx.Tx) error {
		if m.To.InCatalogDatabase() {
			if err := tenancycatalog.Unfence(ctx, tx, key, t.ID, m.To.FenceName(t.ID)); err != nil {
				return err
			}
		}
		if m.From.InCatalogDatabase() {
			return tenancycatalog.Fence(ctx, tx, key, t.ID, m.From.FenceName(t.ID), tenancycatalog.FenceMoved, m.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tenancymove: switch: %w", err)
	}
	return nil
}
