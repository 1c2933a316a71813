package tenancycli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tenancy"
	"tenancy/tenancyhttp"
	"tenancy/tenancypgx"
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
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server is the reference service: tenant resolution in front of the application's routes, a
// readiness probe and the admin API.
type Server struct {
	pool    *pgxpool.Pool
	catalog *tenancypgx.Catalog
	cache   *tenancypgx.CachedStore
	cfg     ServerConfig
	log     *slog.Logger
	handler http.Handler
	watchUp atomic.Bool
}

// NewServer builds the service on a pool whose database has the catalog. Call Run to keep the
// lookup cache current; Handler serves requests.
func NewServer(pool *pgxpool.Pool, cfg *ServerConfig) (*Server, error) {
	s := &Server{pool: pool}
	if cfg != nil {
		s.cfg = *cfg
	}
	if s.cfg.BaseDomain == "" {
		s.cfg.BaseDomain = "localhost"
	}
	s.log = s.cfg.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	var err error
	if s.catalog, err = tenancypgx.NewCatalog(pool, nil); err != nil {
		return nil, err
	}
	if s.cache, err = tenancypgx.NewCachedStore(s.catalog, nil); err != nil {
		return nil, err
	}
	mw, err := tenancyhttp.Middleware(s.cache, &tenancyhttp.Config{
		Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain(s.cfg.BaseDomain), tenancyhttp.FromDomain()},
		Logger:    s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("base domain: %w", err)
	}
	app := http.NewServeMux()
	app.HandleFunc("GET /whoami", s.whoami)

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", s.healthz)
	root.Handle("/admin/", s.admin())
	root.Handle("/", mw(app))
	s.handler = root
	return s, nil
}

// Handler returns the service's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Catalog returns the tenant catalog the service reads.
func (s *Server) Catalog() *tenancypgx.Catalog { return s.catalog }

// Run keeps the lookup cache current with the catalog's change notifications until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	return s.catalog.Watch(ctx, s.cache, &tenancypgx.WatchOpts{
		OnConnect: func() { s.watchUp.Store(true) },
		OnDisconnect: func(err error) {
			s.watchUp.Store(false)
			s.log.Warn("tenancy: catalog change listener disconnected; reconnecting", "err", err)
		},
	})
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	t := tenancy.MustFromContext(r.Context())
	writeJSONResponse(w, http.StatusOK, t)
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
	_ = writeJSON(w, v)
}

// demoTenants are what --demo seeds.
var demoTenants = []tenancypgx.CreateOpts{
	{Slug: "acme", Name: "Acme Corporation", Plan: "pro"},
	{Slug: "globex", Name: "Globex Corporation", Plan: "free"},
	{Slug: "initech", Name: "Initech", Plan: "free"},
}

// SeedDemo creates the demo tenants that do not exist yet.
func SeedDemo(ctx context.Context, cat *tenancypgx.Catalog) ([]string, error) {
	var created []string
	for _, d := range demoTenants {
		_, err := cat.Create(ctx, &d)
		switch {
		case err == nil:
			created = append(created, d.Slug)
		case errors.Is(err, tenancy.ErrDuplicateSlug):
		default:
			return created, fmt.Errorf("demo tenant %s: %w", d.Slug, err)
		}
	}
	return created, nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	dbURL := databaseFlag(fs)
	addr := fs.String("addr", env("TENANCY_ADDR", ":8080"), "listen address (env TENANCY_ADDR)")
	redisURL := fs.String("redis-url", env("TENANCY_REDIS_URL", ""), "Redis URL (env TENANCY_REDIS_URL); empty keeps everything in memory")
	base := fs.String("base-domain", env("TENANCY_BASE_DOMAIN", "localhost"), "tenants are subdomains of this domain (env TENANCY_BASE_DOMAIN)")
	token := fs.String("admin-token", env("TENANCY_ADMIN_TOKEN", ""), "bearer token that enables the admin API (env TENANCY_ADMIN_TOKEN)")
	demo := fs.Bool("demo", false, "seed the demo tenants acme, globex and initech if absent")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", pos)
	}
	log := slog.New(tenancy.NewLogHandler(slog.NewTextHandler(stderr, nil)))

	pool, applied, err := prepareDatabase(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if len(applied) > 0 {
		log.Info("tenancy: catalog migrated", "versions", applied)
	}
	cfg := &ServerConfig{BaseDomain: *base, AdminToken: *token, Logger: log}
	if *redisURL != "" {
		opts, err := redis.ParseURL(*redisURL)
		if err != nil {
			return fmt.Errorf("redis URL: %w", err)
		}
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis at %s: %w", opts.Addr, err)
		}
		cfg.Redis = rdb
	}
	srv, err := NewServer(pool, cfg)
	if err != nil {
		return err
	}
	if *demo {
		created, err := SeedDemo(ctx, srv.Catalog())
		if err != nil {
			return err
		}
		if len(created) > 0 {
			log.Info("tenancy: demo tenants created", "slugs", created)
		}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	watchDone := make(chan error, 1)
	go func() { watchDone <- srv.Run(runCtx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- httpSrv.Serve(ln) }()

	port := ln.Addr().(*net.TCPAddr).Port
	fmt.Fprintf(stdout, "tenancy: serving on %s (try: curl -H 'Host: acme.%s' localhost:%d/whoami)\n", ln.Addr(), *base, port)

	select {
	case err := <-serveDone:
		return err
	case <-ctx.Done():
	}
	log.Info("tenancy: shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = httpSrv.Shutdown(shutCtx)
	stopRun()
	<-watchDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
