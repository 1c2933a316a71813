package tenancyhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancytest"
)

// chain puts the tenant middleware, then mws, in front of h.
func (b *bundle) chain(t *testing.T, h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	t.Helper()
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	resolve, err := tenancyhttp.Middleware(b.store, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("localhost")}})
	if err != nil {
		t.Fatal(err)
	}
	return resolve(h)
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	other, err := b.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "other"})
	if err != nil {
		t.Fatal(err)
	}
	_ = other
	clock := &tenancytest.Clock{}
	limiter, _ := tenancyrate.NewMemoryLimiter(&tenancyrate.MemoryConfig{Now: clock.Now})
	rl, err := tenancyhttp.RateLimit(&tenancyhttp.RateLimitConfig{Limiter: limiter,
		Policy: &tenancyrate.Policy{Plans: map[string]tenancyrate.Limit{"free": tenancyrate.PerMinute(3)}}})
	if err != nil {
		t.Fatal(err)
	}
	h := b.chain(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }), rl)
	get := func(host string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		w := get("acme.localhost")
		if w.Code != 204 || w.Header().Get("RateLimit-Policy") != `"tenant";q=3;w=60` ||
			!strings.HasPrefix(w.Header().Get("RateLimit"), `"tenant";r=`+string(rune('2'-i))) {
			t.Fatalf("request %d: %d %v", i, w.Code, w.Header())
		}
	}
	w := get("acme.localhost")
	if w.Code != 429 || w.Header().Get("Retry-After") != "20" {
		t.Fatalf("fourth request: %d Retry-After %q, want 429 after 20s", w.Code, w.Header().Get("Retry-After"))
	}
	checkProblem(t, w, 429, tenancyhttp.ProblemRateLimited)
	if w := get("other.localhost"); w.Code != 204 {
		t.Fatalf("another tenant was limited with acme: %d", w.Code)
	}
	// Unknown tenants never reach the limiter: they are refused by the resolver first.
	if w := get("ghost.localhost"); w.Code != 404 {
		t.Fatalf("unknown tenant: %d", w.Code)
	}
	clock.Advance(20 * time.Second)
	if w := get("acme.localhost"); w.Code != 204 {
		t.Fatalf("after Retry-After: %d", w.Code)
	}
	// A per-tenant override from the catalog takes effect on the next lookup.
	acme, _ := b.catalog.TenantBySlug(ctx, "acme")
	if _, err := b.catalog.SetRateLimit(ctx, acme.ID, "100/min"); err != nil {
		t.Fatal(err)
	}
	_ = b.store.Invalidate(context.Background(), acme.ID) // what Catalog.Watch does on the change's notification
	for i := range 10 {
		if w := get("acme.localhost"); w.Code != 204 || w.Header().Get("RateLimit-Policy") != `"tenant";q=100;w=60` {
			t.Fatalf("with the override, request %d: %d %v", i, w.Code, w.Header())
		}
	}
	if _, err := b.catalog.SetRateLimit(ctx, acme.ID, "lots"); err == nil {
		t.Fatal("an unparsable override was stored")
	}
}

func TestConcurrencyLimitKeepsOtherTenantsServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.catalog.Create(context.Background(), &tenancycatalog.CreateOpts{Slug: "quiet"}); err != nil {
		t.Fatal(err)
	}
	cl, err := tenancyhttp.ConcurrencyLimit(&tenancyhttp.ConcurrencyConfig{PerTenant: 2, MaxWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// acmeFull is closed once acme holds both its slots, acmeRefused once one of its requests is
	// turned away: together, acme's flood is in place.
	acmeFull, acmeRefused := make(chan struct{}), make(chan struct{})
	markFull, markRefused := sync.OnceFunc(func() { close(acmeFull) }), sync.OnceFunc(func() { close(acmeRefused) })
	release := make(chan struct{})
	releaseAcme := sync.OnceFunc(func() { close(release) })
	var inFlight, peak atomic.Int64
	h := b.chain(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tenancy.MustFromContext(r.Context()).Slug == "acme" {
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			if n >= 2 {
				markFull()
			}
			<-release // acme's requests are slow
			inFlight.Add(-1)
		}
		w.WriteHeader(204)
	}), cl)
	srv := httptest.NewServer(h)
	defer srv.Close() // after acme's requests have ended: Close waits for them
	do := func(host string) int {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v; want a response", host, err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// acme floods: 20 slow requests at once.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer releaseAcme() // on an early failure too, so that the flood ends and Close returns
	codes := make([]int, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if codes[i] = do("acme.localhost"); codes[i] == 503 {
				markRefused()
			}
		}()
	}
	// The quiet tenant's requests go while the flood is in place: acme holds both its slots and
	// its excess is turned away. Waiting for that rather than for a while makes the test mean the
	// same on a loaded machine, and the refusal it waits for is the one checked at the end.
	for _, c := range []struct {
		what string
		ch   <-chan struct{}
	}{{"acme to hold both its slots", acmeFull}, {"a request of acme's to be refused with 503", acmeRefused}} {
		select {
		case <-c.ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("acme's flood never got in place: waited 10s for %s", c.what)
		}
	}
	for i := range 10 {
		start := time.Now()
		if code := do("quiet.localhost"); code != 204 {
			t.Fatalf("quiet tenant request %d during acme's flood: %d, want 204", i, code)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("quiet tenant request %d took %v during acme's flood, want under 1s", i, d)
		}
	}
	releaseAcme()
	wg.Wait()
	busy := 0
	for _, c := range codes {
		if c == 503 {
			busy++
		}
	}
	if busy == 0 || peak.Load() > 2 {
		t.Fatalf("acme's flood: %d refused with 503, %d in flight at most; want refusals and at most 2", busy, peak.Load())
	}
}
