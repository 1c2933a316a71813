package tenancymove

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/lockkey"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyprovision"
)

// Config configures a Mover. Migrator is required.
type Config struct {
	// Migrator makes the new placement carry the tenant line (tenancymigrate.Migrator). Required.
	Migrator tenancyprovision.PlacementMigrator
	// Role is the runtime role, which a new schema is granted to. Defaults to
	// tenancycatalog.DefaultRole.
	Role string
	// Grace is how long a switched move keeps the old placement's data, so the tenant can be moved
	// back as it was, before FinalizeDue removes it. Defaults to 24h.
	Grace time.Duration
	// MaxPause bounds the switch's pause of the tenant's writes: a switch that would take longer
	// is given up — the tenant's writes go on in the old placement — and tried again after
	// another catch-up, at most three times. Defaults to 800ms (tenancypgx's units wait 1s).
	MaxPause time.Duration
	// Logger receives the moves' steps. Defaults to slog.Default().
	Logger *slog.Logger
}

// Mover moves live tenants between placements: shared ↔ schema ↔ database, and between the
// servers of database tenants.
type Mover struct {
	c        *tenancycatalog.Catalog
	m        tenancyprovision.PlacementMigrator
	role     string
	grace    time.Duration
	maxPause time.Duration
	log      *slog.Logger
}

// New returns a Mover on the catalog c (whose pool logs in as the migration role).
func New(c *tenancycatalog.Catalog, cfg *Config) (*Mover, error) {
	if c == nil {
		return nil, errors.New("tenancymove: New needs the catalog")
	}
	if cfg == nil || cfg.Migrator == nil {
		return nil, errors.New("tenancymove: New needs Config.Migrator (tenancymigrate.New)")
	}
	mv := &Mover{c: c, m: cfg.Migrator, role: cfg.Role, grace: cfg.Grace, maxPause: cfg.MaxPause, log: cfg.Logger}
	if mv.role == "" {
		mv.role = tenancycatalog.DefaultRole
	}
	if mv.grace <= 0 {
		mv.grace = 24 * time.Hour
	}
	if mv.maxPause <= 0 {
		mv.maxPause = 800 * time.Millisecond
	}
	if mv.log == nil {
		mv.log = slog.Default()
	}
	return mv, nil
}

// Opts says where a move goes and who hears of its progress. A nil *Opts is not allowed for Move.
type Opts struct {
	// To is the new placement. For the database model, To.Server is a server alias of the
	// catalog's Servers; it defaults to tenancycatalog.DefaultServer.
	To tenancycatalog.Placement
	// Progress, when set, is called as the move goes (from one goroutine at a time).
	Progress func(Progress)
}

// TableProgress is how far the copy of one table is.
type TableProgress struct {
	Table  string `json:"table"`
	Copied int64  `json:"copied"`
	Total  int64  `json:"total"`
}

// Progress is how far a move is.
type Progress struct {
	Step   string          `json:"step"` // prepare, copy, catch up, switch, switched, …
	Tables []TableProgress `json:"tables"`
	// Changes is how many changed rows the catch-up copied again.
	Changes int `json:"changes"`
	// Pause is the last switch's pause of the tenant's writes.
	Pause time.Duration `json:"pause_ns,omitempty"`
}

// progress keeps a move's Progress and reports it.
type progress struct {
	mu   sync.Mutex
	p    Progress
	fn   func(Progress)
	last time.Time
}

func (p *progress) report(force bool) {
	if p.fn == nil {
		return
	}
	if !force && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	snap := p.p
	snap.Tables = append([]TableProgress(nil), p.p.Tables...)
	p.fn(snap) // under p.mu: reports arrive one at a time, in order
}

func (p *progress) step(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Step = s
	p.report(true)
}

func (p *progress) tables(pairs []pair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Tables = make([]TableProgress, len(pairs))
	for i, pr := range pairs {
		p.p.Tables[i].Table = pr.src.label
	}
}

func (p *progress) setTotal(i int, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Tables[i].Total = n
}

func (p *progress) setCopied(i int, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Tables[i].Copied = n
	p.report(false)
}

func (p *progress) changed(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Changes += n
	p.report(false)
}

func (p *progress) paused(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Pause = d
}

// snapshot returns the progress now, its tables copied.
func (p *progress) snapshot() Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	snap := p.p
	snap.Tables = append([]TableProgress(nil), p.p.Tables...)
	return snap
}

// Result is what a move did.
type Result struct {
	Move *tenancycatalog.Move `json:"move"`
	// Tables are the tenant's rows per table at the switch, as verified on both placements.
	Tables []TableCheck `json:"tables"`
	// Copy is how long the copy of the rows took; Pause how long the tenant's writes were held
	// back by the switch that succeeded; Total the whole move.
	Copy  time.Duration `json:"copy_ns"`
	Pause time.Duration `json:"pause_ns"`
	Total time.Duration `json:"total_ns"`
	// Changes is how many changes made during the move were copied again; Attempts how many
	// switches it took.
	Changes  int `json:"changes"`
	Attempts int `json:"attempts"`
}

// Errors of a move's API.
var (
	// ErrSamePlacement means a move was asked to where the tenant already lives.
	ErrSamePlacement = errors.New("tenancymove: the tenant is there already")
	// ErrNotMovable means the tenant cannot be moved in its state (provisioning, deleted).
	ErrNotMovable = errors.New("tenancymove: the tenant cannot be moved now")
	// ErrSwitched means a switched move was asked to abort: move the tenant back instead.
	ErrSwitched = errors.New("tenancymove: the move has switched already")
	// ErrPauseTooLong means every attempt to switch would have held the tenant's writes longer than
	// Config.MaxPause; the tenant is served from the old placement and the move can be resumed.
	ErrPauseTooLong = errors.New("tenancymove: the switch would pause the tenant's writes too long")
)

// ErrMoveInProgress and ErrNoMove are the catalog's.
var (
	ErrMoveInProgress = tenancycatalog.ErrMoveInProgress
	ErrNoMove         = tenancycatalog.ErrNoMove
)

// Busy reports whether a mover, in this process or another, is working on tenant id's move now
// (a move that stopped is not busy: Resume or Abort it).
func (mv *Mover) Busy(ctx context.Context, id string) (bool, error) {
	err := mv.locked(ctx, id, func() error { return nil })
	if errors.Is(err, ErrMoveInProgress) {
		return true, nil
	}
	return false, err
}

// locked runs fn holding the tenant's move lock (one mover per tenant, whichever process).
func (mv *Mover) locked(ctx context.Context, id string, fn func() error) error {
	conn, err := mv.c.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	key, err := mv.c.BindingKey(ctx)
	if err != nil {
		return err
	}
	// Keyed by the binding key: no tenant can compute it and hold another's move up.
	lock := tenancycatalog.ProofUnitKey(key.Proof(lockkey.MovePrefix + id))
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lock).Scan(&got); err != nil {
		return err
	}
	if !got {
		return fmt.Errorf("%w: another mover is working on it", ErrMoveInProgress)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lock)
	return fn()
}

// Move moves tenant id to opts.To, online: the tenant is served from where it is while its rows
// are copied and the changes made meanwhile are copied again; then its writes pause for the
// switch (reads go on) — the last changes are copied, both placements are compared table by
// table (row counts and checksums: ErrMismatch leaves the tenant where it was), sequences are
// moved past the copied rows, and one catalog change, heard by every instance, switches the
// tenant. Units of work that still reach the old placement are refused there and follow the
// tenant (tenancypgx). The old placement's data stays until the move is finalized (Finalize,
// FinalizeDue after Config.Grace).
//
// A move that stops (an error, the process killed) leaves the tenant served from exactly one
// placement; Resume finishes it and Abort undoes it. A tenant whose last move switched but is not
// finalized may move again: that move first finalizes the last one.
func (mv *Mover) Move(ctx context.Context, id string, opts *Opts) (*Result, error) {
	if opts == nil {
		return nil, errors.New("tenancymove: Move needs Opts.To")
	}
	to := opts.To
	if _, err := tenancy.ParseIsolation(string(to.Isolation)); err != nil {
		return nil, err
	}
	if to.Isolation == tenancy.IsolationDatabase && to.Server == "" {
		to.Server = tenancycatalog.DefaultServer
	}
	if to.Isolation != tenancy.IsolationDatabase && to.Server != "" {
		return nil, fmt.Errorf("tenancymove: only the database model takes a server (not %s)", to.Isolation)
	}
	if to.Isolation == tenancy.IsolationDatabase {
		if _, err := mv.c.Servers().ConnConfig(to.Server, "postgres"); err != nil {
			return nil, err
		}
	}
	var res *Result
	err := mv.locked(ctx, id, func() error {
		t, err := mv.c.TenantByID(ctx, id)
		if err != nil {
			return err
		}
		if t.Status != tenancy.StatusActive && t.Status != tenancy.StatusSuspended {
			return fmt.Errorf("%w: %s is %s", ErrNotMovable, t.Slug, t.Status)
		}
		from := tenancycatalog.PlacementOf(t)
		if from == to {
			return fmt.Errorf("%w: %s is in %s", ErrSamePlacement, t.Slug, to)
		}
		if open, err := mv.c.OpenMove(ctx, id); err == nil {
			if open.State != tenancycatalog.MoveSwitched {
				return fmt.Errorf("%w: %s is being moved to %s (move %d, step %s): resume or abort it", ErrMoveInProgress, t.Slug, open.To, open.ID, open.Step)
			}
			if err := mv.finalize(ctx, t, open); err != nil {
				return err
			}
		} else if !errors.Is(err, tenancycatalog.ErrNoMove) {
			return err
		}
		if err := mv.movable(ctx, t, from, to); err != nil {
			return err
		}
		m, err := mv.c.StartMove(ctx, id, from, to)
		if err != nil {
			return err
		}
		res, err = mv.run(ctx, t, m, opts.Progress, false)
		return err
	})
	return res, err
}

// movable checks, before anything is made, what a move of t from one placement to another
// needs: tenant tables a move can track (each with a primary key, no cycle of foreign keys) and
// a migration role that may keep triggers quiet where rows are written (session_replication_role:
// the catch-up deletes and writes rows again, and a foreign key's ON DELETE CASCADE would take
// their children with them).
func (mv *Mover) movable(ctx context.Context, t *tenancy.Tenant, from, to tenancycatalog.Placement) error {
	src, err := mv.openSite(ctx, t, from)
	if err != nil {
		return fmt.Errorf("tenancymove: %s: %w", from, err)
	}
	defer src.close()
	if _, err := src.tables(ctx); err != nil {
		return err
	}
	q := tenancycatalog.Querier(mv.c.Pool())
	if !to.InCatalogDatabase() {
		conn, err := mv.c.Maintenance(ctx, to.Server)
		if err != nil {
			return fmt.Errorf("tenancymove: %s: %w", to, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		q = conn
	}
	var replica bool
	var role string
	if err := q.QueryRow(ctx, `SELECT rolsuper OR has_parameter_privilege(current_user, 'session_replication_role', 'SET'), current_user
		FROM pg_roles WHERE rolname = current_user`).Scan(&replica, &role); err != nil {
		return fmt.Errorf("tenancymove: %s: %w", to, err)
	}
	if !replica {
		return fmt.Errorf("%w: the migration role %s may not SET session_replication_role in %s: as a superuser, GRANT SET ON PARAMETER session_replication_role TO %s",
			ErrUnmovable, role, to, pgx.Identifier{role}.Sanitize())
	}
	return nil
}

// Resume finishes the tenant's move that stopped: one still copying goes on (from the catch-up
// when the first copy had completed, else from the start); one that switched gets its last
// steps done.
func (mv *Mover) Resume(ctx context.Context, id string, progress func(Progress)) (res *Result, err error) {
	err = mv.withOpenMove(ctx, id, func(t *tenancy.Tenant, m *tenancycatalog.Move) error {
		res, err = mv.run(ctx, t, m, progress, true)
		return err
	})
	return res, err
}

// Abort undoes the tenant's move that has not switched: the capture stops, the old placement's
// fence goes and the new placement's copy is removed. A switched move is not aborted
// (ErrSwitched): move the tenant back.
func (mv *Mover) Abort(ctx context.Context, id string) (*tenancycatalog.Move, error) {
	return mv.endOpenMove(ctx, id, func(t *tenancy.Tenant, m *tenancycatalog.Move) error {
		if m.State == tenancycatalog.MoveSwitched {
			return fmt.Errorf("%w: %s lives in %s now; move it back to %s instead", ErrSwitched, t.Slug, m.To, m.From)
		}
		return mv.abort(ctx, t, m)
	})
}

// Finalize removes the old placement's data of the tenant's switched move.
func (mv *Mover) Finalize(ctx context.Context, id string) (*tenancycatalog.Move, error) {
	return mv.endOpenMove(ctx, id, func(t *tenancy.Tenant, m *tenancycatalog.Move) error {
		if m.State != tenancycatalog.MoveSwitched {
			return fmt.Errorf("%w: %s's move to %s has not switched (step %s): resume or abort it", ErrNoMove, t.Slug, m.To, m.Step)
		}
		return mv.finalize(ctx, t, m)
	})
}

// withOpenMove runs fn on tenant id and its open move, holding the tenant's move lock.
func (mv *Mover) withOpenMove(ctx context.Context, id string, fn func(*tenancy.Tenant, *tenancycatalog.Move) error) error {
	return mv.locked(ctx, id, func() error {
		t, err := mv.c.TenantByID(ctx, id)
		if err != nil {
			return err
		}
		m, err := mv.c.OpenMove(ctx, id)
		if err != nil {
			return err
		}
		return fn(t, m)
	})
}

// endOpenMove is withOpenMove for what ends a move: it returns the move as it ended.
func (mv *Mover) endOpenMove(ctx context.Context, id string, fn func(*tenancy.Tenant, *tenancycatalog.Move) error) (*tenancycatalog.Move, error) {
	var out *tenancycatalog.Move
	err := mv.withOpenMove(ctx, id, func(t *tenancy.Tenant, m *tenancycatalog.Move) error {
		if err := fn(t, m); err != nil {
			return err
		}
		var err error
		out, err = mv.c.LastMove(ctx, id)
		return err
	})
	return out, err
}

// FinalizeDue finalizes every switched move whose grace period has passed. It returns how many
// it finalized; one that fails is left for the next call.
func (mv *Mover) FinalizeDue(ctx context.Context) (int, error) {
	due, err := mv.c.MovesDue(ctx, time.Now())
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, m := range due {
		if _, err := mv.Finalize(ctx, m.TenantID); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// run takes move m of tenant t from wherever it is to switched.
func (mv *Mover) run(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move, fn func(Progress), resume bool) (res *Result, err error) {
	began := time.Now()
	prog := &progress{fn: fn}
	res = &Result{Move: m}
	key, err := mv.c.BindingKey(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = mv.c.RecordMoveError(rctx, m.ID, err)
			mv.log.Warn("tenancy: move stopped", "tenant", t.Slug, "move", m.ID, "to", m.To.String(), "err", err)
		}
	}()
	src, err := mv.openSite(ctx, t, m.From)
	if err != nil {
		return nil, fmt.Errorf("tenancymove: %s: %w", m.From, err)
	}
	defer src.close()
	if resume && m.State == tenancycatalog.MoveCopying {
		// A mover that died between marking the old database's fence moved and switching the
		// catalog: the copy was complete and verified, and nothing was written since.
		if st, err := tenancycatalog.FenceOf(ctx, src.pool, key, t.ID, m.From.FenceName(t.ID)); err != nil {
			return nil, fmt.Errorf("tenancymove: %s: %w", m.From, err)
		} else if st == tenancycatalog.FenceMoved {
			version, err := mv.targetVersion(ctx, t, m)
			if err != nil {
				return nil, err
			}
			if err := mv.switchCatalog(ctx, t, m, key, version); err != nil {
				return nil, err
			}
			m.State = tenancycatalog.MoveSwitched
		}
	}
	if m.State == tenancycatalog.MoveSwitched {
		if err := mv.afterSwitch(ctx, t, m, src, key); err != nil {
			return nil, err
		}
		res.Move, err = mv.c.LastMove(ctx, t.ID)
		return res, err
	}
	tgt, err := mv.openTarget(ctx, t, m, resume, prog)
	if err != nil {
		return nil, err
	}
	defer tgt.close()
	srcTables, err := src.tables(ctx)
	if err != nil {
		return nil, err
	}
	tgtTables, err := tgt.tables(ctx)
	if err != nil {
		return nil, err
	}
	pairs, err := match(srcTables, tgtTables)
	if err != nil {
		return nil, err
	}
	prog.tables(pairs)
	if !resume || m.Step == "prepare" || m.Step == "copy" {
		copyStart := time.Now()
		if err := mv.startCapture(ctx, t.ID, m.ID, src, pairs, true); err != nil {
			return nil, err
		}
		mv.record(ctx, m, "copy", prog)
		if err := mv.copyAll(ctx, t.ID, src, tgt, pairs, prog); err != nil {
			return nil, fmt.Errorf("tenancymove: %w", err)
		}
		res.Copy = time.Since(copyStart)
	} else if err := mv.startCapture(ctx, t.ID, m.ID, src, pairs, false); err != nil { // a table may be new
		return nil, err
	}
	mv.record(ctx, m, "catch up", prog)
	for range 20 {
		n, err := mv.catchUp(ctx, t.ID, m.ID, src, tgt, pairs, 5000, nil)
		if err != nil {
			return nil, fmt.Errorf("tenancymove: catch up: %w", err)
		}
		prog.changed(n)
		if n < 500 {
			break
		}
	}
	version, err := mv.targetVersion(ctx, t, m)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		res.Attempts = attempt
		mv.record(ctx, m, "verify", prog)
		settled, err := mv.settle(ctx, t.ID, m.ID, src, tgt, pairs, prog)
		if err == nil {
			mv.record(ctx, m, "switch", prog)
		}
		var checks []TableCheck
		var pause time.Duration
		if err == nil {
			checks, pause, err = mv.switchOver(ctx, t, m, src, tgt, pairs, settled, key, version, prog)
		}
		if err == nil {
			res.Tables, res.Pause = checks, pause
			break
		}
		if errors.Is(err, ErrMismatch) {
			if aerr := mv.abort(ctx, t, m); aerr != nil {
				return nil, fmt.Errorf("%w (and undoing the move failed: %v)", err, aerr)
			}
			return nil, err
		}
		if !errors.Is(err, ErrPauseTooLong) || attempt == 3 {
			return nil, err
		}
		mv.log.Info("tenancy: move switch given up; settling again", "tenant", t.Slug, "move", m.ID, "attempt", attempt, "err", err)
	}
	// Switched: what follows must not be lost to a cancelled context.
	ctx = context.WithoutCancel(ctx)
	if err := mv.afterSwitch(ctx, t, m, src, key); err != nil {
		mv.log.Warn("tenancy: move switched; its clean-up failed (resume the move to finish it)", "tenant", t.Slug, "move", m.ID, "err", err)
	}
	res.Changes = prog.snapshot().Changes
	res.Total = time.Since(began)
	if res.Move, err = mv.c.LastMove(ctx, t.ID); err != nil {
		return nil, err
	}
	mv.log.Info("tenancy: tenant moved", "tenant", t.Slug, "move", m.ID, "from", m.From.String(), "to", m.To.String(),
		"copy", res.Copy, "pause", res.Pause, "total", res.Total, "changes", res.Changes)
	return res, nil
}

// record records the move's step and progress in the catalog (best effort: progress is advice).
func (mv *Mover) record(ctx context.Context, m *tenancycatalog.Move, step string, prog *progress) {
	prog.step(step)
	m.Step = step
	_ = mv.c.RecordMove(ctx, m.ID, step, prog.snapshot())
}

// openTarget opens the move's target, making it first unless the first copy completed there.
func (mv *Mover) openTarget(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move, resume bool, prog *progress) (*site, error) {
	if !resume || m.Step == "prepare" || m.Step == "copy" {
		mv.record(ctx, m, "prepare", prog)
		if _, err := tenancyprovision.Prepare(ctx, mv.c, t, m.To, mv.m, &tenancyprovision.ProvisionOpts{Role: mv.role}); err != nil {
			return nil, fmt.Errorf("tenancymove: prepare %s: %w", m.To, err)
		}
	}
	tgt, err := mv.openSite(ctx, t, m.To)
	if err != nil {
		return nil, fmt.Errorf("tenancymove: %s: %w", m.To, err)
	}
	return tgt, nil
}

// targetVersion returns the tenant line's version in the move's target, which must be the
// source's.
func (mv *Mover) targetVersion(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move) (int, error) {
	srcTarget := t.ID
	if m.From.Isolation == tenancy.IsolationShared {
		srcTarget = tenancycatalog.SharedTarget
	}
	srcVersion, err := tenancycatalog.LineVersion(ctx, mv.c.Pool(), srcTarget)
	if err != nil {
		return 0, err
	}
	tgtVersion := mv.m.Latest()
	if m.To.Isolation == tenancy.IsolationShared {
		if tgtVersion, err = tenancycatalog.LineVersion(ctx, mv.c.Pool(), tenancycatalog.SharedTarget); err != nil {
			return 0, err
		}
	}
	if srcVersion != tgtVersion {
		return 0, fmt.Errorf("%w: the tenant line is at version %d in %s and %d in %s: run tenancy migrate first",
			ErrUnmovable, srcVersion, m.From, tgtVersion, m.To)
	}
	return tgtVersion, nil
}

// startCapture adds the move's capture triggers to the source's tables (before a first copy,
// forgetting changes recorded before: fresh): each waits for the table's writers in flight, so a
// change is either in the first copy's snapshot or recorded, or both. On a resumed move the
// triggers are made again and the changes they recorded kept.
func (mv *Mover) startCapture(ctx context.Context, id string, moveID int64, src *site, pairs []pair, fresh bool) error {
	if fresh {
		if err := tenancycatalog.ClearChanges(ctx, src.pool, moveID); err != nil {
			return fmt.Errorf("tenancymove: %s: %w", src.p, err)
		}
	}
	key, err := mv.c.BindingKey(ctx)
	if err != nil {
		return err
	}
	// The fence the capture checks, open until the switch.
	if err := tenancycatalog.Fence(ctx, src.pool, key, id, src.p.FenceName(id), tenancycatalog.FenceOpen, moveID); err != nil {
		return fmt.Errorf("tenancymove: %s: %w", src.p, err)
	}
	unitKey := tenancycatalog.UnitKey(key, id)
	for _, p := range pairs {
		err := briefLock(ctx, func(timeout time.Duration) error {
			return tenancycatalog.Capture(ctx, src.pool, moveID, p.src.ident, p.src.label, src.p.FenceName(id), id, unitKey, p.src.pk, timeout)
		})
		if err != nil {
			return fmt.Errorf("tenancymove: capture changes to %s: %w", p.src.label, err)
		}
	}
	return nil
}

// briefLock runs fn, which takes a lock other tenants' work on a shared table waits behind while
// it is queued, with a short lock timeout, and again after a pause while the lock is not had, for
// at most a minute: no other tenant waits long for a move.
func briefLock(ctx context.Context, fn func(timeout time.Duration) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := fn(100 * time.Millisecond)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sourceTables reads the source's tenant tables, for the clean-up after a switch.
func (mv *Mover) sourceTables(ctx context.Context, src *site) ([]pair, error) {
	ts, err := src.tables(ctx)
	if err != nil {
		return nil, err
	}
	pairs := make([]pair, len(ts))
	for i, t := range ts {
		pairs[i] = pair{src: t}
	}
	return pairs, nil
}

// stopCapture drops the move's triggers from the source and forgets its recorded changes.
func stopCapture(ctx context.Context, moveID int64, src *site, pairs []pair) error {
	for _, p := range pairs {
		if err := briefLock(ctx, func(timeout time.Duration) error {
			return tenancycatalog.StopCapture(ctx, src.pool, moveID, p.src.ident, timeout)
		}); err != nil {
			return fmt.Errorf("tenancymove: %s: %w", src.p, err)
		}
	}
	return tenancycatalog.ClearChanges(ctx, src.pool, moveID)
}

// abort undoes move m, which has not switched.
func (mv *Mover) abort(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move) error {
	key, err := mv.c.BindingKey(ctx)
	if err != nil {
		return err
	}
	src, err := mv.openSite(ctx, t, m.From)
	if err != nil {
		return fmt.Errorf("tenancymove: %s: %w", m.From, err)
	}
	defer src.close()
	// The triggers go before the fence they check (a write between would be refused).
	pairs, err := mv.sourceTables(ctx, src)
	if err != nil {
		return err
	}
	if err := stopCapture(ctx, m.ID, src, pairs); err != nil {
		return err
	}
	if err := tenancycatalog.Unfence(ctx, src.pool, key, t.ID, m.From.FenceName(t.ID)); err != nil {
		return fmt.Errorf("tenancymove: %s: %w", m.From, err)
	}
	if err := mv.discard(ctx, t, m.To); err != nil {
		return fmt.Errorf("tenancymove: remove the copy in %s: %w", m.To, err)
	}
	return mv.c.EndMove(ctx, m.ID, tenancycatalog.MoveAborted)
}

// finalize removes the old placement's data of switched move m.
func (mv *Mover) finalize(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move) error {
	key, err := mv.c.BindingKey(ctx)
	if err != nil {
		return err
	}
	src, err := mv.openSite(ctx, t, m.From)
	if err == nil {
		var pairs []pair
		if err = mv.afterSwitch(ctx, t, m, src, key); err == nil {
			if pairs, err = mv.sourceTables(ctx, src); err == nil {
				err = stopCapture(ctx, m.ID, src, pairs)
			}
		}
		src.close()
	}
	if err != nil && m.From.Isolation != tenancy.IsolationDatabase {
		return fmt.Errorf("tenancymove: finalize: %w", err)
	}
	// A database that cannot be opened may be gone already; dropping it says.
	if err := mv.discard(ctx, t, m.From); err != nil {
		return fmt.Errorf("tenancymove: remove the old data in %s: %w", m.From, err)
	}
	return mv.c.EndMove(ctx, m.ID, tenancycatalog.MoveFinalized)
}

// afterSwitch finishes a switched move on its source: the fence there says moved (units that
// still reach it look the tenant up again) and the recorded changes go. The capture triggers stay
// until the move is finalized: they refuse the tenant's writes there, which SQL in a unit of work
// could make after ending the transaction its scoping statement checked.
func (mv *Mover) afterSwitch(ctx context.Context, t *tenancy.Tenant, m *tenancycatalog.Move, src *site, key *tenancycatalog.BindingKey) error {
	if err := tenancycatalog.Fence(ctx, src.pool, key, t.ID, m.From.FenceName(t.ID), tenancycatalog.FenceMoved, m.ID); err != nil {
		return fmt.Errorf("tenancymove: %s: %w", m.From, err)
	}
	return tenancycatalog.ClearChanges(ctx, src.pool, m.ID)
}

// discard removes t's data at placement p, where the catalog does not place it: a schema or a
// database as tenancyprovision.Discard does; in the shared tables, t's rows, children first, in
// one transaction where user triggers and the foreign keys' own stay quiet when the role may ask
// for it (every row of the tenant goes, and the keys of tenant tables stay within the tenant:
// checking each deleted row's references would cost a scan per row where they are not indexed).
func (mv *Mover) discard(ctx context.Context, t *tenancy.Tenant, p tenancycatalog.Placement) error {
	if p.Isolation != tenancy.IsolationShared {
		return tenancyprovision.Discard(ctx, mv.c, t, p)
	}
	current, err := mv.c.TenantByID(ctx, t.ID)
	if err != nil {
		return err
	}
	if tenancycatalog.PlacementOf(current) == p {
		return fmt.Errorf("%w: refusing to remove %s's rows from the shared tables", tenancyprovision.ErrPlacementInUse, t.Slug)
	}
	s, err := mv.openSite(ctx, t, p)
	if err != nil {
		return err
	}
	defer s.close()
	tables, err := s.tables(ctx)
	if err != nil {
		return err
	}
	tx, err := beginTarget(ctx, s)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for i := len(tables) - 1; i >= 0; i-- {
		if _, err := tx.Exec(ctx, "DELETE FROM "+tables[i].ident.Sanitize()+" WHERE tenant_id = $1", t.ID); err != nil {
			return fmt.Errorf("%s: %w", tables[i].label, err)
		}
	}
	return tx.Commit(ctx)
}
