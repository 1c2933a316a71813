package service_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

// startEnvServer runs the reference service on an Env (with cfg's other settings) and its change
// listener.
func startEnvServer(t *testing.T, env *tenancytest.Env, cfg *service.ServerConfig) *service.Server {
	t.Helper()
	c := service.ServerConfig{}
	if cfg != nil {
		c = *cfg
	}
	c.Router, c.Migrator = env.Router, env.Migrator
	c.Servers = tenancycatalog.Servers{tenancycatalog.DefaultServer: env.Pool.Config().ConnString()}
	srv, err := service.NewServer(env.Pool, &c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	waitHealthyHandler(t, srv.Handler()) // the change listener is connected
	return srv
}

// Every backend of the service's database is terminated — what a PostgreSQL restart looks like
// from the service: pooled connections, the change listener, a transaction in flight. The
// transaction fails and commits nothing; the service recovers without a restart of its own.
func TestServiceRecoversFromLostBackends(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: service.ReferenceLines().Tenant})
	srv := startEnvServer(t, env, nil)
	h := srv.Handler()
	tenants := map[tenancy.Isolation]*tenancy.Tenant{}
	for _, m := range tenancytest.Models {
		tenants[m] = env.NewTenant(t, m)
	}
	for _, tn := range tenants {
		api := apiClient{t, h, tn.Slug + ".localhost"}
		api.must("POST", "/projects", `{"name":"before"}`, 201, nil)
	}
	admin, err := pgx.Connect(context.Background(), tenancytest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var dbs []string
	dbs = append(dbs, env.Pool.Config().ConnConfig.Database, tenants[tenancy.IsolationDatabase].Database)

	// A transaction in flight when its backend goes.
	a := tenants[tenancy.IsolationShared]
	ctx := tenancytest.Context(a)
	err = env.DB.Tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ('in flight')`); err != nil {
			return err
		}
		if _, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = ANY($1) AND pid <> pg_backend_pid()`, dbs); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ('after the kill')`)
		return err
	})
	if err == nil {
		t.Fatal("a transaction whose backend was terminated committed")
	}

	// The service serves every model again, without a restart, and nothing in flight was kept.
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range tenancytest.Models {
		tn := tenants[m]
		for {
			w := call(h, "GET", tn.Slug+".localhost", "/projects", "", "")
			if w.Code == 200 {
				if strings.Contains(w.Body.String(), "in flight") || !strings.Contains(w.Body.String(), "before") {
					t.Fatalf("%s after the outage: %s", m, w.Body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still failing 10 s after its backends were terminated: %d %s", m, w.Code, w.Body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The change listener came back too: a suspension is refused within a second.
	waitHealthyHandler(t, h)
	if _, err := env.Catalog.Suspend(context.Background(), a.ID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h, a.Slug+".localhost", 403)
}

// waitHealthyHandler waits up to 10 s for the handler's /healthz to answer 200.
func waitHealthyHandler(t *testing.T, h http.Handler) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := call(h, "GET", "localhost", "/healthz", "", "")
		if w.Code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz: %d %s", w.Code, w.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis dies mid-load: the rate limits fall back to each instance's share, the cache and the
// catalog's second level to the database; every request is still served, and Redis takes over
// again when it is back.
func TestServiceSurvivesRedisOutage(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: service.ReferenceLines().Tenant})
	red := tenancytest.StartRedis(t)
	rdb, err := tenancyredis.NewClient(red.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	limiter, _ := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{RetryAfter: 50 * time.Millisecond})
	cache, _ := tenancyredis.NewCache(rdb, nil)
	srv := startEnvServer(t, env, &service.ServerConfig{Limiter: limiter, Cache: cache, CatalogSecondLevel: cache,
		Policy: &tenancyrate.Policy{Plans: map[string]tenancyrate.Limit{"free": tenancyrate.PerSecond(100_000)}}})
	h := srv.Handler()
	var clients []apiClient
	for _, m := range tenancytest.Models {
		clients = append(clients, apiClient{t, h, env.NewTenant(t, m).Slug + ".localhost"})
	}
	load := func(phase string) {
		for i := range 20 {
			for _, c := range clients {
				if i == 0 {
					c.must("POST", "/projects", `{"name":"`+phase+`"}`, 201, nil)
				}
				var st apiStats
				c.must("GET", "/stats", "", 200, &st)
				if st.Projects == 0 {
					t.Fatalf("%s, %s: stats %+v", phase, c.host, st)
				}
			}
		}
	}
	load("before")
	red.Stop()
	start := time.Now()
	load("during the outage")
	t.Logf("60 requests during the outage took %v", time.Since(start))
	if s := limiter.Stats(); s.Fallbacks == 0 {
		t.Fatalf("the limiter never fell back: %+v", s)
	}
	red.Start()
	deadline := time.Now().Add(10 * time.Second)
	for { // the pool's dead connections go one failure at a time; then Redis decides again
		before := limiter.Stats().Fallbacks
		load("after")
		if limiter.Stats().Fallbacks == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still falling back 10 s after Redis returned: %+v", limiter.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PostgreSQL itself restarts under the service (a server of the test's own): the service serves
// tenants of every model again, and the catalog's change listener is back, without a restart of
// its own.
func TestServiceRecoversFromPostgresRestart(t *testing.T) {
	t.Parallel()
	pg := tenancytest.StartPostgres(t)
	ctx := context.Background()
	pool, _ := pg.NewCatalog("service")
	url := pg.URL("service")
	servers := tenancycatalog.Servers{tenancycatalog.DefaultServer: url}
	lines := service.ReferenceLines()
	lines.Servers = servers
	m, err := tenancymigrate.New(pool, lines)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	srv, err := service.NewServer(pool, &service.ServerConfig{Migrator: m, Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	h := srv.Handler()
	var hosts []string
	for _, iso := range tenancytest.Models {
		tn, err := srv.Catalog().Create(ctx, &tenancycatalog.CreateOpts{Slug: "pg-" + string(iso), Isolation: iso})
		if err != nil {
			t.Fatal(err)
		}
		if tn.Status == tenancy.StatusProvisioning {
			if _, err := tenancyprovision.Provision(ctx, srv.Catalog(), tn.ID, m, nil); err != nil {
				t.Fatal(err)
			}
		}
		hosts = append(hosts, tn.Slug+".localhost")
		apiClient{t, h, tn.Slug + ".localhost"}.must("POST", "/projects", `{"name":"before"}`, 201, nil)
	}
	waitHealthyHandler(t, h)

	pg.Restart()

	for _, host := range hosts {
		deadline := time.Now().Add(15 * time.Second)
		for {
			w := call(h, "GET", host, "/projects", "", "")
			if w.Code == 200 && strings.Contains(w.Body.String(), "before") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s 15 s after PostgreSQL restarted: %d %s", host, w.Code, w.Body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitHealthyHandler(t, h)
	tn, _ := srv.Catalog().TenantBySlug(ctx, "pg-shared")
	if _, err := srv.Catalog().Suspend(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h, "pg-shared.localhost", 403)
}
