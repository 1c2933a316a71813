package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// benchRouter measures the pool router: the hot path (the tenant's pool is open) over 10,000
// tenants from parallel goroutines, against a port of the reference article's LazyPoolRouter (a
// map behind one lock, touched on every request); and churn, many tenants through a 50-pool cap
// with real queries, against the same port, which has no cap it can keep.
func benchRouter(ctx context.Context, e *env) ([]result, error) {
	pool, drop, err := benchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	runtimeURL, err := tenancypgx.RuntimeURL(pool.Config().ConnString()) // tenant pools log in as the runtime role
	if err != nil {
		return nil, err
	}
	servers := tenancycatalog.Servers{tenancycatalog.DefaultServer: runtimeURL}
	dbName := pool.Config().ConnConfig.Database
	tenant := func(i int) *tenancy.Tenant {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012x", i)
		// Every tenant points at the bench database: the router keeps a pool per tenant regardless.
		return &tenancy.Tenant{ID: id, Slug: fmt.Sprintf("t%d", i), Status: tenancy.StatusActive,
			Isolation: tenancy.IsolationDatabase, Server: tenancycatalog.DefaultServer, Database: dbName}
	}

	// Hot path.
	const known = 10_000
	tenants := make([]*tenancy.Tenant, known)
	for i := range tenants {
		tenants[i] = tenant(i)
	}
	r, err := tenancyrouter.New(&tenancyrouter.Config{Servers: servers, MaxPools: known, MaxConns: 2 * known})
	if err != nil {
		return nil, err
	}
	lazy := newLazyRouter(servers, known)
	for _, t := range tenants {
		l, err := r.Lease(ctx, t)
		if err != nil {
			return nil, err
		}
		l.Done(nil)
		lazy.getPool(t)
	}
	hot := func(get func(*tenancy.Tenant)) func(b *testing.B) {
		return func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(known)
				for pb.Next() {
					get(tenants[i])
					if i++; i == known {
						i = 0
					}
				}
			})
		}
	}
	ours := func(t *tenancy.Tenant) {
		l, err := r.Lease(ctx, t)
		if err != nil {
			panic(err)
		}
		l.Done(nil)
	}
	var oursNs, oursAllocs, lazyNs, lazyAllocs float64
	for range 3 {
		ns, a := measure(hot(ours))
		if oursNs == 0 || ns < oursNs {
			oursNs, oursAllocs = ns, a
		}
		ns, a = measure(hot(func(t *tenancy.Tenant) { lazy.getPool(t) }))
		if lazyNs == 0 || ns < lazyNs {
			lazyNs, lazyAllocs = ns, a
		}
	}
	r.Close()
	lazy.close()
	fmt.Fprintf(e.log, "router: hot path over %d open pools: ours %.1f ns/op (%.0f allocs), one-lock map %.1f ns/op (%.0f allocs)\n",
		known, oursNs, oursAllocs, lazyNs, lazyAllocs)

	// Churn.
	churnTenants, duration := 2000, 3*time.Second
	if e.quick {
		churnTenants, duration = 300, time.Second
	}
	churn := make([]*tenancy.Tenant, churnTenants)
	for i := range churn {
		churn[i] = tenant(known + i)
	}
	r, err = tenancyrouter.New(&tenancyrouter.Config{Servers: servers, MaxPools: 50, MaxConns: 50, MaxConnsPerPool: 1})
	if err != nil {
		return nil, err
	}
	oursChurn := runChurn(ctx, churn, duration, func(ctx context.Context, t *tenancy.Tenant) error {
		l, err := r.Lease(ctx, t)
		if err != nil {
			return err
		}
		_, err = l.Pool().Exec(ctx, "SELECT 1")
		l.Done(err)
		return err
	}, func() int { return r.Stats().Pools })
	r.Close()
	lazy = newLazyRouter(servers, 50)
	lazyChurn := runChurn(ctx, churn, duration, func(ctx context.Context, t *tenancy.Tenant) error {
		_, err := lazy.getPool(t).Exec(ctx, "SELECT 1")
		return err
	}, lazy.size)
	lazy.close()
	fmt.Fprintf(e.log, "router: churn over %d tenants, cap 50 pools: ours %.0f req/s, p99 %.2f ms, %d errors, at most %d pools; "+
		"lazy router %.0f req/s, p99 %.2f ms, %d errors, at most %d pools\n",
		churnTenants, oursChurn.rps, oursChurn.p99ms, oursChurn.errors, oursChurn.peakPools,
		lazyChurn.rps, lazyChurn.p99ms, lazyChurn.errors, lazyChurn.peakPools)

	const base = "article's LazyPoolRouter: a map behind one lock"
	return []result{
		{Scenario: "router", Metric: "hot-path", Unit: "ns/op", Ours: oursNs, Baseline: lazyNs, BaselineName: base},
		{Scenario: "router", Metric: "hot-path-allocs", Unit: "allocs/op", Ours: oursAllocs, Baseline: lazyAllocs, BaselineName: base},
		{Scenario: "router", Metric: fmt.Sprintf("churn-%d-time-per-request", churnTenants), Unit: "µs", Ours: 1e6 / oursChurn.rps,
			Baseline: 1e6 / lazyChurn.rps, BaselineName: base + fmt.Sprintf(" (%d errors, %d pools open at peak)", lazyChurn.errors, lazyChurn.peakPools)},
		{Scenario: "router", Metric: fmt.Sprintf("churn-%d-p99", churnTenants), Unit: "ms", Ours: oursChurn.p99ms,
			Baseline: lazyChurn.p99ms, BaselineName: base},
	}, nil
}

type churnResult struct {
	rps, p99ms        float64
	errors, peakPools int
}

// runChurn sends requests for random tenants from 32 goroutines for d.
func runChurn(ctx context.Context, tenants []*tenancy.Tenant, d time.Duration, do func(context.Context, *tenancy.Tenant) error, pools func() int) churnResult {
	var (
		mu    sync.Mutex
		lat   []time.Duration
		errs  atomic.Int64
		peak  atomic.Int64
		wg    sync.WaitGroup
		until = time.Now().Add(d)
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(until) {
				start := time.Now()
				if err := do(ctx, tenants[rand.IntN(len(tenants))]); err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(start))
				if p := int64(pools()); p > peak.Load() {
					peak.Store(p)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	res := churnResult{rps: float64(len(lat)) / d.Seconds(), errors: int(errs.Load()), peakPools: int(peak.Load())}
	if len(lat) > 0 {
		res.p99ms = float64(lat[len(lat)*99/100].Microseconds()) / 1000
	}
	return res
}

// lazyRouter is the reference article's LazyPoolRouter ported to Go as written: a map of pools
// with their last use, touched on every request under one lock; at capacity it evicts pools idle
// for longer than the timeout and opens the new pool whether or not that made room.
type lazyRouter struct {
	mu      sync.Mutex
	pools   map[string]lazyEntry
	max     int
	idle    time.Duration
	servers tenancycatalog.Servers
}

type lazyEntry struct {
	pool     *pgxpool.Pool
	lastUsed time.Time
}

func newLazyRouter(servers tenancycatalog.Servers, max int) *lazyRouter {
	return &lazyRouter{pools: map[string]lazyEntry{}, max: max, idle: 300 * time.Second, servers: servers}
}

func (l *lazyRouter) getPool(t *tenancy.Tenant) *pgxpool.Pool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.pools[t.ID]; ok {
		l.pools[t.ID] = lazyEntry{e.pool, time.Now()}
		return e.pool
	}
	if len(l.pools) >= l.max {
		now := time.Now()
		for id, e := range l.pools {
			if now.Sub(e.lastUsed) > l.idle {
				delete(l.pools, id)
				e.pool.Close()
			}
		}
	}
	cfg, _ := l.servers.PoolConfig(t.Server, t.Database)
	cfg.MaxConns = 1
	p, _ := pgxpool.NewWithConfig(context.Background(), cfg)
	l.pools[t.ID] = lazyEntry{p, time.Now()}
	return p
}

func (l *lazyRouter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pools)
}

func (l *lazyRouter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, e := range l.pools {
		e.pool.Close()
		delete(l.pools, id)
	}
}
