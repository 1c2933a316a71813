package tenancyrouter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/clock"
	"github.com/gotenancy/tenancy/internal/pgsession"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// Config configures a Router. Servers is required; every other field has a default.
type Config struct {
	// Servers holds, by alias (see Tenant.Server), the URLs the tenant pools log in with: the
	// runtime role's (RuntimeURL), never the migration role's — SQL inside a transaction has the
	// rights of this login. A URL may point at a transaction pooler (PgBouncer): the router then
	// prepares no statement by name, as NewRuntimePool does. Required.
	Servers tenancycatalog.Servers
	// MaxPools is the most tenant pools open at once. Defaults to 50.
	MaxPools int
	// MaxConns is the budget of connections across all tenant pools: the pools open never reserve
	// more, so the router never has more backends open. Defaults to 100.
	MaxConns int
	// MaxConnsPerPool is each tenant pool's size, reserved from MaxConns while the pool is open; it
	// is also each tenant's bulkhead. Defaults to 2.
	MaxConnsPerPool int
	// IdleTimeout closes a tenant pool unused for this long. Defaults to 5 minutes.
	IdleTimeout time.Duration
	// AcquireTimeout bounds how long a request waits for room (a pool under the caps, a free
	// connection in its pool) before ErrCapacityExhausted, and for a connection being opened for
	// it before ErrTenantUnavailable. Defaults to 2 seconds.
	AcquireTimeout time.Duration
	// ConnectTimeout bounds connecting to a tenant database. Defaults to 2 seconds.
	ConnectTimeout time.Duration
	// FailureThreshold is how many consecutive failures to connect (a connection refused, or not
	// opened within AcquireTimeout) open a tenant's breaker.
	// Defaults to 3.
	FailureThreshold int
	// OpenFor is how long an open breaker fails the tenant's requests fast before they try its
	// database again. Defaults to 5 seconds.
	OpenFor time.Duration
	// Configure, when set, adjusts each tenant pool's configuration (tracing, TLS) before it opens.
	// MaxConns and MinConns are set by the router after it runs. Defaults to nil.
	Configure func(*pgxpool.Config)
	// Now returns the current time. Defaults to a coarse clock cheaper than time.Now.
	Now func() time.Time
	// Logger says when a server is reached through a pooler (see NewRuntimePool). Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// Router opens, shares and closes the connection pools of database-model tenants: one pool per
// tenant, created on first use (concurrent first requests create one), within a cap of open pools
// and a budget of connections that are never exceeded; the least recently used idle pool makes
// room for a new one, and idle pools are closed after IdleTimeout. A pool that is evicted while in
// use drains: its connections finish their work, new requests get a fresh pool. When every pool is
// busy and the caps are reached, a request waits up to AcquireTimeout, then gets
// tenancy.ErrCapacityExhausted. A tenant whose database cannot be reached fails fast with
// tenancy.ErrTenantUnavailable once its breaker opens, without slowing other tenants.
type Router struct {
	cfg    Config
	now    func() int64
	seed   maphash.Seed
	shards [64]routerShard

	mu       sync.Mutex // pool creation and eviction, the budget, breakers, waiters
	pools    int
	reserved int
	changed  chan struct{} // closed and replaced when room may have come free
	waiting  atomic.Int32
	breakers map[string]*breaker
	closed   bool

	hits, misses, waits, capacityErrors, failFast atomic.Uint64
	evictedLRU, evictedIdle, evictedBreaker       atomic.Uint64

	stop chan struct{}
	done chan struct{}

	modes    sync.Map // alias -> *execMode: how pgx runs statements on that server
	janitors sync.Map // alias -> *pgsession.Janitor
}

// execMode is how pgx runs statements on one server, decided by its first connection.
type execMode struct {
	mu      sync.Mutex
	decided bool
	mode    pgx.QueryExecMode
	params  map[string]string // start-up settings, the guard included where the server takes it
}

type routerShard struct {
	mu sync.RWMutex
	m  map[string]*poolEntry
}

type poolEntry struct {
	id       string
	server   string // the alias of the tenant's server
	database string // the tenant's database there
	pool     *pgxpool.Pool
	reserved int
	refs     atomic.Int64
	lastUsed atomic.Int64 // unix nanoseconds
	failures atomic.Int32 // consecutive failures to connect
	retired  atomic.Bool  // removed from the map: closes when its last lease ends
	checked  sync.Map     // *Check -> *pgsession.CheckOnce: which checks passed on this pool

	sqlOnce sync.Once
	sqlDB   *sql.DB // database/sql over pool, for SQLTx
}

// placed reports whether the entry's pool is on t's placement.
func (e *poolEntry) placed(t *tenancy.Tenant) bool {
	return e.server == t.Server && e.database == t.Database
}

// close closes the entry's database/sql handle and pool, waiting for connections in use.
func (e *poolEntry) close() {
	e.sqlOnce.Do(func() {}) // no handle may be opened from now on
	if e.sqlDB != nil {
		_ = e.sqlDB.Close()
	}
	e.pool.Close()
}

type breaker struct {
	openUntil int64
}

// ErrClosed is returned by a Router that has been closed.
var ErrClosed = errors.New("tenancyrouter: router closed")

// New returns a router and starts its idle reaper; Close stops it.
func New(cfg *Config) (*Router, error) {
	if cfg == nil || len(cfg.Servers) == 0 {
		return nil, errors.New("tenancyrouter: New needs Config.Servers")
	}
	if err := cfg.Servers.Validate(); err != nil {
		return nil, err
	}
	for alias := range cfg.Servers {
		pc, err := cfg.Servers.PoolConfig(alias, "postgres")
		if err != nil {
			return nil, err
		}
		if err := pgsession.RefuseSimpleProtocol(pc.ConnConfig); err != nil {
			return nil, fmt.Errorf("tenancyrouter: server %s: %w", alias, err)
		}
	}
	c := *cfg
	setDefault := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setDefault(&c.MaxPools, 50)
	setDefault(&c.MaxConns, 100)
	setDefault(&c.MaxConnsPerPool, 2)
	setDefault(&c.FailureThreshold, 3)
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{{&c.IdleTimeout, 5 * time.Minute}, {&c.AcquireTimeout, 2 * time.Second}, {&c.ConnectTimeout, 2 * time.Second}, {&c.OpenFor, 5 * time.Second}} {
		if *d.v == 0 {
			*d.v = d.d
		}
	}
	switch {
	case c.MaxPools < 0, c.MaxConns < 0, c.MaxConnsPerPool < 0, c.FailureThreshold < 0,
		c.IdleTimeout < 0, c.AcquireTimeout < 0, c.ConnectTimeout < 0, c.OpenFor < 0:
		return nil, errors.New("tenancyrouter: Config fields must not be negative")
	case c.MaxConnsPerPool > c.MaxConns:
		return nil, fmt.Errorf("tenancyrouter: MaxConnsPerPool (%d) exceeds the budget MaxConns (%d)", c.MaxConnsPerPool, c.MaxConns)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	r := &Router{cfg: c, now: clock.Now, seed: maphash.MakeSeed(), changed: make(chan struct{}),
		breakers: map[string]*breaker{}, stop: make(chan struct{}), done: make(chan struct{})}
	if c.Now != nil {
		r.now = func() int64 { return c.Now().UnixNano() }
	}
	for i := range r.shards {
		r.shards[i].m = map[string]*poolEntry{}
	}
	go r.reap()
	return r, nil
}

// Lease is the right to use a tenant's pool until Done. It is a value: taking one allocates nothing.
type Lease struct {
	e *poolEntry
	r *Router
}

// Pool returns the tenant's pool. Do not close it; call Done when finished.
func (l Lease) Pool() *pgxpool.Pool { return l.e.pool }

// SQLDB returns a database/sql handle over the tenant's pool, opened on first use and closed
// with the pool. Do not close it.
func (l Lease) SQLDB() *sql.DB {
	l.e.sqlOnce.Do(func() { l.e.sqlDB = stdlib.OpenDBFromPool(l.e.pool) })
	return l.e.sqlDB
}

// A Check is run on a tenant pool's connections before they serve its owner's units of work,
// until it passes once on that pool (Acquire, Lease.Check). It is known by its address: one
// caller's check passing never counts as another's, so a Check that always passes, given by other
// code sharing the router, cannot switch off the checks of tenancypgx (which makes its own in New:
// the login role and the binding key).
type Check struct {
	Run func(context.Context, *pgx.Conn) error
}

// once returns the pool's record of c.
func (e *poolEntry) once(c *Check) *pgsession.CheckOnce {
	if v, ok := e.checked.Load(c); ok {
		return v.(*pgsession.CheckOnce)
	}
	v, _ := e.checked.LoadOrStore(c, new(pgsession.CheckOnce))
	return v.(*pgsession.CheckOnce)
}

// Check makes the lease's pool ready for units of work: the server's janitor connected (see
// Router.Janitor) and, when check is not nil, check passed once on one of the pool's connections
// (Acquire does this itself).
func (l Lease) Check(ctx context.Context, check *Check) error {
	if check != nil {
		if once := l.e.once(check); !once.Passed() {
			conn, err := l.e.pool.Acquire(ctx)
			if err != nil {
				return err
			}
			err = once.Do(ctx, conn.Conn(), check.Run)
			conn.Release()
			if err != nil {
				return err
			}
		}
	}
	l.r.janitorFor(l.e.server).Ready(ctx)
	return nil
}

// Done ends the lease. err is the outcome of the work: a failure to connect counts toward the
// tenant's breaker, anything else (nil included) resets it.
func (l Lease) Done(err error) {
	e := l.e
	if isConnectFailure(err) {
		if int(e.failures.Add(1)) >= l.r.cfg.FailureThreshold {
			l.r.trip(e)
		}
	} else if e.failures.Load() != 0 {
		e.failures.Store(0)
	}
	if e.refs.Add(-1) == 0 {
		if e.retired.Load() {
			l.r.closeRetired(e)
		} else if l.r.waiting.Load() > 0 {
			l.r.notify()
		}
	}
}

func isConnectFailure(err error) bool {
	if err == nil {
		return false // before ce: declaring it would allocate on the hot path
	}
	var ce *pgconn.ConnectError
	return err == errSlowConnect || errors.As(err, &ce)
}

// errSlowConnect is what Acquire tells a lease when no connection came up within AcquireTimeout.
var errSlowConnect = errors.New("tenancyrouter: no connection opened in time")

func (r *Router) shard(id string) *routerShard {
	return &r.shards[maphash.String(r.seed, id)%uint64(len(r.shards))]
}

// Lease returns a lease on the pool of t, a database-model tenant, opening the pool if needed.
// It returns tenancy.ErrTenantUnavailable while t's breaker is open, tenancy.ErrCapacityExhausted
// when no room came free within AcquireTimeout, ErrUnknownServer for a server not configured.
func (r *Router) Lease(ctx context.Context, t *tenancy.Tenant) (Lease, error) {
	sh := r.shard(t.ID)
	sh.mu.RLock()
	e := sh.m[t.ID]
	if e != nil && e.placed(t) {
		e.refs.Add(1)
	}
	sh.mu.RUnlock()
	if e != nil && e.placed(t) {
		e.lastUsed.Store(r.now())
		r.hits.Add(1)
		return Lease{e, r}, nil
	}
	if e != nil {
		// The tenant moved to another server (tenancymove): the old pool serves it no more.
		r.Forget(t.ID)
	}
	return r.slowLease(ctx, t, sh)
}

func (r *Router) slowLease(ctx context.Context, t *tenancy.Tenant, sh *routerShard) (Lease, error) {
	if t.Server == "" || t.Database == "" {
		return Lease{}, fmt.Errorf("tenancyrouter: tenant %s has no database placement", t.Slug)
	}
	var timer <-chan time.Time
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return Lease{}, ErrClosed
		}
		sh.mu.RLock()
		e := sh.m[t.ID]
		stale := e != nil && !e.placed(t)
		if e != nil && !stale {
			e.refs.Add(1)
		}
		sh.mu.RUnlock()
		if stale { // the tenant moved to another server
			r.mu.Unlock()
			r.Forget(t.ID)
			continue
		}
		if e != nil { // opened by a concurrent first request
			r.mu.Unlock()
			e.lastUsed.Store(r.now())
			r.hits.Add(1)
			return Lease{e, r}, nil
		}
		if b := r.breakers[t.ID]; b != nil {
			if r.now() < b.openUntil {
				r.mu.Unlock()
				r.failFast.Add(1)
				return Lease{}, fmt.Errorf("%w: %s (breaker open)", tenancy.ErrTenantUnavailable, t.Slug)
			}
			delete(r.breakers, t.ID) // half-open: let requests try the database again
		}
		per := r.cfg.MaxConnsPerPool
		var victims []*poolEntry
		for r.pools >= r.cfg.MaxPools || r.reserved+per > r.cfg.MaxConns {
			v := r.evictLRULocked()
			if v == nil {
				break
			}
			victims = append(victims, v)
		}
		if r.pools < r.cfg.MaxPools && r.reserved+per <= r.cfg.MaxConns {
			e, err := r.openLocked(t, sh)
			r.mu.Unlock()
			closeAll(victims)
			if err != nil {
				return Lease{}, err
			}
			r.misses.Add(1)
			return Lease{e, r}, nil
		}
		// Every pool is busy: wait for a lease to end.
		ch := r.changed
		r.waiting.Add(1)
		r.mu.Unlock()
		closeAll(victims)
		if timer == nil {
			r.waits.Add(1)
			tm := time.NewTimer(r.cfg.AcquireTimeout)
			defer tm.Stop()
			timer = tm.C
		}
		select {
		case <-ch:
			r.waiting.Add(-1)
		case <-ctx.Done():
			r.waiting.Add(-1)
			return Lease{}, ctx.Err()
		case <-timer:
			r.waiting.Add(-1)
			r.capacityErrors.Add(1)
			return Lease{}, fmt.Errorf("%w (%d pools, %d of %d connections reserved, all in use)",
				tenancy.ErrCapacityExhausted, r.cfg.MaxPools, r.cfg.MaxConns, r.cfg.MaxConns)
		}
	}
}

// openLocked opens t's pool (no connection yet) and publishes it with one lease taken.
func (r *Router) openLocked(t *tenancy.Tenant, sh *routerShard) (*poolEntry, error) {
	cfg, err := r.cfg.Servers.PoolConfig(t.Server, t.Database)
	if err != nil {
		return nil, err
	}
	if r.cfg.Configure != nil {
		r.cfg.Configure(cfg)
	}
	url := r.cfg.Servers[t.Server]
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error { return r.execModeFor(ctx, t.Server, url, cc) }
	cfg.AfterConnect = pgsession.ChainAfterConnect(pgsession.RefuseRoleDefaults, cfg.AfterConnect)
	cfg.MaxConns, cfg.MinConns = int32(r.cfg.MaxConnsPerPool), 0
	cfg.MaxConnIdleTime = min(cfg.MaxConnIdleTime, r.cfg.IdleTimeout)
	cfg.ConnConfig.ConnectTimeout = r.cfg.ConnectTimeout
	cfg.HealthCheckPeriod = max(time.Second, min(cfg.HealthCheckPeriod, r.cfg.IdleTimeout))
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	e := &poolEntry{id: t.ID, server: t.Server, database: t.Database, pool: pool, reserved: r.cfg.MaxConnsPerPool}
	e.refs.Store(1)
	e.lastUsed.Store(r.now())
	sh.mu.Lock()
	sh.m[t.ID] = e
	sh.mu.Unlock()
	r.pools++
	r.reserved += e.reserved
	return e, nil
}

// execModeFor sets cc's query exec mode for the server with this alias: decided once, with a
// probe connection, by whether the server is reached through a pooler (see NewRuntimePool).
func (r *Router) execModeFor(ctx context.Context, alias, url string, cc *pgx.ConnConfig) error {
	v, _ := r.modes.LoadOrStore(alias, &execMode{})
	m := v.(*execMode)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.decided {
		probe := cc.Copy()
		if err := pgsession.PrepareRuntimeConfig(ctx, probe, url, r.cfg.Logger); err != nil {
			return err
		}
		m.mode, m.params, m.decided = probe.DefaultQueryExecMode, probe.RuntimeParams, true
	}
	cc.DefaultQueryExecMode = m.mode
	for k, v := range m.params {
		if _, set := cc.RuntimeParams[k]; !set {
			cc.RuntimeParams[k] = v // the start-up guard (see startupGuard), where the server takes it
		}
	}
	return nil
}

// evictLRULocked removes the least recently used idle pool and returns it for closing, or nil
// when every pool is in use.
func (r *Router) evictLRULocked() *poolEntry {
	var victim *poolEntry
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, e := range sh.m {
			if e.refs.Load() == 0 && (victim == nil || e.lastUsed.Load() < victim.lastUsed.Load()) {
				victim = e
			}
		}
		sh.mu.RUnlock()
	}
	if victim == nil || !r.removeIfIdleLocked(victim) {
		return nil
	}
	r.evictedLRU.Add(1)
	return victim
}

// removeIfIdleLocked takes e out of its shard if no lease holds it, releasing its reservation.
func (r *Router) removeIfIdleLocked(e *poolEntry) bool {
	sh := r.shard(e.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.refs.Load() != 0 || sh.m[e.id] != e {
		return false
	}
	delete(sh.m, e.id)
	r.pools--
	r.reserved -= e.reserved
	return true
}

func closeAll(es []*poolEntry) {
	for _, e := range es {
		e.close()
	}
}

// trip opens e's tenant's breaker and retires its pool: leases in flight finish, then it closes.
func (r *Router) trip(e *poolEntry) {
	r.mu.Lock()
	r.breakers[e.id] = &breaker{openUntil: r.now() + int64(r.cfg.OpenFor)}
	sh := r.shard(e.id)
	sh.mu.Lock()
	retire := sh.m[e.id] == e
	if retire {
		delete(sh.m, e.id)
		e.retired.Store(true)
	}
	sh.mu.Unlock()
	r.mu.Unlock()
	if retire {
		r.evictedBreaker.Add(1)
	}
}

// closeRetired closes a retired pool whose last lease ended and releases its reservation.
func (r *Router) closeRetired(e *poolEntry) {
	if !e.retired.CompareAndSwap(true, false) {
		return // closed already
	}
	e.close()
	r.mu.Lock()
	if !r.closed {
		r.pools--
		r.reserved -= e.reserved
	}
	r.mu.Unlock()
	r.notify()
}

func (r *Router) notify() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// EvictIdle closes the pools unused for IdleTimeout and returns how many. The router's reaper
// calls it periodically.
func (r *Router) EvictIdle() int {
	cutoff := r.now() - int64(r.cfg.IdleTimeout)
	r.mu.Lock()
	var victims []*poolEntry
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, e := range sh.m {
			if e.refs.Load() == 0 && e.lastUsed.Load() <= cutoff {
				victims = append(victims, e)
			}
		}
		sh.mu.RUnlock()
	}
	evicted := victims[:0]
	for _, e := range victims {
		if r.removeIfIdleLocked(e) {
			evicted = append(evicted, e)
		}
	}
	r.mu.Unlock()
	closeAll(evicted)
	r.evictedIdle.Add(uint64(len(evicted)))
	if len(evicted) > 0 {
		r.notify()
	}
	return len(evicted)
}

func (r *Router) reap() {
	defer close(r.done)
	t := time.NewTicker(max(r.cfg.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.EvictIdle()
		}
	}
}

// Forget closes t's pool (after its leases end) so the next request opens a new one: for a
// tenant whose database was moved or purged.
func (r *Router) Forget(id string) {
	r.mu.Lock()
	sh := r.shard(id)
	sh.mu.Lock()
	e := sh.m[id]
	if e != nil {
		delete(sh.m, id)
		e.retired.Store(true)
	}
	sh.mu.Unlock()
	delete(r.breakers, id)
	r.mu.Unlock()
	if e != nil && e.refs.Load() == 0 {
		r.closeRetired(e)
	}
}

// Stats is a snapshot of a Router.
type Stats struct {
	Pools          int               `json:"pools"`           // open tenant pools, draining ones included
	ReservedConns  int               `json:"reserved_conns"`  // connections reserved by open pools (≤ MaxConns)
	OpenConns      int               `json:"open_conns"`      // connections actually open in published pools
	AcquiredConns  int               `json:"acquired_conns"`  // of which in use
	Hits           uint64            `json:"hits"`            // leases on an open pool
	Misses         uint64            `json:"misses"`          // leases that opened a pool
	Waits          uint64            `json:"waits"`           // leases that waited for room
	CapacityErrors uint64            `json:"capacity_errors"` // leases refused with ErrCapacityExhausted
	FailFast       uint64            `json:"fail_fast"`       // leases refused by an open breaker
	Evictions      map[string]uint64 `json:"evictions"`       // by reason: lru, idle, breaker
	OpenBreakers   []string          `json:"open_breakers"`   // tenant IDs
}

// Stats returns counters and the current state.
func (r *Router) Stats() Stats {
	s := Stats{Hits: r.hits.Load(), Misses: r.misses.Load(), Waits: r.waits.Load(),
		CapacityErrors: r.capacityErrors.Load(), FailFast: r.failFast.Load(),
		Evictions:    map[string]uint64{"lru": r.evictedLRU.Load(), "idle": r.evictedIdle.Load(), "breaker": r.evictedBreaker.Load()},
		OpenBreakers: []string{}}
	r.mu.Lock()
	s.Pools, s.ReservedConns = r.pools, r.reserved
	now := r.now()
	for id, b := range r.breakers {
		if now < b.openUntil {
			s.OpenBreakers = append(s.OpenBreakers, id)
		}
	}
	r.mu.Unlock()
	sort.Strings(s.OpenBreakers)
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, e := range sh.m {
			st := e.pool.Stat()
			s.OpenConns += int(st.TotalConns())
			s.AcquiredConns += int(st.AcquiredConns())
		}
		sh.mu.RUnlock()
	}
	return s
}

// TenantPool is the state of one tenant's pool, for an operator's view of the tenant.
type TenantPool struct {
	Open          bool      `json:"open"`             // a pool is open for the tenant
	Server        string    `json:"server,omitempty"` // the alias of the server it is on
	MaxConns      int32     `json:"max_conns"`
	TotalConns    int32     `json:"total_conns"` // open connections
	AcquiredConns int32     `json:"acquired_conns"`
	IdleConns     int32     `json:"idle_conns"`
	LastUsed      time.Time `json:"last_used,omitzero"`
	Failures      int32     `json:"failures"`     // consecutive failures to connect
	BreakerOpen   bool      `json:"breaker_open"` // leases fail fast until the breaker closes
}

// Pool returns the state of the pool of the tenant with this ID (Open false when it has none).
func (r *Router) Pool(id string) TenantPool {
	var p TenantPool
	sh := r.shard(id)
	sh.mu.RLock()
	if e := sh.m[id]; e != nil {
		st := e.pool.Stat()
		p = TenantPool{Open: true, Server: e.server, MaxConns: st.MaxConns(), TotalConns: st.TotalConns(),
			AcquiredConns: st.AcquiredConns(), IdleConns: st.IdleConns(), LastUsed: time.Unix(0, e.lastUsed.Load()),
			Failures: e.failures.Load()}
	}
	sh.mu.RUnlock()
	r.mu.Lock()
	if b := r.breakers[id]; b != nil && r.now() < b.openUntil {
		p.BreakerOpen = true
	}
	r.mu.Unlock()
	return p
}

// Close closes every pool, waiting for connections in use to be released, and stops the reaper.
// Leases taken afterwards fail with ErrClosed.
func (r *Router) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	var all []*poolEntry
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for id, e := range sh.m {
			all = append(all, e)
			delete(sh.m, id)
		}
		sh.mu.Unlock()
	}
	close(r.stop)
	r.mu.Unlock()
	<-r.done
	var wg sync.WaitGroup
	for _, e := range all {
		wg.Add(1)
		go func() { defer wg.Done(); e.close() }()
	}
	wg.Wait()
	r.janitors.Range(func(_, j any) bool { j.(*pgsession.Janitor).Close(); return true })
	r.mu.Lock()
	r.pools, r.reserved = 0, 0
	r.mu.Unlock()
}

// Acquire leases t's pool and takes a connection from it, made ready for a unit of work: the
// server's janitor connected (see Janitor) and, when check is not nil, check passed on the pool's
// connections once (tenancypgx passes its runtime role and binding checks; see Check). release must be
// called with the outcome of the work. A failure to connect, or a connection not opened within
// AcquireTimeout, is tenancy.ErrTenantUnavailable; every connection of t's pool in use for
// AcquireTimeout is tenancy.ErrCapacityExhausted.
func (r *Router) Acquire(ctx context.Context, t *tenancy.Tenant, check *Check) (*pgxpool.Conn, func(error), error) {
	lease, err := r.Lease(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	j := r.janitorFor(t.Server)
	actx, cancel := context.WithTimeout(ctx, r.cfg.AcquireTimeout)
	conn, err := lease.Pool().Acquire(actx)
	if err != nil && pgsession.StartupRefused(err) && j.Sweep(ctx, lease.Pool().Config().ConnConfig.Database) == nil {
		// Session defaults a unit of work gave the role may stop every new connection from
		// starting (local_preload_libraries): removed, and the connection tried again.
		conn, err = lease.Pool().Acquire(actx)
	}
	cancel()
	if err != nil {
		// Out of time while a connection was being opened (ours, or one this request waited
		// for): the server is slow, the pool not full — a failure to connect, which counts
		// toward the tenant's breaker.
		slow := ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && lease.Pool().Stat().ConstructingConns() > 0
		if slow {
			err = errSlowConnect
		}
		lease.Done(err)
		switch {
		case slow:
			return nil, nil, fmt.Errorf("%w: %s: no connection could be opened within %v", tenancy.ErrTenantUnavailable, t.Slug, r.cfg.AcquireTimeout)
		case isConnectFailure(err):
			return nil, nil, fmt.Errorf("%w: %s: %v", tenancy.ErrTenantUnavailable, t.Slug, err)
		case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			r.capacityErrors.Add(1)
			return nil, nil, fmt.Errorf("%w: all %d connections of %s are in use", tenancy.ErrCapacityExhausted, r.cfg.MaxConnsPerPool, t.Slug)
		}
		return nil, nil, err
	}
	release := func(err error) { conn.Release(); lease.Done(err) }
	if check != nil {
		if err := lease.e.once(check).Do(ctx, conn.Conn(), check.Run); err != nil {
			release(nil)
			return nil, nil, err
		}
	}
	j.Ready(ctx)
	return conn, release, nil
}

// Sweeper removes the runtime role's session defaults (ALTER ROLE … SET) on one server.
type Sweeper interface {
	// Sweep removes them for all databases and for database.
	Sweep(ctx context.Context, database string) error
}

// Janitor returns the sweeper of the server alias: a connection of its own to the database
// "postgres" there (never a tenant's), as the runtime role, opened before the first unit of work,
// so that defaults which stop new connections from starting can still be removed. A unit of
// work that may have given the role defaults (its session died, it could not be reset) calls it.
func (r *Router) Janitor(alias string) Sweeper { return r.janitorFor(alias) }

// janitorFor returns the janitor of a server; a nil one (whose Sweep fails) for a server not
// configured.
func (r *Router) janitorFor(alias string) *pgsession.Janitor {
	if j, ok := r.janitors.Load(alias); ok {
		return j.(*pgsession.Janitor)
	}
	cfg, err := r.cfg.Servers.ConnConfig(alias, "postgres")
	if err != nil {
		return nil
	}
	j, _ := r.janitors.LoadOrStore(alias, pgsession.NewJanitor(cfg))
	return j.(*pgsession.Janitor)
}
