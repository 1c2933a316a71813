package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymetrics"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancymove"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancyriver"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// ServerConfig configures the reference service.
type ServerConfig struct {
	// BaseDomain is the domain tenants are subdomains of. Defaults to "localhost".
	BaseDomain string
	// AdminToken enables the admin API (/admin/tenants) and is the bearer token it requires.
	// Defaults to "": the admin API is off (404).
	AdminToken string
	// Redis, when set, is checked by /healthz. Defaults to nil: everything stays in memory.
	Redis redis.UniversalClient
	// Migrator provisions new schema and database tenants (the admin API, --demo). Defaults to one
	// with the reference service's lines (ReferenceLines).
	Migrator *tenancymigrate.Migrator
	// Servers hold database tenants, as the migration role logs in to them (provisioning,
	// migrations). Defaults to the pool's server as tenancycatalog.DefaultServer.
	Servers tenancycatalog.Servers
	// Runtime is the pool tenant transactions run on: it logs in as the runtime role
	// (tenancypgx.NewRuntimePool), and may point at a transaction pooler. Defaults to one opened
	// at tenancypgx.RuntimeURL of the pool's URL; Close closes the one it made.
	Runtime *pgxpool.Pool
	// RuntimeServers are the URLs database tenants' pools log in with, as the runtime role, by
	// server alias. Defaults, for each of Servers, to the Runtime pool's address and login when
	// it is the pool's server, else to tenancypgx.RuntimeURL of its URL.
	RuntimeServers tenancycatalog.Servers
	// Router serves database tenants. Defaults to one on RuntimeServers with the router's
	// defaults; Close closes the one it made.
	Router *tenancyrouter.Router
	// Limiter limits each tenant's request rate by its Policy. Defaults to a memory limiter (give
	// a tenancyredis.Limiter when instances share the limits).
	Limiter tenancyrate.Limiter
	// Policy picks each tenant's rate. Defaults to &tenancyrate.Policy{} (by plan).
	Policy *tenancyrate.Policy
	// PerTenantConcurrency is how many requests of one tenant may be in flight. Defaults to 32.
	PerTenantConcurrency int
	// Cache holds the service's tenant-scoped cache (GET /stats). Defaults to a memory store.
	Cache tenancycache.Store
	// CatalogSecondLevel, when set, keeps tenant lookups in Redis too, shared by the instances.
	// Defaults to nil: the first level in each instance only.
	CatalogSecondLevel *tenancyredis.Cache
	// TraceRequests starts an OpenTelemetry span for every request (the global TracerProvider's),
	// under which the tenant is named and the units of work are traced. Defaults to false: serve
	// turns it on when OTEL_EXPORTER_OTLP_ENDPOINT is set.
	TraceRequests bool
	// JobWorkers is how many background jobs (exports) run at once. Defaults to 4.
	JobWorkers int
	// MoveGrace is how long a tenant's move (POST /admin/tenants/{slug}/move) keeps the old
	// placement's data before the service removes it. Defaults to 24h.
	MoveGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server is the reference service: tenant resolution in front of the application's routes, a
// readiness probe and the admin API.
type Server struct {
	pool        *pgxpool.Pool
	catalog     *tenancycatalog.Catalog
	cache       *tenancycache.Lookup
	secondLevel *tenancyredis.CatalogStore // nil without Redis
	db          *tenancypgx.DB
	appCache    *tenancycache.Cache
	invalidate  tenancy.Invalidators
	cfg         ServerConfig
	log         *slog.Logger
	handler     http.Handler
	watchUp     atomic.Bool
	ignored     atomic.Uint64 // catalog notifications the catalog did not sign
	closers     []func()
	metrics     http.Handler            // GET /metrics: the toolkit's and the process's metrics (tenancymetrics)
	activity    *tenancymetrics.Metrics // each tenant's recent requests, for the console
	river       *river.Client[pgx.Tx]   // background jobs (exports), run by Run
	jobs        *tenancyriver.Jobs
	outbox      *tenancyriver.Outbox
	consoleAuth *consoleAuth
	mover       *tenancymove.Mover
	bg          context.Context // the admin API's moves run on it; Close ends it
	stopBG      context.CancelFunc
	moves       sync.WaitGroup
}

// NewServer builds the service on a pool that logs in as the migration role and whose database
// has the catalog and the service's tables (MigrateCatalog, then the lines of
// ServerConfig.Migrator): the catalog, provisioning and the change listener use it; tenant
// transactions run on ServerConfig.Runtime. Call Run to keep the lookup cache current; Handler
// serves requests.
func NewServer(pool *pgxpool.Pool, cfg *ServerConfig) (s *Server, err error) {
	s = &Server{pool: pool}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	if cfg != nil {
		s.cfg = *cfg
	}
	built := s
	defer func() {
		if err != nil {
			built.Close() // what was opened before the failure
		}
	}()
	if s.cfg.BaseDomain == "" {
		s.cfg.BaseDomain = "localhost"
	}
	// As the subdomain resolver has it (Example.com. is example.com), so that every comparison
	// with a request's normalized host agrees with the resolver's.
	if s.cfg.BaseDomain, err = tenancyhttp.NormalizeHost(s.cfg.BaseDomain); err != nil {
		return nil, fmt.Errorf("base domain: %w", err)
	}
	s.log = s.cfg.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.cfg.Servers == nil {
		s.cfg.Servers = tenancycatalog.Servers{tenancycatalog.DefaultServer: pool.Config().ConnString()}
	}
	if s.catalog, err = tenancycatalog.NewCatalog(pool, &tenancycatalog.CatalogConfig{Servers: s.cfg.Servers}); err != nil {
		return nil, err
	}
	if s.cfg.Migrator == nil {
		lines := ReferenceLines()
		lines.Servers = s.cfg.Servers
		if s.cfg.Migrator, err = tenancymigrate.New(pool, lines); err != nil {
			return nil, err
		}
	}
	if s.mover, err = tenancymove.New(s.catalog, &tenancymove.Config{Migrator: s.cfg.Migrator, Grace: s.cfg.MoveGrace, Logger: s.log}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.cfg.Runtime == nil {
		url, err := tenancypgx.RuntimeURL(pool.Config().ConnString())
		if err != nil {
			return nil, err
		}
		if s.cfg.Runtime, err = tenancypgx.NewRuntimePool(ctx, url, &tenancypgx.RuntimePoolOpts{Logger: s.log}); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, s.cfg.Runtime.Close)
	}
	if s.cfg.Router == nil {
		servers, err := runtimeServers(s.cfg.Servers, s.cfg.RuntimeServers, pool.Config(), s.cfg.Runtime.Config())
		if err != nil {
			return nil, err
		}
		if s.cfg.Router, err = tenancyrouter.New(&tenancyrouter.Config{Servers: servers, Logger: s.log}); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, s.cfg.Router.Close)
	}
	var key *tenancycatalog.BindingKey
	if key, err = s.catalog.BindingKey(ctx); err != nil {
		return nil, err
	}
	var lookups tenancy.Store = s.catalog
	if s.cfg.CatalogSecondLevel != nil {
		l2, err := tenancyredis.NewCatalogStore(s.catalog, s.cfg.CatalogSecondLevel, 0)
		if err != nil {
			return nil, err
		}
		lookups, s.secondLevel = l2, l2
		s.invalidate = append(s.invalidate, l2) // the second level drops first
	}
	if s.cache, err = tenancycache.NewLookup(lookups, nil); err != nil {
		return nil, err
	}
	if s.cfg.Cache == nil {
		if s.cfg.Cache, err = tenancycache.NewMemoryStore(nil); err != nil {
			return nil, err
		}
	}
	if s.appCache, err = tenancycache.New(s.cfg.Cache, nil); err != nil {
		return nil, err
	}
	if s.cfg.Policy == nil {
		s.cfg.Policy = &tenancyrate.Policy{}
	}
	if s.cfg.Limiter == nil {
		if s.cfg.Limiter, err = tenancyrate.NewMemoryLimiter(nil); err != nil {
			return nil, err
		}
	}
	// What the service keeps about a tenant goes when the tenant is deleted or purged: its cache
	// entries, its rate limiter state and (a database tenant) its pool.
	forget := []func(context.Context, *tenancy.Tenant) error{s.appCache.Forget, tenancyrate.Forget(s.cfg.Limiter, s.cfg.Policy)}
	if s.cfg.Router != nil {
		forget = append(forget, func(_ context.Context, t *tenancy.Tenant) error { s.cfg.Router.Forget(t.ID); return nil })
	}
	s.invalidate = append(s.invalidate, s.cache, s.catalog.OnDeleted(forget...))
	mw, err := tenancyhttp.Middleware(s.cache, &tenancyhttp.Config{
		Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain(s.cfg.BaseDomain), tenancyhttp.FromDomain()},
		Logger:    s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("base domain: %w", err)
	}
	if s.db, err = tenancypgx.New(s.cfg.Runtime, &tenancypgx.Config{Key: key, Store: s.cache, Router: s.cfg.Router}); err != nil {
		return nil, err
	}
	// Fail now, not on the first request, when the runtime login is unsafe or the key is not this
	// database's.
	if err := s.db.Check(ctx); err != nil {
		return nil, err
	}
	if err := s.startJobs(ctx); err != nil {
		return nil, err
	}
	app := http.NewServeMux()
	s.appRoutes(app)
	if s.cfg.PerTenantConcurrency == 0 {
		s.cfg.PerTenantConcurrency = 32
	}
	rateLimit, err := tenancyhttp.RateLimit(&tenancyhttp.RateLimitConfig{Limiter: s.cfg.Limiter, Policy: s.cfg.Policy, Logger: s.log})
	if err != nil {
		return nil, err
	}
	bulkhead, err := tenancyhttp.ConcurrencyLimit(&tenancyhttp.ConcurrencyConfig{PerTenant: s.cfg.PerTenantConcurrency})
	if err != nil {
		return nil, err
	}

	metrics, err := s.newMetrics()
	if err != nil {
		return nil, err
	}
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", s.healthz)
	root.Handle("/admin/", s.admin())
	if s.consoleAuth, err = newConsoleAuth(s.cfg.AdminToken); err != nil {
		return nil, err
	}
	console := s.console()
	root.Handle("/console", console)
	root.Handle("/console/", console)
	root.Handle("/metrics", s.admin()) // on the admin token (serve --metrics-addr serves it without, elsewhere)
	var handler http.Handler = metrics.Middleware(mw(rateLimit(bulkhead(s.invalidateStatsOnWrite(tenancyhttp.ProblemRoutes(app))))))
	if s.cfg.TraceRequests {
		handler = traceRequests(handler)
	}
	root.Handle("/", handler)
	s.handler = root // its "/" takes every other path and method: the app's ProblemRoutes answers 404 and 405
	return s, nil
}

// newMetrics makes the service's metrics: the toolkit's (requests by tenant and outcome, the
// lookup cache, the pool router, the cache, the Redis limiter and second level) and the Go
// process's, served by MetricsHandler.
func (s *Server) newMetrics() (*tenancymetrics.Metrics, error) {
	cfg := &tenancymetrics.Config{Lookup: s.cache, Router: s.cfg.Router, Cache: s.appCache, SecondLevel: s.secondLevel,
		Catalog: s.catalog, Migrator: s.cfg.Migrator, Jobs: s.jobCounts}
	if l, ok := s.cfg.Limiter.(*tenancyredis.Limiter); ok {
		cfg.Limiter = l
	}
	m, err := tenancymetrics.New(cfg)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	s.activity = m
	return m, nil
}

// jobCounts are the jobs' counts for the metrics.
func (s *Server) jobCounts() tenancymetrics.JobCounts {
	j, o := s.jobs.Stats(), s.outbox.Stats()
	return tenancymetrics.JobCounts{Inserted: j.Inserted, Demoted: j.Demoted, Ran: j.Ran, Busy: j.Busy, RateLimited: j.RateLimited,
		Suspended: j.Suspended, Cancelled: j.Cancelled, Discarded: j.Discarded, Unavailable: j.Unavailable,
		OutboxMoved: o.Moved, OutboxRefused: o.Refused}
}

// MetricsHandler serves the metrics in Prometheus's format, without authentication: for a
// listener of its own that only the scraper reaches (serve --metrics-addr). On the service's
// listener, GET /metrics needs the admin token.
func (s *Server) MetricsHandler() http.Handler { return s.metrics }

// Close releases what NewServer opened (the router and runtime pool it made, the database/sql
// handles).
func (s *Server) Close() {
	s.stopBG() // a move under way stops where it is, resumable
	s.moves.Wait()
	if s.db != nil {
		_ = s.db.Close()
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// runtimeServers returns the runtime URL of each server of direct: the explicit one, else the
// runtime pool's address and login for the catalog's own server (so a pooler in front of it
// serves its tenant databases too), else tenancypgx.RuntimeURL of the server's URL.
func runtimeServers(direct, explicit tenancycatalog.Servers, catalog, runtime *pgxpool.Config) (tenancycatalog.Servers, error) {
	out := tenancycatalog.Servers{}
	for alias, url := range direct {
		if u, ok := explicit[alias]; ok {
			out[alias] = u
			continue
		}
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", alias, err)
		}
		if cfg.ConnConfig.Host == catalog.ConnConfig.Host && cfg.ConnConfig.Port == catalog.ConnConfig.Port {
			out[alias] = runtime.ConnString()
			continue
		}
		if out[alias], err = tenancypgx.RuntimeURL(url); err != nil {
			return nil, fmt.Errorf("server %s: %w", alias, err)
		}
	}
	for alias := range explicit {
		if _, ok := direct[alias]; !ok {
			return nil, fmt.Errorf("runtime server %q is not one of the servers (%s)", alias, strings.Join(direct.Aliases(), ", "))
		}
	}
	return out, nil
}

// Handler returns the service's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Catalog returns the tenant catalog the service reads.
func (s *Server) Catalog() *tenancycatalog.Catalog { return s.catalog }

// Run keeps the lookup cache current with the catalog's change notifications, guards the
// runtime role (tenancycatalog.Catalog.GuardRuntimeRole), finalizes moves and works the
// background jobs, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	guarded := make(chan struct{})
	go func() { // the runtime role's session defaults removed, a changed password reported
		defer close(guarded)
		tenancypgx.GuardRuntimeRole(ctx, s.catalog, &tenancypgx.GuardOpts{Logger: s.log})
	}()
	defer func() { <-guarded }()
	finalized := make(chan struct{})
	go func() {
		defer close(finalized)
		s.finalizeMoves(ctx)
	}()
	defer func() { <-finalized }()
	jobsDone := make(chan struct{})
	go func() { // the export jobs, and the outbox that brings them to River
		defer close(jobsDone)
		s.runJobs(ctx)
	}()
	defer func() { <-jobsDone }()
	return s.catalog.Watch(ctx, s.invalidate, &tenancycatalog.WatchOpts{
		OnConnect: func() { s.watchUp.Store(true) },
		OnDisconnect: func(err error) {
			s.watchUp.Store(false)
			s.log.Warn("tenancy: catalog change listener disconnected; reconnecting", "err", err)
		},
		OnError: func(id string, err error) {
			s.log.Warn("tenancy: a catalog change did not reach everything derived from the catalog", "tenant_id", id, "err", err)
		},
		OnIgnored: func(string) {
			if s.ignored.Add(1) == 1 {
				s.log.Warn("tenancy: ignoring a notification on the catalog's channel that the catalog did not sign (counted in /admin/stats)")
			}
		},
	})
}

// invalidateStatsOnWrite drops the tenant's cached /stats after any request that may write.
func (s *Server) invalidateStatsOnWrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			_ = s.appCache.Delete(context.WithoutCancel(r.Context()), "stats")
		}
	})
}

// whoami is what a tenant's client may know of the tenant it reached. Where its data lives (server,
// database) and its provisioning errors are for operators: the admin API shows them.
type whoami struct {
	ID        string            `json:"id"`
	Slug      string            `json:"slug"`
	Name      string            `json:"name"`
	Plan      string            `json:"plan"`
	Status    tenancy.Status    `json:"status"`
	Isolation tenancy.Isolation `json:"isolation"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	t := tenancy.MustFromContext(r.Context())
	writeJSONResponse(w, http.StatusOK, whoami{ID: t.ID, Slug: t.Slug, Name: t.Name, Plan: t.Plan, Status: t.Status, Isolation: t.Isolation})
}

// healthz reports readiness: the database answers and catalog changes are being received.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "catalog_watch": "ok"}
	ready := true
	if err := s.pool.Ping(ctx); err != nil {
		checks["database"], ready = "unavailable", false
	}
	if !s.watchUp.Load() {
		checks["catalog_watch"], ready = "disconnected", false
	}
	if s.cfg.Redis != nil {
		checks["redis"] = "ok"
		if err := s.cfg.Redis.Ping(ctx).Err(); err != nil {
			checks["redis"], ready = "unavailable", false
		}
	}
	status, code := "ok", http.StatusOK
	if !ready {
		status, code = "unavailable", http.StatusServiceUnavailable
	}
	writeJSONResponse(w, code, map[string]any{"status": status, "checks": checks})
}

func writeJSONResponse(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// demoTenants are what --demo seeds, with their projects and each project's tasks.
var demoTenants = []struct {
	opts     tenancycatalog.CreateOpts
	projects map[string][]string
}{
	{tenancycatalog.CreateOpts{Slug: "acme", Name: "Acme Corporation", Plan: "pro"}, map[string][]string{
		"Rocket skates": {"Order springs", "Test on the mesa"},
		"Giant magnet":  {"Find a bigger battery"},
	}},
	{tenancycatalog.CreateOpts{Slug: "globex", Name: "Globex Corporation", Plan: "free", Isolation: tenancy.IsolationSchema}, map[string][]string{
		"Doomsday device": {"Hire henchmen", "Volcano lease"},
	}},
	{tenancycatalog.CreateOpts{Slug: "initech", Name: "Initech", Plan: "free", Isolation: tenancy.IsolationDatabase}, map[string][]string{
		"TPS reports": {"New cover sheets"},
		"Migration":   {"Find the red stapler"},
	}},
}

// SeedDemo creates the demo tenants that do not exist yet (acme shared, globex with a schema of
// its own, initech with a database of its own), and gives each demo tenant that has no project its demo projects, through
// db as the tenant itself.
func (s *Server) SeedDemo(ctx context.Context) ([]string, error) {
	var created []string
	for _, d := range demoTenants {
		t, err := s.catalog.Create(ctx, &d.opts)
		switch {
		case err == nil:
			created = append(created, d.opts.Slug)
		case errors.Is(err, tenancy.ErrDuplicateSlug):
			if t, err = s.catalog.TenantBySlug(ctx, d.opts.Slug); err != nil {
				return created, fmt.Errorf("demo tenant %s: %w", d.opts.Slug, err)
			}
		default:
			return created, fmt.Errorf("demo tenant %s: %w", d.opts.Slug, err)
		}
		if t.Status == tenancy.StatusProvisioning {
			if t, err = tenancyprovision.Provision(ctx, s.catalog, t.ID, s.cfg.Migrator, nil); err != nil {
				return created, fmt.Errorf("demo tenant %s: %w", d.opts.Slug, err)
			}
		}
		if t.Err() != nil {
			continue // suspended or deleted by hand: leave it alone
		}
		tctx := tenancy.WithTenant(ctx, t)
		err = s.db.Tx(tctx, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(tctx, `SELECT count(*) FROM projects`).Scan(&n); err != nil || n > 0 {
				return err
			}
			for name, tasks := range d.projects {
				var id string
				if err := tx.QueryRow(tctx, `INSERT INTO projects (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
					return err
				}
				for _, title := range tasks {
					if _, err := tx.Exec(tctx, `INSERT INTO tasks (project_id, title) VALUES ($1, $2)`, id, title); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return created, fmt.Errorf("demo projects of %s: %w", d.opts.Slug, err)
		}
	}
	return created, nil
}
