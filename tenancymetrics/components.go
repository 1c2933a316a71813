package tenancymetrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
)

type help struct {
	text   string
	labels []string
}

// componentHelp describes the metrics read from the components' statistics at each scrape.
var componentHelp = map[string]help{
	"tenancy_lookup_hits_total":   {"Tenant lookups answered from the lookup cache's memory.", nil},
	"tenancy_lookup_misses_total": {"Tenant lookups the lookup cache did not hold.", nil},
	"tenancy_lookup_loads_total":  {"Queries the lookup cache sent to its source (misses that did not join a load in flight).", nil},
	"tenancy_lookup_entries":      {"Entries the lookup cache holds.", nil},

	"tenancy_router_pools":           {"Open pools of database tenants, draining ones included.", nil},
	"tenancy_router_connections":     {"Connections of the pool router by state: reserved (by open pools), open, acquired.", []string{"state"}},
	"tenancy_router_leases_total":    {"Leases of tenant pools by result: hit (an open pool), miss (opened one), wait (waited for room), capacity (refused: no room), breaker (refused: the tenant's breaker is open).", []string{"result"}},
	"tenancy_router_evictions_total": {"Pools closed by reason: lru, idle, breaker.", []string{"reason"}},
	"tenancy_router_open_breakers":   {"Tenants whose database's breaker is open.", nil},

	"tenancy_cache_loads_total":       {"Loader calls of the tenant-scoped cache (one for concurrent misses of a key).", nil},
	"tenancy_cache_read_errors_total": {"Cache reads that failed and were served as misses.", nil},
	"tenancy_cache_waiting":           {"Callers waiting on a cache load now.", nil},

	"tenancy_ratelimit_redis_failures_total": {"Rate-limit round trips to Redis that failed or timed out.", nil},
	"tenancy_ratelimit_fallbacks_total":      {"Rate-limit decisions taken by the failure policy instead of Redis.", nil},

	"tenancy_catalog_second_level_bypassed_total":       {"Tenant lookups that went to the catalog while the Redis second level could not be trusted.", nil},
	"tenancy_catalog_second_level_purge_failures_total": {"Drops of the Redis second level that failed (retried).", nil},
	"tenancy_catalog_second_level_stale":                {"1 while the Redis second level is bypassed (a drop has not succeeded yet).", nil},

	"tenancy_jobs_inserted_total": {"Jobs inserted with a tenant (tenancyriver), and of those, demoted: inserted at the lowest priority as part of their tenant's flood.", []string{"priority"}},
	"tenancy_jobs_total":          {"Jobs by what the tenant middleware did: ran, busy (snoozed: the tenant's running limit), rate_limited (snoozed), suspended (snoozed), cancelled (tenant deleted), discarded (tenant unknown or missing), unavailable (catalog error, retried).", []string{"outcome"}},
	"tenancy_job_outbox_total":    {"Rows of the tenants' job outboxes by result: moved (into River), refused (kept, skipped).", []string{"result"}},

	"tenancy_tenants":                    {"Tenants by status and isolation model.", []string{"status", "isolation"}},
	"tenancy_migration_targets":          {"Targets of the tenant line (the shared schema, schema and database tenants) by state: current, pending, failed (its last run failed).", []string{"state"}},
	"tenancy_migration_latest_version":   {"The tenant line's last migration.", nil},
	"tenancy_catalog_count_errors_total": {"Counts of the catalog for these metrics that failed.", nil},
}

// catalogCounts keeps the last count of the catalog and the migration ledger.
type catalogCounts struct {
	mu       sync.Mutex
	at       time.Time
	tenants  []tenancycatalog.TenantCount
	targets  map[string]int
	errors   uint64
	counting bool
}

// refreshCounts counts the catalog when the last count is older than Config.CatalogEvery; one
// scrape counts, the others use the last count meanwhile.
func (m *Metrics) refreshCounts(now time.Time) {
	c := &m.counted
	c.mu.Lock()
	if c.counting || (!c.at.IsZero() && now.Sub(c.at) < m.cfg.CatalogEvery) {
		c.mu.Unlock()
		return
	}
	c.counting = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var tenants []tenancycatalog.TenantCount
	var targets map[string]int
	var err error
	if m.cfg.Catalog != nil {
		tenants, err = m.cfg.Catalog.Counts(ctx)
	}
	if err == nil && m.cfg.Migrator != nil {
		var st []tenancymigrate.Target
		if st, err = m.cfg.Migrator.Status(ctx); err == nil {
			targets = map[string]int{"current": 0, "pending": 0, "failed": 0}
			for _, t := range st {
				switch {
				case t.LastError != "":
					targets["failed"]++
				case t.Pending > 0:
					targets["pending"]++
				default:
					targets["current"]++
				}
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counting = false
	if err != nil {
		c.errors++
		return
	}
	c.at, c.tenants, c.targets = now, tenants, targets
}

// Describe sends the descriptions of every metric.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.duration.Describe(ch)
	for _, d := range m.descs {
		ch <- d
	}
}

// Collect sends the requests' metrics and the configured components' statistics as they are now.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.duration.Collect(ch)
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.GaugeValue, v, labels...)
	}
	if l := m.cfg.Lookup; l != nil {
		s := l.Stats()
		counter("tenancy_lookup_hits_total", s.Hits)
		counter("tenancy_lookup_misses_total", s.Misses)
		counter("tenancy_lookup_loads_total", s.Loads)
		gauge("tenancy_lookup_entries", float64(s.Entries))
	}
	if r := m.cfg.Router; r != nil {
		s := r.Stats()
		gauge("tenancy_router_pools", float64(s.Pools))
		gauge("tenancy_router_connections", float64(s.ReservedConns), "reserved")
		gauge("tenancy_router_connections", float64(s.OpenConns), "open")
		gauge("tenancy_router_connections", float64(s.AcquiredConns), "acquired")
		counter("tenancy_router_leases_total", s.Hits, "hit")
		counter("tenancy_router_leases_total", s.Misses, "miss")
		counter("tenancy_router_leases_total", s.Waits, "wait")
		counter("tenancy_router_leases_total", s.CapacityErrors, "capacity")
		counter("tenancy_router_leases_total", s.FailFast, "breaker")
		for _, reason := range []string{"lru", "idle", "breaker"} {
			counter("tenancy_router_evictions_total", s.Evictions[reason], reason)
		}
		gauge("tenancy_router_open_breakers", float64(len(s.OpenBreakers)))
	}
	if c := m.cfg.Cache; c != nil {
		s := c.Stats()
		counter("tenancy_cache_loads_total", s.Loads)
		counter("tenancy_cache_read_errors_total", s.ReadErrors)
		gauge("tenancy_cache_waiting", float64(s.Waiting))
	}
	if l := m.cfg.Limiter; l != nil {
		s := l.Stats()
		counter("tenancy_ratelimit_redis_failures_total", s.RedisFailures)
		counter("tenancy_ratelimit_fallbacks_total", s.Fallbacks)
	}
	if m.cfg.Catalog != nil || m.cfg.Migrator != nil {
		m.refreshCounts(m.now())
		c := &m.counted
		c.mu.Lock()
		for _, tc := range c.tenants {
			gauge("tenancy_tenants", float64(tc.Tenants), string(tc.Status), string(tc.Isolation))
		}
		for state, n := range c.targets {
			gauge("tenancy_migration_targets", float64(n), state)
		}
		counter("tenancy_catalog_count_errors_total", c.errors)
		c.mu.Unlock()
		if m.cfg.Migrator != nil {
			gauge("tenancy_migration_latest_version", float64(m.cfg.Migrator.Latest()))
		}
	}
	if j := m.cfg.Jobs; j != nil {
		s := j()
		counter("tenancy_job_outbox_total", s.OutboxMoved, "moved")
		counter("tenancy_job_outbox_total", s.OutboxRefused, "refused")
		counter("tenancy_jobs_inserted_total", s.Inserted-s.Demoted, "own")
		counter("tenancy_jobs_inserted_total", s.Demoted, "demoted")
		for outcome, n := range map[string]uint64{"ran": s.Ran, "busy": s.Busy, "rate_limited": s.RateLimited, "suspended": s.Suspended,
			"cancelled": s.Cancelled, "discarded": s.Discarded, "unavailable": s.Unavailable} {
			counter("tenancy_jobs_total", n, outcome)
		}
	}
	if l2 := m.cfg.SecondLevel; l2 != nil {
		s := l2.Stats()
		counter("tenancy_catalog_second_level_bypassed_total", s.Bypassed)
		counter("tenancy_catalog_second_level_purge_failures_total", s.PurgeFailures)
		stale := 0.0
		if s.Stale {
			stale = 1
		}
		gauge("tenancy_catalog_second_level_stale", stale)
	}
}
