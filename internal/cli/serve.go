package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
)

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	dbf := databaseFlags(fs)
	addr := fs.String("addr", env("TENANCY_ADDR", ":8080"), "listen address (env TENANCY_ADDR)")
	redisURL := fs.String("redis-url", env("TENANCY_REDIS_URL", ""), "Redis URL (env TENANCY_REDIS_URL); empty keeps everything in memory")
	redisPrefix := fs.String("redis-prefix", env("TENANCY_REDIS_PREFIX", ""),
		"prefix of every Redis key (env TENANCY_REDIS_PREFIX); default tenancy:<catalog database>:, so deployments sharing a Redis never meet")
	base := fs.String("base-domain", env("TENANCY_BASE_DOMAIN", "localhost"), "tenants are subdomains of this domain (env TENANCY_BASE_DOMAIN)")
	token := fs.String("admin-token", env("TENANCY_ADMIN_TOKEN", ""), "bearer token that enables the admin API (env TENANCY_ADMIN_TOKEN)")
	demo := fs.Bool("demo", false, "seed the demo tenants acme, globex and initech if absent")
	concurrency := fs.Int("concurrency", envInt("TENANCY_CONCURRENCY", 32), "requests of one tenant in flight at once (env TENANCY_CONCURRENCY)")
	planLimits := fs.String("plan-limits", env("TENANCY_PLAN_LIMITS", ""),
		"request rate by plan, plan=limit;… e.g. free=100/min;pro=1000/min (env TENANCY_PLAN_LIMITS); default: free 100/min, pro 1000/min, enterprise 10000/min")
	metricsAddr := fs.String("metrics-addr", env("TENANCY_METRICS_ADDR", ""),
		"serve /metrics (Prometheus) on this address without authentication (env TENANCY_METRICS_ADDR); on the service's address it needs --admin-token")
	pprofAddr := fs.String("pprof-addr", env("TENANCY_PPROF_ADDR", ""),
		"serve Go's profiler (net/http/pprof) on this address, e.g. 127.0.0.1:6060 (env TENANCY_PPROF_ADDR); default: off. It has no authentication: keep it on loopback")
	instances := fs.Int("instances", envInt("TENANCY_INSTANCES", 1), "instances sharing the rate limits, for the fallback while Redis is down (env TENANCY_INSTANCES)")
	migrations := migrationsFlag(fs)
	runtimeURL := fs.String("runtime-url", env("TENANCY_RUNTIME_URL", ""),
		"PostgreSQL URL tenant transactions log in with, as the runtime role tenancy_app; may point at PgBouncer in transaction mode (env TENANCY_RUNTIME_URL); default: --database-url as tenancy_app")
	runtimeServersFlag := fs.String("runtime-servers", env("TENANCY_RUNTIME_SERVERS", ""),
		"runtime URLs of the servers of database tenants, alias=url,… (env TENANCY_RUNTIME_SERVERS); default: the runtime URL's login for the catalog's server, the server's URL as tenancy_app for others")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", pos)
	}
	log := slog.New(tenancy.NewLogHandler(slog.NewTextHandler(stderr, nil)))

	var rdb redis.UniversalClient // first: an unreachable Redis is said before any work
	if *redisURL != "" {
		if rdb, err = tenancyredis.Connect(*redisURL); err != nil {
			return fmt.Errorf("redis URL: %w", err)
		}
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis at %s: %w", redisAddrs(rdb), err)
		}
	}

	servers, err := dbf.serverMap()
	if err != nil {
		return err
	}
	pool, applied, err := prepareDatabase(ctx, *dbf.url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if len(applied) > 0 {
		log.Info("tenancy: catalog migrated", "versions", applied)
	}
	switch {
	case *migrations == "" && *demo:
		*migrations = DemoMigrations
	case *migrations == "":
		log.Warn("tenancy: no --migrations given: only the catalog is applied; the reference API needs its tables (--migrations demo, or serve --demo)")
	}
	migrator, err := newMigrator(pool, *migrations, dbf)
	if err != nil {
		return err
	}
	res, err := migrator.Migrate(ctx, nil)
	var merr *tenancymigrate.MigrateError
	switch {
	case errors.As(err, &merr):
		// Tenants that failed keep their version and are listed by `tenancy migrate status`; the
		// others are served.
		for _, f := range merr.Failed {
			log.Warn("tenancy: tenant migration failed", "target", f.Name, "version", f.Version, "err", f.Err)
		}
	case err != nil:
		return err
	}
	if res != nil && (len(res.SharedApplied) > 0 || len(res.Targets) > 0) {
		log.Info("tenancy: migrated", "shared_applied", res.SharedApplied, "tenant_targets", len(res.Targets))
	}
	if *concurrency < 1 || *instances < 1 {
		return usagef("--concurrency and --instances must be at least 1")
	}
	policy, err := parsePlanLimits(*planLimits)
	if err != nil {
		return err
	}
	if *runtimeURL == "" {
		if *runtimeURL, err = tenancypgx.RuntimeURL(*dbf.url); err != nil {
			return err
		}
	}
	runtimeCfg, err := pgxpool.ParseConfig(*runtimeURL)
	if err != nil {
		return fmt.Errorf("runtime URL: %w", err)
	}
	auditCat, err := tenancycatalog.NewCatalog(pool, &tenancycatalog.CatalogConfig{Servers: servers})
	if err != nil {
		return err
	}
	if err := auditOrRefuse(ctx, auditCat, runtimeCfg.ConnConfig.User, log, stderr); err != nil {
		return err
	}
	runtime, err := tenancypgx.NewRuntimePool(ctx, *runtimeURL, &tenancypgx.RuntimePoolOpts{Logger: log})
	if err != nil {
		return err
	}
	defer runtime.Close()
	var rtServers tenancycatalog.Servers
	if *runtimeServersFlag != "" {
		if rtServers, err = tenancycatalog.ParseServers(*runtimeServersFlag); err != nil {
			return err
		}
	}
	cfg := &service.ServerConfig{BaseDomain: *base, AdminToken: *token, Logger: log, Migrator: migrator, Servers: servers,
		Runtime: runtime, RuntimeServers: rtServers, PerTenantConcurrency: *concurrency, Policy: policy}
	if rdb != nil {
		cfg.Redis = rdb
		prefix := *redisPrefix
		if prefix == "" {
			prefix = "tenancy:" + pool.Config().ConnConfig.Database + ":"
		}
		if cfg.Limiter, err = tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Instances: *instances, Prefix: prefix + "rl:"}); err != nil {
			return err
		}
		rc, err := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: prefix + "cache:"})
		if err != nil {
			return err
		}
		cfg.Cache, cfg.CatalogSecondLevel = rc, rc
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		// Traces to the OTLP/HTTP collector the standard variables name.
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return fmt.Errorf("OpenTelemetry exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "tenancy"))))
		otel.SetTracerProvider(tp)
		defer tp.Shutdown(context.WithoutCancel(ctx))
		cfg.TraceRequests = true
		log.Info("tenancy: exporting traces (OTLP/HTTP)")
	}
	srv, err := service.NewServer(pool, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	if *demo {
		created, err := srv.SeedDemo(ctx)
		if err != nil {
			return err
		}
		if len(created) > 0 {
			log.Info("tenancy: demo tenants created", "slugs", created)
		}
	}

	if *metricsAddr != "" {
		mln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", srv.MetricsHandler())
		msrv := &http.Server{Handler: mmux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mln)
		defer msrv.Close()
		log.Info("tenancy: metrics serving", "addr", mln.Addr().String()+"/metrics")
	}
	if *pprofAddr != "" {
		pln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return fmt.Errorf("--pprof-addr: %w", err)
		}
		pmux := http.NewServeMux()
		pmux.HandleFunc("/debug/pprof/", pprof.Index)
		pmux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pmux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pmux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		psrv := &http.Server{Handler: pmux, ReadHeaderTimeout: 10 * time.Second}
		go psrv.Serve(pln)
		defer psrv.Close()
		log.Info("tenancy: profiler serving", "addr", pln.Addr().String())
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

// parsePlanLimits reads "free=100/min;pro=1000/min" into a policy; "" is the default policy.
func parsePlanLimits(s string) (*tenancyrate.Policy, error) {
	if strings.TrimSpace(s) == "" {
		return &tenancyrate.Policy{}, nil
	}
	plans := map[string]tenancyrate.Limit{}
	for _, part := range strings.Split(s, ";") {
		plan, limit, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || plan == "" {
			return nil, usagef("--plan-limits: %q is not plan=limit", part)
		}
		l, err := tenancyrate.ParseLimit(limit)
		if err != nil {
			return nil, fmt.Errorf("--plan-limits: plan %s: %w", plan, err)
		}
		plans[plan] = l
	}
	return &tenancyrate.Policy{Plans: plans}, nil
}

// redisAddrs names the server, or the seed nodes of the cluster, rdb connects to.
func redisAddrs(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	}
	return "the configured Redis"
}
