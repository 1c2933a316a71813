package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/gotenancy/tenancy/tenancyaudit"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymigrate"
)

// withHost returns r for host.
func withHost(r *http.Request, host string) *http.Request {
	r.Host = host
	return r
}

// benchCatalogScale measures what a catalog of 1,000,000 shared tenants (100,000 with -quick)
// costs the paths that must not grow with it, against the same at 1,000 tenants, in one run: the
// middleware's hit, its miss (a host no tenant has, refused with 404 from the cached refusal)
// and its cold lookup (a tenant not in the cache: a query by slug), the lookup
// cache's size under a stream of distinct tenants, the first and a deep page of the tenant list,
// the no-op migration check and the start-up audit. The ratio is the growth: 1 means the path
// does not notice the million.
func benchCatalogScale(ctx context.Context, e *env) ([]result, error) {
	big := 1_000_000
	if e.quick {
		big = 100_000
	}
	pool, drop, err := benchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		return nil, err
	}
	m, err := tenancymigrate.New(pool, &tenancymigrate.Config{Tenant: benchTenantLine})
	if err != nil {
		return nil, err
	}
	if _, err := m.Migrate(ctx, &tenancymigrate.Opts{Tenant: true}); err != nil {
		return nil, err
	}
	slug := func(i int) string { return fmt.Sprintf("t%07d", i) }
	const missHost = "nobody-here.localhost" // no tenant has this slug
	grow := func(from, to int) error {
		const batch = 50_000
		for i := from; i < to; i += batch {
			var opts []tenancycatalog.CreateOpts
			for j := i; j < min(i+batch, to); j++ {
				opts = append(opts, tenancycatalog.CreateOpts{Slug: slug(j)})
			}
			if _, err := cat.CreateShared(ctx, opts); err != nil {
				return err
			}
		}
		// Vacuumed, as a catalog that has lived with its tenants would be: the first read of a
		// freshly inserted row also writes its hint bits, which would make the cold lookups at a
		// million measure the bulk load rather than the lookup.
		_, err := pool.Exec(ctx, "VACUUM (ANALYZE) tenancy.tenants")
		return err
	}
	type figures struct {
		hit, miss, coldP50, coldP99, firstPage, deepPage, noop, audit float64
		entries                                                       int
		heapPerEntry                                                  float64
		handler                                                       http.Handler // for the hit, measured at the end
		hitHost                                                       string
	}
	measureAt := func(n int) (figures, error) {
		var f figures
		lookups, err := tenancycache.NewLookup(cat, nil)
		if err != nil {
			return f, err
		}
		mw, err := tenancyhttp.Middleware(lookups, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("localhost")}})
		if err != nil {
			return f, err
		}
		h := mw(requireTenant)
		// Cold lookups: requests for 1,000 distinct tenants spread over the whole catalog (7919 is
		// prime: i*7919 mod n never repeats below n), each the first for its tenant, so each is a
		// query by slug.
		const cold = 1000
		lat := make([]time.Duration, 0, cold)
		w := &discardWriter{h: http.Header{}}
		r, _ := http.NewRequest("GET", "/", nil)
		for i := range cold {
			r.Host = slug((i*7919)%n) + ".localhost"
			clear(w.h)
			start := time.Now()
			h.ServeHTTP(w, r)
			lat = append(lat, time.Since(start))
			if w.code != http.StatusNoContent {
				return f, fmt.Errorf("%s: %d", r.Host, w.code)
			}
		}
		slices.Sort(lat)
		f.coldP50 = float64(lat[cold/2].Microseconds())
		f.coldP99 = float64(lat[cold*99/100].Microseconds())
		f.handler, f.hitHost = h, slug(n/2)+".localhost"
		clear(w.h)
		if h.ServeHTTP(w, withHost(r, f.hitHost)); w.code != http.StatusNoContent { // now cached
			return f, fmt.Errorf("%s: %d", f.hitHost, w.code)
		}
		clear(w.h)
		if h.ServeHTTP(w, withHost(r, missHost)); w.code != http.StatusNotFound { // refused, and the refusal cached
			return f, fmt.Errorf("%s: %d, want 404", missHost, w.code)
		}
		// The cache under a stream of distinct tenants, five times its size: it keeps its bound.
		var before, after runtime.MemStats
		small, err := tenancycache.NewLookup(cat, &tenancycache.LookupConfig{Size: 2000})
		if err != nil {
			return f, err
		}
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range 10_000 {
			if _, err := small.TenantBySlug(ctx, slug((i*104729)%n)); err != nil {
				return f, err
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		f.entries = small.Stats().Entries
		f.heapPerEntry = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(max(1, f.entries))
		timed := func(fn func() error) (float64, error) { // the best of five, in ms
			best := 0.0
			for range 5 {
				start := time.Now()
				if err := fn(); err != nil {
					return 0, err
				}
				if ms := float64(time.Since(start).Microseconds()) / 1000; best == 0 || ms < best {
					best = ms
				}
			}
			return best, nil
		}
		if f.firstPage, err = timed(func() error {
			_, err := cat.List(ctx, &tenancycatalog.ListOpts{Limit: 100})
			return err
		}); err != nil {
			return f, err
		}
		if f.deepPage, err = timed(func() error {
			_, err := cat.List(ctx, &tenancycatalog.ListOpts{Limit: 100, After: slug(n * 9 / 10)})
			return err
		}); err != nil {
			return f, err
		}
		if f.noop, err = timed(func() error {
			pending, err := m.Pending(ctx)
			if err == nil && len(pending) != 0 {
				err = fmt.Errorf("%d targets pending after migrating", len(pending))
			}
			return err
		}); err != nil {
			return f, err
		}
		f.audit, err = timed(func() error {
			_, err := tenancyaudit.Audit(ctx, cat, nil)
			return err
		})
		return f, err
	}

	fmt.Fprintf(e.log, "catalog-scale: 1,000 tenants\n")
	if err := grow(0, 1000); err != nil {
		return nil, err
	}
	small, err := measureAt(1000)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := grow(1000, big); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.log, "catalog-scale: %d tenants (made in %.1f s with CreateShared)\n", big, time.Since(start).Seconds())
	large, err := measureAt(big)
	if err != nil {
		return nil, err
	}
	// The hit and the miss alternate between the two sizes' middlewares, in the same process
	// state, best of three rounds each.
	for range 3 {
		for _, f := range []*figures{&small, &large} {
			if ns, _ := measure(serveLoop(f.handler, f.hitHost)); f.hit == 0 || ns < f.hit {
				f.hit = ns
			}
			if ns, _ := measure(serveLoop(f.handler, missHost)); f.miss == 0 || ns < f.miss {
				f.miss = ns
			}
		}
	}
	fmt.Fprintf(e.log, "catalog-scale: lookup cache of 2,000 after 10,000 distinct tenants: %d entries at 1k, %d at %d (%.0f and %.0f heap bytes an entry)\n",
		small.entries, large.entries, big, small.heapPerEntry, large.heapPerEntry)
	at := fmt.Sprintf("at 1,000 tenants (ours: at %d)", big)
	return []result{
		{Scenario: "catalog-scale", Metric: "middleware-hit", Unit: "ns/op", Ours: large.hit, Baseline: small.hit, BaselineName: at},
		{Scenario: "catalog-scale", Metric: "middleware-miss", Unit: "ns/op", Ours: large.miss, Baseline: small.miss, BaselineName: at},
		{Scenario: "catalog-scale", Metric: "cold-lookup-p50", Unit: "µs", Ours: large.coldP50, Baseline: small.coldP50, BaselineName: at},
		{Scenario: "catalog-scale", Metric: "cold-lookup-p99", Unit: "µs", Ours: large.coldP99, Baseline: small.coldP99, BaselineName: at},
		{Scenario: "catalog-scale", Metric: "cache-entries", Unit: "entries", Ours: float64(large.entries), Baseline: 2000,
			BaselineName: fmt.Sprintf("the lookup cache's configured bound (Size), after 10,000 distinct tenants of %d", big)},
		{Scenario: "catalog-scale", Metric: "list-first-page", Unit: "ms", Ours: large.firstPage, Baseline: small.firstPage, BaselineName: at},
		{Scenario: "catalog-scale", Metric: "list-deep-page", Unit: "ms", Ours: large.deepPage, Baseline: small.deepPage, BaselineName: at},
		{Scenario: "catalog-scale", Metric: "migrate-noop", Unit: "ms", Ours: large.noop, Baseline: small.noop, BaselineName: at},
		{Scenario: "catalog-scale", Metric: "startup-audit", Unit: "ms", Ours: large.audit, Baseline: small.audit, BaselineName: at},
	}, nil
}
