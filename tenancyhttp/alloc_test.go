//go:build !race

package tenancyhttp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancyrate"
)

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// A cached hit allocates only what r.WithContext needs (the request copy and the context value);
// a refusal from the negative cache allocates nothing.
func TestMiddlewareAllocations(t *testing.T) {
	b := setup(t)
	cases := []struct {
		host   string
		allocs float64
	}{{"acme.localhost", 2}, {"ghost.localhost", 0}, {"www.localhost", 0}}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = c.host
		r.RemoteAddr = "203.0.113.7:5555"
		w := &discardWriter{h: http.Header{}}
		served := 0
		h := b.bareMiddleware(t, func() { served++ })
		h.ServeHTTP(w, r) // warm the cache
		got := testing.AllocsPerRun(200, func() { clear(w.h); h.ServeHTTP(w, r) })
		if got != c.allocs {
			t.Errorf("%s: %v allocations per request, want %v", c.host, got, c.allocs)
		}
		if (c.allocs > 0) != (served > 0) {
			t.Errorf("%s: served %d times", c.host, served)
		}
	}
}

// The rate limit and the concurrency limit behind the middleware allocate two things a request
// between them: the RateLimit header's value and the slice both headers' values share.
func TestLimitsAllocations(t *testing.T) {
	b := setup(t)
	limiter, err := tenancyrate.NewMemoryLimiter(nil)
	if err != nil {
		t.Fatal(err)
	}
	rateLimit, err := tenancyhttp.RateLimit(&tenancyhttp.RateLimitConfig{Limiter: limiter,
		Policy: &tenancyrate.Policy{Plans: map[string]tenancyrate.Limit{}, Default: tenancyrate.PerSecond(1_000_000_000)}})
	if err != nil {
		t.Fatal(err)
	}
	bulkhead, err := tenancyhttp.ConcurrencyLimit(&tenancyhttp.ConcurrencyConfig{PerTenant: 4})
	if err != nil {
		t.Fatal(err)
	}
	mw, err := tenancyhttp.Middleware(b.store, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("localhost")}})
	if err != nil {
		t.Fatal(err)
	}
	served := 0
	h := mw(rateLimit(bulkhead(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++ }))))
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "acme.localhost"
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, r) // warm the cache
	got := testing.AllocsPerRun(200, func() { clear(w.h); h.ServeHTTP(w, r) })
	if got != 2+2 { // the middleware's two (TestMiddlewareAllocations), the limits' two
		t.Errorf("%v allocations per request through the limits, want 4", got)
	}
	if served < 200 || w.h.Get("RateLimit-Policy") != `"tenant";q=1000000000;w=1` {
		t.Errorf("served %d times, RateLimit-Policy %q: want every request served, with the policy's header", served, w.h.Get("RateLimit-Policy"))
	}
}
