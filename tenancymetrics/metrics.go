package tenancymetrics

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// Tenant label values that are no tenant's slug (a slug never starts with an underscore).
const (
	// OtherTenants labels the requests of every tenant that is not among the busiest.
	OtherTenants = "_other"
	// NoTenant labels the requests refused before a tenant was resolved.
	NoTenant = "_none"
)

// Config configures Metrics. A nil *Config means the defaults.
type Config struct {
	// TopTenants is how many tenants have series of their own: the busiest of the last window.
	// Every other tenant's requests count under tenant="_other", so a million tenants never make
	// a million series. Defaults to 20.
	TopTenants int
	// Window is how often the busiest tenants are chosen again, from the window before's
	// requests. Defaults to a minute.
	Window time.Duration
	// Buckets are the request latency histogram's, in seconds. Defaults to
	// prometheus.DefBuckets.
	Buckets []float64
	// Lookup, Router, Cache, Limiter and SecondLevel are components whose statistics are exported
	// at each scrape. Each defaults to nil: not exported.
	Lookup      *tenancycache.Lookup
	Router      *tenancyrouter.Router
	Cache       *tenancycache.Cache
	Limiter     *tenancyredis.Limiter
	SecondLevel *tenancyredis.CatalogStore
	// Jobs, when set, reads the background jobs' counts at each scrape (from tenancyriver's
	// Jobs.Stats and Outbox.Stats; a function, so a service without jobs does not build River).
	Jobs func() JobCounts
	// Catalog, when set, is counted by tenant status and isolation, and Migrator's tenant line
	// by target state, at a scrape at most every CatalogEvery (each is a query of the whole
	// catalog). Each defaults to nil: not exported.
	Catalog  *tenancycatalog.Catalog
	Migrator *tenancymigrate.Migrator
	// CatalogEvery bounds how often the catalog is counted. Defaults to 30s.
	CatalogEvery time.Duration
	// Now returns the current time. Defaults to the monotonic clock: the time taken at New plus
	// time.Since it, which reads the clock once where time.Now reads it twice (a request is timed
	// with two reads; on a virtual machine each time.Now is about 60 ns).
	Now func() time.Time
}

// JobCounts are the counts of background jobs Config.Jobs reports: tenancyriver's Stats (what
// the tenant middleware did) and OutboxStats.
type JobCounts struct {
	Inserted, Demoted, Ran, Busy, RateLimited, Suspended, Cancelled, Discarded, Unavailable uint64
	OutboxMoved, OutboxRefused                                                              uint64
}

// Metrics is a prometheus.Collector of the toolkit's statistics, and the HTTP middleware that
// counts requests by tenant and outcome.
type Metrics struct {
	// mu orders a rotation of the busiest tenants, which removes series, with the requests that
	// count in them: a count never recreates a series just removed.
	mu       sync.RWMutex
	cfg      Config
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	top      *busiest
	descs    map[string]*prometheus.Desc
	// series of the busiest tenants, made when they are chosen, and of _other and _none: a request
	// served counts without a label lookup.
	series      atomic.Pointer[map[string]*series]
	other, none *series
	observers   sync.Pool
	counted     catalogCounts // the last count of the catalog (Config.Catalog, Migrator)
	// epoch is when New ran, by Config.Now when it is set; every time here is an offset from it
	// (since).
	epoch   time.Time
	fakeNow bool
}

// since returns the time elapsed since m.epoch: one monotonic clock read (time.Since of a time
// with a monotonic reading), or Config.Now's.
func (m *Metrics) since() time.Duration {
	if m.fakeNow {
		return m.cfg.Now().Sub(m.epoch)
	}
	return time.Since(m.epoch)
}

// now returns the current time on m's clock.
func (m *Metrics) now() time.Time { return m.epoch.Add(m.since()) }

// series are a tenant label's counter of requests served and latency histogram.
type series struct {
	served   prometheus.Counter
	duration prometheus.Observer
	requests atomic.Uint64 // a chosen tenant's requests this window, folded into the choice at its end
}

func (m *Metrics) seriesOf(tenant string) *series {
	return &series{served: m.requests.WithLabelValues(tenant, "served"), duration: m.duration.WithLabelValues(tenant)}
}

var _ prometheus.Collector = (*Metrics)(nil)

// New returns Metrics; register it (prometheus.MustRegister) and wrap the handler in
// Middleware, outside tenancyhttp's middlewares.
func New(cfg *Config) (*Metrics, error) {
	m := &Metrics{}
	if cfg != nil {
		m.cfg = *cfg
	}
	if m.cfg.TopTenants < 0 || m.cfg.Window < 0 {
		return nil, errors.New("tenancymetrics: TopTenants and Window must not be negative")
	}
	if m.cfg.TopTenants == 0 {
		m.cfg.TopTenants = 20
	}
	if m.cfg.Window == 0 {
		m.cfg.Window = time.Minute
	}
	if m.cfg.Buckets == nil {
		m.cfg.Buckets = prometheus.DefBuckets
	}
	m.fakeNow = m.cfg.Now != nil
	if m.fakeNow {
		m.epoch = m.cfg.Now()
	} else {
		m.epoch = time.Now()
	}
	if m.cfg.CatalogEvery <= 0 {
		m.cfg.CatalogEvery = 30 * time.Second
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tenancy", Subsystem: "http", Name: "requests_total",
		Help: "Requests by tenant (the busiest tenants' slugs, _other, _none) and outcome (served, or why refused)."},
		[]string{"tenant", "outcome"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "tenancy", Subsystem: "http", Name: "request_duration_seconds",
		Help: "Request latency by tenant (the busiest tenants' slugs, _other, _none).", Buckets: m.cfg.Buckets},
		[]string{"tenant"})
	m.top = newBusiest(m.cfg.TopTenants, m.cfg.Window, 0, func(chosen, left []string) {
		for _, t := range left {
			m.requests.DeletePartialMatch(prometheus.Labels{"tenant": t})
			m.duration.DeletePartialMatch(prometheus.Labels{"tenant": t})
		}
		byTenant := make(map[string]*series, len(chosen))
		for _, t := range chosen {
			byTenant[t] = m.seriesOf(t)
		}
		m.series.Store(&byTenant)
	})
	m.series.Store(&map[string]*series{})
	m.other, m.none = m.seriesOf(OtherTenants), m.seriesOf(NoTenant)
	m.observers.New = func() any { return new(observed) }
	m.descs = map[string]*prometheus.Desc{}
	for name, help := range componentHelp {
		m.descs[name] = prometheus.NewDesc(name, help.text, help.labels, nil)
	}
	return m, nil
}

// outcomes maps the problem types of refusals to the outcome label.
var outcomes = map[string]string{
	tenancyhttp.ProblemNoTenant:          "no_tenant",
	tenancyhttp.ProblemReservedTenant:    "reserved",
	tenancyhttp.ProblemUnknownTenant:     "unknown",
	tenancyhttp.ProblemTenantSuspended:   "suspended",
	tenancyhttp.ProblemTenantNotReady:    "not_ready",
	tenancyhttp.ProblemRateLimited:       "rate_limited",
	tenancyhttp.ProblemTenantBusy:        "busy",
	tenancyhttp.ProblemTenantUnavailable: "unavailable",
	tenancyhttp.ProblemCapacity:          "unavailable",
	tenancyhttp.ProblemUnavailable:       "unavailable",
	tenancyhttp.ProblemTenantMoving:      "moving",
}

// observed is the response writer Middleware hands on: tenancyhttp tells it the request's tenant
// and problem (tenancyhttp.Observer).
type observed struct {
	http.ResponseWriter
	tenant  *tenancy.Tenant
	problem string
	status  int
}

func (o *observed) ObserveTenant(t *tenancy.Tenant) { o.tenant = t }
func (o *observed) ObserveProblem(typ string)       { o.problem = typ }
func (o *observed) WriteHeader(code int) {
	if o.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) { // not an informational 1xx
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}
func (o *observed) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// Flush and Hijack reach the writer underneath (streaming, WebSockets); http.NewResponseController
// reaches it through Unwrap.
func (o *observed) Flush() { _ = http.NewResponseController(o.ResponseWriter).Flush() }
func (o *observed) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(o.ResponseWriter).Hijack()
}

var _ tenancyhttp.Observer = (*observed)(nil)

// Middleware counts each request by tenant and outcome and times it. Wrap it outside
// tenancyhttp.Middleware and the rate and concurrency limits, so it sees their refusals.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := m.since()
		o := m.observers.Get().(*observed)
		*o = observed{ResponseWriter: w}
		defer func() {
			p := recover()
			if p != nil && o.status == 0 {
				o.status = http.StatusInternalServerError // net/http answers a panic so, or drops the connection
			}
			m.record(o, began)
			*o = observed{}
			m.observers.Put(o)
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(o, r)
	})
}

// record counts and times the request o observed, which began at began (since).
func (m *Metrics) record(o *observed, began time.Duration) {
	{
		now := m.since()
		if m.top.due(now) {
			m.mu.Lock()
			for slug, s := range *m.series.Load() { // the chosen tenants' requests, counted apart
				m.top.add(slug, s.requests.Swap(0))
			}
			m.top.rotate(now)
			m.mu.Unlock()
		}
		m.mu.RLock()
		tenant, s := NoTenant, m.none
		if o.tenant != nil {
			if s = (*m.series.Load())[o.tenant.Slug]; s != nil {
				tenant = o.tenant.Slug
				s.requests.Add(1) // no lock for the busiest
			} else {
				tenant, s = OtherTenants, m.other
				m.top.add(o.tenant.Slug, 1)
			}
		}
		outcome := ""
		switch {
		case o.problem != "" && outcomes[o.problem] != "":
			outcome = outcomes[o.problem]
		case o.status >= 500:
			outcome = "error"
		case o.status >= 400:
			outcome = "client_error"
		default:
			s.served.Inc()
		}
		if outcome != "" {
			m.requests.WithLabelValues(tenant, outcome).Inc()
			if o.tenant != nil {
				m.top.refuse(o.tenant.Slug, outcome)
			}
		}
		s.duration.Observe((now - began).Seconds())
		m.mu.RUnlock()
	}
}

// busiest chooses, once a window, the busiest tenants of the window before, counting with the
// space-saving algorithm: at most 10 counters per tenant chosen (100 at least), the least counted
// replaced by a tenant not counted yet, so memory stays bounded whatever the number of tenants.
type busiest struct {
	mu      sync.Mutex
	n, max  int
	window  time.Duration
	ends    atomic.Int64 // the window's end, in nanoseconds since the Metrics' epoch (since)
	counts  map[string]uint64
	chosen  map[string]bool
	changed func(chosen, left []string)
	// last is the window before's counts; refused and refusedLast count refusals by tenant and
	// outcome this window and the one before, for at most max tenants each (Metrics.Activity).
	last                 map[string]uint64
	refused, refusedLast map[string]map[string]uint64
}

// Times are durations since the Metrics' epoch (Metrics.since).
func newBusiest(n int, window time.Duration, now time.Duration, changed func(chosen, left []string)) *busiest {
	b := &busiest{n: n, max: max(10*n, 100), window: window, counts: map[string]uint64{}, chosen: map[string]bool{}, changed: changed,
		refused: map[string]map[string]uint64{}}
	b.ends.Store(int64(now + window))
	return b
}

// due reports whether the window has ended at now.
func (b *busiest) due(now time.Duration) bool { return int64(now) >= b.ends.Load() }

// add counts n requests of tenant slug.
func (b *busiest) add(slug string, n uint64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	if c, ok := b.counts[slug]; ok {
		b.counts[slug] = c + n
	} else if len(b.counts) < b.max {
		b.counts[slug] = n
	} else {
		least, min := "", uint64(0)
		for s, c := range b.counts {
			if least == "" || c < min {
				least, min = s, c
			}
		}
		delete(b.counts, least)
		b.counts[slug] = min + n
	}
	b.mu.Unlock()
}

// rotate chooses, when the window has ended, the busiest tenants of that window and starts a new
// one; the series of tenants no longer chosen are removed.
func (b *busiest) rotate(now time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.due(now) { // rotated meanwhile
		return
	}
	type tc struct {
		slug  string
		count uint64
	}
	all := make([]tc, 0, len(b.counts))
	for s, c := range b.counts {
		all = append(all, tc{s, c})
	}
	slices.SortFunc(all, func(x, y tc) int {
		if x.count != y.count {
			if x.count > y.count {
				return -1
			}
			return 1
		}
		if x.slug < y.slug {
			return -1
		}
		return 1
	})
	chosen, names := map[string]bool{}, []string{}
	for _, t := range all[:min(b.n, len(all))] {
		chosen[t.slug] = true
		names = append(names, t.slug)
	}
	var left []string
	for s := range b.chosen {
		if !chosen[s] {
			left = append(left, s)
		}
	}
	b.chosen = chosen
	b.changed(names, left)
	b.last, b.refusedLast = b.counts, b.refused
	if int64(now) >= b.ends.Load()+b.window.Nanoseconds() { // no request for a whole window: that window's counts are nothing
		b.last, b.refusedLast = nil, nil
	}
	b.counts, b.refused = map[string]uint64{}, map[string]map[string]uint64{}
	b.ends.Store(int64(now + b.window))
}

// refuse counts a refusal of tenant slug's request, by outcome.
func (b *busiest) refuse(slug, outcome string) {
	b.mu.Lock()
	byOutcome := b.refused[slug]
	if byOutcome == nil && len(b.refused) < b.max {
		byOutcome = map[string]uint64{}
		b.refused[slug] = byOutcome
	}
	if byOutcome != nil {
		byOutcome[outcome]++
	}
	b.mu.Unlock()
}

// Activity is a tenant's recent requests, for an operator's view of one tenant (Metrics.Activity).
type Activity struct {
	// Window is the length of a window (Config.Window).
	Window time.Duration `json:"window"`
	// Requests are the tenant's requests in the last whole window, Current those of the window
	// under way. Exact for the busiest tenants; for the others an upper bound (the space-saving
	// count may credit a tenant with requests of tenants it replaced), and 0 for a tenant that
	// was not among those counted.
	Requests uint64 `json:"requests"`
	Current  uint64 `json:"current"`
	// Busiest reports whether the tenant is among the busiest: it has series of its own.
	Busiest bool `json:"busiest"`
	// Refused counts, by outcome (rate_limited, suspended, ..., client_error, error), the
	// tenant's requests refused or failed in the last whole window and the one under way.
	Refused map[string]uint64 `json:"refused"`
}

// Activity returns the recent requests of the tenant with this slug.
func (m *Metrics) Activity(slug string) Activity {
	now := int64(m.since())
	a := Activity{Window: m.cfg.Window, Refused: map[string]uint64{}}
	m.mu.RLock()
	current := uint64(0)
	if s := (*m.series.Load())[slug]; s != nil {
		a.Busiest, current = true, s.requests.Load()
	}
	b := m.top
	b.mu.Lock()
	current += b.counts[slug]
	last, refusedLast := b.last[slug], b.refusedLast[slug]
	ends := b.ends.Load()
	for outcome, n := range b.refused[slug] {
		a.Refused[outcome] += n
	}
	b.mu.Unlock()
	m.mu.RUnlock()
	switch {
	case now >= ends+m.cfg.Window.Nanoseconds(): // nothing since a whole window
	case now >= ends: // the window under way ended without a request to close it
		a.Requests = current
	default:
		a.Requests, a.Current = last, current
		for outcome, n := range refusedLast {
			a.Refused[outcome] += n
		}
	}
	if now >= ends+m.cfg.Window.Nanoseconds() {
		clear(a.Refused)
	}
	return a
}
