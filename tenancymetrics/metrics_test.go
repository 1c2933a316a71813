package tenancymetrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymetrics"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancytest"
)

// clock is a time the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type setup struct {
	cat      *tenancycatalog.Catalog
	lookups  *tenancycache.Lookup
	metrics  *tenancymetrics.Metrics
	registry *prometheus.Registry
	handler  http.Handler
	clock    *clock
}

// newSetup builds a catalog of tenants and the reference service's order of middlewares around a
// handler that answers 200: metrics, tenant resolution by subdomain, a rate limit (limits by
// plan: "slow" is one request a minute), then the handler.
func newSetup(t *testing.T, top int) *setup {
	t.Helper()
	_, cat := tenancytest.NewCatalog(t)
	lookups, err := tenancycache.NewLookup(cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	m, err := tenancymetrics.New(&tenancymetrics.Config{TopTenants: top, Window: time.Minute, Now: clk.Now, Lookup: lookups})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mw, err := tenancyhttp.Middleware(lookups, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("example.com")}})
	if err != nil {
		t.Fatal(err)
	}
	limiter, err := tenancyrate.NewMemoryLimiter(nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &tenancyrate.Policy{Plans: map[string]tenancyrate.Limit{"slow": {Rate: 1, Period: time.Minute, Burst: 1},
		"free": {Rate: 1000000, Period: time.Second, Burst: 1000000}}}
	rl, err := tenancyhttp.RateLimit(&tenancyhttp.RateLimitConfig{Limiter: limiter, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemNotFound, Title: "Not found", Status: 404})
			return
		}
		w.WriteHeader(200)
	})
	return &setup{cat: cat, lookups: lookups, metrics: m, registry: reg, handler: m.Middleware(mw(rl(app))), clock: clk}
}

func (s *setup) get(t *testing.T, host, path string) int {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	r.Host = host
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, r)
	return w.Code
}

// requests returns tenancy_http_requests_total by tenant and outcome.
func (s *setup) requests(t *testing.T) map[[2]string]float64 {
	t.Helper()
	families, err := s.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]float64{}
	for _, f := range families {
		if f.GetName() != "tenancy_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			out[[2]string{label(m, "tenant"), label(m, "outcome")}] = m.GetCounter().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestSeriesAreBoundedToTheBusiestTenants has 500 tenants make requests, ten of them many: with
// TopTenants 3, the series of requests name at most three tenants — the busiest — beside _other,
// and a tenant that stops being among the busiest loses its series.
func TestSeriesAreBoundedToTheBusiestTenants(t *testing.T) {
	t.Parallel()
	s := newSetup(t, 3)
	ctx := context.Background()
	var opts []tenancycatalog.CreateOpts
	for i := range 500 {
		opts = append(opts, tenancycatalog.CreateOpts{Slug: fmt.Sprintf("t%03d", i)})
	}
	if _, err := s.cat.CreateShared(ctx, opts); err != nil {
		t.Fatal(err)
	}
	window := func(heavy map[string]int) {
		for i := range 500 {
			slug := fmt.Sprintf("t%03d", i)
			for range 1 + heavy[slug] {
				if code := s.get(t, slug+".example.com", "/"); code != 200 {
					t.Fatalf("%s: %d", slug, code)
				}
			}
		}
		s.clock.advance(time.Minute)
	}
	window(map[string]int{"t001": 30, "t002": 20, "t003": 10, "t004": 5})
	window(map[string]int{"t001": 30, "t002": 20, "t003": 10, "t004": 5}) // counted under the chosen of the first
	tenants := map[string]bool{}
	for k := range s.requests(t) {
		tenants[k[0]] = true
	}
	if len(tenants) != 5 || !tenants["t001"] || !tenants["t002"] || !tenants["t003"] || !tenants[tenancymetrics.OtherTenants] ||
		!tenants[tenancymetrics.NoTenant] {
		t.Fatalf("series name the tenants %v; want the three busiest, _other and _none", tenants)
	}
	got := s.requests(t)
	if got[[2]string{"t001", "served"}] != 31 || got[[2]string{tenancymetrics.OtherTenants, "served"}] < 497 {
		t.Fatalf("requests %v; want t001's 31 of the second window under its own name and the rest under _other", got)
	}
	// t009 becomes the busiest; t003 drops out.
	window(map[string]int{"t001": 30, "t002": 20, "t009": 40})
	window(nil)
	tenants = map[string]bool{}
	for k := range s.requests(t) {
		tenants[k[0]] = true
	}
	if !tenants["t009"] || tenants["t003"] || tenants["t004"] || len(tenants) > 5 {
		t.Fatalf("after the busiest changed, series name %v; want t009 in, t003 out, at most three tenants, _other and _none", tenants)
	}
}

// TestOutcomes counts each refusal by its kind, with the tenant where one was resolved, beside
// the requests served.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	s := newSetup(t, 5)
	ctx := context.Background()
	if _, err := s.cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "slowco", Plan: "slow"}); err != nil {
		t.Fatal(err)
	}
	gone, err := s.cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cat.Suspend(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, path string
		code       int
	}{
		{"acme.example.com", "/", 200},
		{"acme.example.com", "/missing", 404},
		{"nobody.example.com", "/", 404},
		{"www.example.com", "/", 400},
		{"example.com", "/", 400},
		{"gone.example.com", "/", 403},
		{"slowco.example.com", "/", 200},
		{"slowco.example.com", "/", 429},
	} {
		if code := s.get(t, c.host, c.path); code != c.code {
			t.Fatalf("%s%s: %d, want %d", c.host, c.path, code, c.code)
		}
	}
	s.clock.advance(time.Minute) // the busiest chosen: acme, slowco and gone by name from now on
	s.get(t, "acme.example.com", "/")
	got := s.requests(t)
	for k, want := range map[[2]string]float64{
		{tenancymetrics.OtherTenants, "served"}:       2, // acme and slowco, before any was chosen
		{tenancymetrics.OtherTenants, "client_error"}: 1,
		{tenancymetrics.NoTenant, "unknown"}:          1,
		{tenancymetrics.NoTenant, "reserved"}:         1,
		{tenancymetrics.NoTenant, "no_tenant"}:        1,
		{tenancymetrics.OtherTenants, "suspended"}:    1, // refused by the resolution, but a known tenant's
		{tenancymetrics.OtherTenants, "rate_limited"}: 1,
		{"acme", "served"}:                            1,
	} {
		if got[k] != want {
			t.Errorf("%v: %v, want %v (all: %v)", k, got[k], want, got)
		}
	}
	// The lookup cache's counters, read at the scrape.
	families, err := s.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, f := range families {
		if f.GetName() == "tenancy_lookup_hits_total" {
			seen = f.GetMetric()[0].GetCounter().GetValue() > 0
		}
	}
	if !seen {
		t.Error("tenancy_lookup_hits_total is missing or zero after cached lookups")
	}
}

// registered returns Metrics with the defaults, registered in a registry of their own.
func registered(t *testing.T) (*tenancymetrics.Metrics, *prometheus.Registry) {
	t.Helper()
	m, err := tenancymetrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	return m, reg
}

// TestMiddlewareKeepsTheWritersAbilitiesAndCountsPanics: a handler behind the middleware can
// flush, and one that panics is counted as an error before the panic goes on.
func TestMiddlewareKeepsTheWritersAbilitiesAndCountsPanics(t *testing.T) {
	t.Parallel()
	m, reg := registered(t)
	flushed := false
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		f, ok := w.(http.Flusher)
		if ok {
			w.WriteHeader(200)
			f.Flush()
		}
		flushed = ok
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !flushed || !rec.Flushed {
		t.Fatalf("the handler could not flush through the middleware (%v, %v)", flushed, rec.Flushed)
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("the panic did not go on: %v", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/panic", nil))
	}()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "tenancy_http_requests_total" {
			for _, mt := range f.GetMetric() {
				got[label(mt, "outcome")] += mt.GetCounter().GetValue()
			}
		}
	}
	if got["error"] != 1 || got["served"] != 1 {
		t.Fatalf("outcomes %v; want the flushed request served and the panic an error", got)
	}
}

// Activity tells one tenant's recent requests and refusals, window by window, for the busiest
// and for the others; a tenant with no request in the last two windows has none.
func TestActivity(t *testing.T) {
	t.Parallel()
	s := newSetup(t, 1)
	ctx := context.Background()
	for _, slug := range []string{"busy", "quiet"} {
		if _, err := s.cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: slug}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		s.get(t, "busy.example.com", "/")
	}
	s.get(t, "quiet.example.com", "/")
	s.get(t, "quiet.example.com", "/missing")
	if a := s.metrics.Activity("quiet"); a.Current != 2 || a.Requests != 0 || a.Busiest || a.Refused["client_error"] != 1 {
		t.Fatalf("quiet, first window: %+v; want 2 so far, a client error", a)
	}
	s.clock.advance(time.Minute)
	s.get(t, "busy.example.com", "/") // closes the window: busy is chosen
	s.get(t, "busy.example.com", "/")
	busy, quiet := s.metrics.Activity("busy"), s.metrics.Activity("quiet")
	if busy.Requests != 5 || busy.Current != 2 || !busy.Busiest {
		t.Fatalf("busy, second window: %+v; want 5 last window, 2 so far, among the busiest", busy)
	}
	if quiet.Requests != 2 || quiet.Current != 0 || quiet.Refused["client_error"] != 1 {
		t.Fatalf("quiet, second window: %+v; want 2 last window and its client error", quiet)
	}
	if none := s.metrics.Activity("nobody"); none.Requests != 0 || none.Current != 0 || len(none.Refused) != 0 {
		t.Fatalf("a tenant never seen: %+v", none)
	}
	s.clock.advance(3 * time.Minute) // no request since: nothing recent
	if a := s.metrics.Activity("busy"); a.Requests != 0 || a.Current != 0 || len(a.Refused) != 0 {
		t.Fatalf("busy after three quiet minutes: %+v, want nothing", a)
	}
}

// With the default clock (monotonic reads, not Config.Now), a request is timed by the time it
// took: a 50 ms one lands at 50 ms or more, a quick one far below.
func TestDefaultClockTimesRequests(t *testing.T) {
	t.Parallel()
	m, reg := registered(t)
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(50 * time.Millisecond)
		}
		w.WriteHeader(200)
	}))
	timed := func() (count uint64, sum float64) {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "tenancy_http_request_duration_seconds" {
				for _, mt := range f.GetMetric() {
					count += mt.GetHistogram().GetSampleCount()
					sum += mt.GetHistogram().GetSampleSum()
				}
			}
		}
		return count, sum
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	n, quick := timed()
	if n != 1 || quick <= 0 {
		t.Fatalf("a quick request: %d timed, %v s; want one, over 0", n, quick)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/slow", nil))
	n, sum := timed()
	if slow := sum - quick; n != 2 || slow < 0.05 || slow > 10 || quick >= slow {
		t.Fatalf("a 50 ms request timed at %v s (%d timed), a quick one at %v s; want 50 ms or more, and more than the quick one", slow, n, quick)
	}
}
