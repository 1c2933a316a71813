package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymetrics"
	"github.com/gotenancy/tenancy/tenancyrate"
)

// benchMiddleware measures tenant resolution per request: ours (in-process cache with push
// invalidation) against the reference article's TenantMiddleware, which asks Redis on every
// request and the database on every Redis miss, and against a bare handler.
func benchMiddleware(ctx context.Context, e *env) ([]result, error) {
	pool, drop, err := benchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	rdb, err := benchRedis(ctx)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	prefix := uniqueName("tenancy-bench") + ":tenant:"
	defer func() {
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	}()

	cat, _ := tenancycatalog.NewCatalog(pool, nil)
	acme, err := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme", Name: "Acme"})
	if err != nil {
		return nil, err
	}
	cache, _ := tenancycache.NewLookup(cat, nil)
	mw, err := tenancyhttp.Middleware(cache, &tenancyhttp.Config{
		Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("localhost"), tenancyhttp.FromDomain()},
	})
	if err != nil {
		return nil, err
	}
	app := requireTenant
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	// floor is the least any middleware that puts a tenant in the request context must do: one
	// r.WithContext (a copy of the request) and one context value.
	known := &tenancy.Tenant{ID: "00000000-0000-4000-8000-000000000000", Slug: "acme", Status: tenancy.StatusActive}
	floor := withContextOnly{tenant: known, next: app}
	ours := mw(app)
	// The same with the metrics middleware outside it: requests counted by tenant and outcome,
	// timed by tenant (tenancymetrics).
	// A short window, so acme is among the busiest (its own series) once the warm-up ends, as a
	// busy tenant is.
	metrics, err := tenancymetrics.New(&tenancymetrics.Config{Window: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	oursMetered := metrics.Middleware(ours)
	// The stack serve puts in front of its routes: resolution, the tenant's rate limit (in memory,
	// a limit never reached) and its concurrency limit; and the same under the metrics.
	limiter, err := tenancyrate.NewMemoryLimiter(nil)
	if err != nil {
		return nil, err
	}
	rateLimit, err := tenancyhttp.RateLimit(&tenancyhttp.RateLimitConfig{Limiter: limiter,
		Policy: &tenancyrate.Policy{Plans: map[string]tenancyrate.Limit{"free": tenancyrate.PerSecond(1_000_000_000)}}})
	if err != nil {
		return nil, err
	}
	bulkhead, err := tenancyhttp.ConcurrencyLimit(&tenancyhttp.ConcurrencyConfig{PerTenant: 32})
	if err != nil {
		return nil, err
	}
	stack := mw(rateLimit(bulkhead(app)))
	stackMetered := metrics.Middleware(stack)
	for _, h := range []http.Handler{oursMetered, stackMetered} {
		serveOnce(h, "acme.localhost")
	}
	time.Sleep(150 * time.Millisecond)
	serveOnce(oursMetered, "acme.localhost") // the window ends: acme is chosen
	// The article's middleware reads a tenants table of its own (the article's schema), holding
	// the same tenant.
	if _, err := pool.Exec(ctx, `CREATE TABLE public.article_tenants AS SELECT * FROM (VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::timestamptz, $8::timestamptz))
		t (id, slug, name, plan, status, isolation, created_at, updated_at)`, acme.ID, acme.Slug, acme.Name, acme.Plan, string(acme.Status), string(acme.Isolation), acme.CreatedAt, acme.UpdatedAt); err != nil {
		return nil, err
	}
	article := &articleMiddleware{pool: pool, rdb: rdb, prefix: prefix, next: app}

	// Each handler must give the right answer before it is timed.
	for name, h := range map[string]http.Handler{"ours": ours, "article": article, "stack": stack, "stack with metrics": stackMetered} {
		if code := serveOnce(h, "acme.localhost"); code != http.StatusNoContent {
			return nil, fmt.Errorf("%s: acme.localhost answered %d", name, code)
		}
		if code := serveOnce(h, "ghost.localhost"); code != http.StatusNotFound {
			return nil, fmt.Errorf("%s: ghost.localhost answered %d", name, code)
		}
	}

	// The nanosecond figures are the best of a few alternating rounds: a GC cycle or a neighbour
	// on this shared machine lands in one round, not in all.
	rounds := 3
	if e.quick {
		rounds = 1
	}
	var bareNs, floorNs, floorAllocs, oursHit, oursHitAllocs, oursUnknown, oursUnknownAllocs, metered, meteredAllocs, stackNs, stackMeteredNs float64
	keep := func(best *float64, ns float64) {
		if *best == 0 || ns < *best {
			*best = ns
		}
	}
	for range rounds {
		ns, _ := measure(serveLoop(bare, "acme.localhost"))
		keep(&bareNs, ns)
		ns, floorAllocs = measure(serveLoop(floor, "acme.localhost"))
		keep(&floorNs, ns)
		ns, oursHitAllocs = measure(serveLoop(ours, "acme.localhost"))
		keep(&oursHit, ns)
		ns, oursUnknownAllocs = measure(serveLoop(ours, "ghost.localhost"))
		keep(&oursUnknown, ns)
		ns, meteredAllocs = measure(serveLoop(oursMetered, "acme.localhost"))
		keep(&metered, ns)
		ns, _ = measure(serveLoop(stack, "acme.localhost"))
		keep(&stackNs, ns)
		ns, _ = measure(serveLoop(stackMetered, "acme.localhost"))
		keep(&stackMeteredNs, ns)
	}
	// The metrics' cost is a small difference between two large figures that drift on this VM by
	// more than it: it is measured in short slices that alternate between the handler with metrics
	// and without, and the median slice of each is kept.
	sliceCount := 41
	if e.quick {
		sliceCount = 9
	}
	hitWith, hitWithout := alternate(oursMetered, ours, "acme.localhost", sliceCount)
	stackWith, stackWithout := alternate(stackMetered, stack, "acme.localhost", sliceCount)
	nowNs, monoNs := clockNs()
	artHit, artHitAllocs := measure(serveLoop(article, "acme.localhost"))
	artUnknown, artUnknownAllocs := measure(serveLoop(article, "ghost.localhost"))
	fmt.Fprintf(e.log, "middleware: bare handler %.1f ns/op; r.WithContext with a tenant %.1f ns (%.0f allocs); "+
		"ours on a hit %.1f ns (%.0f allocs), on an unknown host %.1f ns (%.0f allocs); with metrics on a hit %.1f ns (%.0f allocs); "+
		"serve's stack (resolution, rate limit, concurrency limit) %.1f ns, with metrics %.1f ns; a clock read: time.Now %.1f ns, monotonic %.1f ns\n",
		bareNs, floorNs, floorAllocs, oursHit, oursHitAllocs, oursUnknown, oursUnknownAllocs, metered, meteredAllocs, stackNs, stackMeteredNs, nowNs, monoNs)

	const base = "article: Redis GET per request, DB on miss"
	return []result{
		{Scenario: "middleware", Metric: "hit", Unit: "ns/op", Ours: oursHit, Baseline: artHit, BaselineName: base},
		{Scenario: "middleware", Metric: "hit-beyond-withcontext", Unit: "ns/op", Ours: oursHit - floorNs, Baseline: artHit - floorNs,
			BaselineName: base + "; both minus r.WithContext with a tenant"},
		{Scenario: "middleware", Metric: "hit-allocs", Unit: "allocs/op", Ours: oursHitAllocs, Baseline: artHitAllocs, BaselineName: base},
		{Scenario: "middleware", Metric: "unknown-host", Unit: "ns/op", Ours: oursUnknown, Baseline: artUnknown, BaselineName: base},
		{Scenario: "middleware", Metric: "unknown-host-allocs", Unit: "allocs/op", Ours: oursUnknownAllocs, Baseline: artUnknownAllocs, BaselineName: base},
		{Scenario: "middleware", Metric: "hit-with-metrics", Unit: "ns/op", Ours: hitWith, Baseline: hitWithout,
			BaselineName: "ours without the metrics middleware; medians of alternating slices"},
		{Scenario: "middleware", Metric: "stack-with-metrics", Unit: "ns/op", Ours: stackWith, Baseline: stackWithout,
			BaselineName: "serve's stack (resolution, rate limit, concurrency limit) without the metrics middleware; medians of alternating slices"},
	}, nil
}

// alternate times a and b serving host in n slices of 100,000 requests each, a then b, and
// returns the median nanoseconds per request of each.
func alternate(a, b http.Handler, host string, n int) (aNs, bNs float64) {
	const per = 100_000
	r := httptest.NewRequest("GET", "/whoami", nil)
	r.Host = host
	w := &discardWriter{h: http.Header{}}
	slice := func(h http.Handler) float64 {
		began := time.Now()
		for range per {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
		return float64(time.Since(began).Nanoseconds()) / per
	}
	var as, bs []float64
	for range n {
		as = append(as, slice(a))
		bs = append(bs, slice(b))
	}
	slices.Sort(as)
	slices.Sort(bs)
	return as[n/2], bs[n/2]
}

// clockNs is the cost of one time.Now and of one monotonic read (time.Since a time that has one)
// on this machine: the metrics middleware reads the monotonic clock twice a request, to time it.
func clockNs() (now, monotonic float64) {
	now, _ = measure(func(b *testing.B) {
		for range b.N {
			_ = time.Now()
		}
	})
	start := time.Now()
	monotonic, _ = measure(func(b *testing.B) {
		for range b.N {
			_ = time.Since(start)
		}
	})
	return now, monotonic
}

// withContextOnly puts a fixed tenant in the request context and calls next: the floor cost.
// requireTenant is the application behind the middleware in the benchmarks: 204 with a tenant in
// the request's context, 500 without.
var requireTenant = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, ok := tenancy.FromContext(r.Context()); !ok {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
})

type withContextOnly struct {
	tenant *tenancy.Tenant
	next   http.Handler
}

func (f withContextOnly) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.next.ServeHTTP(w, r.WithContext(tenancy.WithTenant(r.Context(), f.tenant)))
}

// discardWriter is a ResponseWriter that keeps only the status, so the loop measures the handler.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

func serveOnce(h http.Handler, host string) int {
	r := httptest.NewRequest("GET", "/whoami", nil)
	r.Host = host
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, r)
	return w.code
}

func serveLoop(h http.Handler, host string) func(b *testing.B) {
	return func(b *testing.B) {
		r := httptest.NewRequest("GET", "/whoami", nil)
		r.Host = host
		w := &discardWriter{h: http.Header{}}
		b.ResetTimer()
		for range b.N {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	}
}

// articleMiddleware is the reference article's TenantMiddleware and resolve_tenant, ported to Go
// as written: the first label of the host is the subdomain, three names are reserved, the tenant
// is read from Redis as JSON on every request, and on a Redis miss from the database (active
// tenants only), then stored in Redis for 300 seconds. Unknown names are never cached.
type articleMiddleware struct {
	pool   *pgxpool.Pool
	rdb    *redis.Client
	prefix string
	next   http.Handler
}

func (a *articleMiddleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	var sub string
	if strings.Contains(host, ".") {
		sub = strings.Split(host, ".")[0]
	}
	if sub == "" || sub == "www" || sub == "api" || sub == "app" {
		http.Error(w, "Tenant not identified", http.StatusBadRequest)
		return
	}
	t, err := a.resolve(r.Context(), sub)
	if err != nil {
		http.Error(w, "error", http.StatusInternalServerError)
		return
	}
	if t == nil {
		http.Error(w, "Unknown tenant", http.StatusNotFound)
		return
	}
	a.next.ServeHTTP(w, r.WithContext(tenancy.WithTenant(r.Context(), t)))
}

func (a *articleMiddleware) resolve(ctx context.Context, sub string) (*tenancy.Tenant, error) {
	key := a.prefix + sub
	cached, err := a.rdb.Get(ctx, key).Bytes()
	if err == nil {
		var t tenancy.Tenant
		if err := json.Unmarshal(cached, &t); err != nil {
			return nil, err
		}
		return &t, nil
	}
	if !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var t tenancy.Tenant
	err = a.pool.QueryRow(ctx, `SELECT id, slug, name, plan, status, isolation, created_at, updated_at
		FROM public.article_tenants WHERE slug = $1 AND status = 'active'`, sub).
		Scan(&t.ID, &t.Slug, &t.Name, &t.Plan, &t.Status, &t.Isolation, &t.CreatedAt, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(&t)
	if err := a.rdb.Set(ctx, key, b, 300*time.Second).Err(); err != nil {
		return nil, err
	}
	return &t, nil
}
