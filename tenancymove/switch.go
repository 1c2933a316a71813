package tenancymove

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// switchOver is a move's switch, after settle compared both placements at a snapshot of the
// source (settled). It fences the old placement to the tenant's writes, waits for the writers
// already in it, copies the rows changed since the snapshot and compares those on both sides
// (every other row is as it was then: a change would have been recorded), moves the sequences
// on and switches the catalog — the old placement's fence then says the tenant moved — all
// within mv.maxPause of the fence, or gives up (ErrPauseTooLong) and opens the old placement to
// writes again. It returns the tables' checks at the switch and the pause.
func (mv *Mover) switchOver(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move, src, tgt *site, pairs []pair,
	settled []TableCheck, key *tenancycatalog.BindingKey, version int, prog *progress) (checks []TableCheck, pause time.Duration, err error) {
	fence := m.From.FenceName(t.ID)
	if err := tenancycatalog.Fence(ctx, src.pool, key, t.ID, fence, tenancycatalog.FenceSwitching, m.ID); err != nil {
		return nil, 0, fmt.Errorf("tenancymove: fence %s: %w", m.From, err)
	}
	began := time.Now()
	deadline := began.Add(mv.maxPause)
	switched := false
	defer func() {
		if !switched {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if uerr := tenancycatalog.Unfence(uctx, src.pool, key, t.ID, fence); uerr != nil {
				err = fmt.Errorf("%w (and opening %s to writes again failed: %v: resume or abort the move)", err, m.From, uerr)
			}
		}
	}()
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	tooLong := func(step string, err error) error {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("%w (%s after %s, more than %s)", ErrPauseTooLong, step, time.Since(began).Round(time.Millisecond), mv.maxPause)
		}
		return fmt.Errorf("tenancymove: switch: %s: %w", step, err)
	}
	if err := mv.waitWriters(pctx, src); err != nil {
		return nil, 0, tooLong("waiting for the writes in flight", err)
	}
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
	// The decision: one catalog transaction. Where the old or new placement is in the catalog's
	// database, its fence changes in that transaction too.
	err = mv.c.SwitchMove(ctx, m, version, time.Now().Add(mv.grace), func(tx pgx.Tx) error {
		if m.To.InCatalogDatabase() {
			if err := tenancycatalog.Unfence(ctx, tx, key, t.ID, m.To.FenceName(t.ID)); err != nil {
				return err
			}
		}
		if m.From.InCatalogDatabase() {
			return tenancycatalog.Fence(ctx, tx, key, t.ID, fence, tenancycatalog.FenceMoved, m.ID)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("tenancymove: switch: %w", err)
	}
	switched = true
	pause = time.Since(began)
	if !m.From.InCatalogDatabase() {
		// The old database's fence still refuses writes ("switching"); "moved" refuses reads too.
		_ = tenancycatalog.Fence(ctx, src.pool, key, t.ID, fence, tenancycatalog.FenceMoved, m.ID)
	}
	m.State = tenancycatalog.MoveSwitched
	prog.mu.Lock()
	prog.p.Pause = pause
	prog.mu.Unlock()
	prog.step("switched")
	return checks, pause, nil
}

// waitWriters waits until every transaction of the runtime role that was open on the source's
// database when it was fenced has ended: a unit that entered before the fence may still write.
// Units that enter later are refused by the fence.
func (mv *Mover) waitWriters(ctx context.Context, src *site) error {
	var pids []int32
	var starts []time.Time
	rows, err := src.pool.Query(ctx, `SELECT pid, xact_start FROM pg_stat_activity
		WHERE datname = current_database() AND usename = $1 AND xact_start IS NOT NULL AND pid <> pg_backend_pid()`, mv.role)
	if err != nil {
		return err
	}
	var pid int32
	var start time.Time
	if _, err := pgx.ForEachRow(rows, []any{&pid, &start}, func() error {
		pids, starts = append(pids, pid), append(starts, start)
		return nil
	}); err != nil {
		return err
	}
	for len(pids) > 0 {
		var open int
		// Each statement its own transaction: pg_stat_activity is read afresh.
		if err := src.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity a
			JOIN unnest($1::int[], $2::timestamptz[]) w(pid, xact_start) ON a.pid = w.pid AND a.xact_start = w.xact_start`,
			pids, starts).Scan(&open); err != nil {
			return err
		}
		if open == 0 {
			return nil
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
