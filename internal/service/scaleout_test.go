package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

// TestTwoInstancesOnARedisCluster runs two instances of the service on one catalog and one Redis
// Cluster (three masters), as serve runs with --redis-url redis+cluster://…: they keep one rate
// limit per tenant between them, and a tenant moved through one instance is served from its new
// placement by the other within a second of the switch.
func TestTwoInstancesOnARedisCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := tenancytest.NewCatalog(t)
	m, err := tenancymigrate.New(pool, service.ReferenceLines())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	cluster := tenancytest.StartRedisCluster(t)
	rdb, err := tenancyredis.Connect(cluster.URL() + "?dial_timeout=5s&read_timeout=5s&write_timeout=5s&pool_timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	var instances []http.Handler
	for range 2 {
		limiter, err := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: "svc:rl:", Instances: 2, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cache, err := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: "svc:cache:"})
		if err != nil {
			t.Fatal(err)
		}
		srv := startServer(t, pool, &service.ServerConfig{AdminToken: "tok", Redis: rdb, Limiter: limiter,
			Cache: cache, CatalogSecondLevel: cache})
		instances = append(instances, srv.Handler())
	}
	admin := func(h http.Handler, method, path, body string) int {
		w := call(h, method, "localhost", path, "tok", body)
		return w.Code
	}
	for _, slug := range []string{"acme", "globex"} {
		if code := admin(instances[0], "POST", "/admin/tenants", `{"slug":"`+slug+`"}`); code != 201 {
			t.Fatalf("create %s: %d", slug, code)
		}
	}

	// One limit between the two: 10 a minute, asked of each in turn.
	if code := admin(instances[1], "PUT", "/admin/tenants/acme/rate-limit", `{"rate_limit":"10/min"}`); code != 200 {
		t.Fatalf("set acme's limit: %d", code)
	}
	time.Sleep(100 * time.Millisecond) // the change reaches both instances' lookups
	allowed := 0
	for i := range 14 {
		switch w := call(instances[i%2], "GET", "acme.localhost", "/whoami", "", ""); w.Code {
		case 200:
			allowed++
		case 429:
		default:
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
	}
	if allowed != 10 {
		t.Fatalf("the two instances allowed acme %d requests of 14 under one limit of 10 a minute", allowed)
	}

	// A move through the first instance, seen by the second.
	if code := admin(instances[0], "PUT", "/admin/tenants/globex/rate-limit", `{"rate_limit":"100000/s"}`); code != 200 {
		t.Fatal(code)
	}
	isolation := func(h http.Handler) string {
		w := call(h, "GET", "globex.localhost", "/whoami", "", "")
		var who struct{ Isolation string }
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &who) != nil {
			t.Fatalf("whoami: %d %s", w.Code, w.Body)
		}
		return who.Isolation
	}
	if got := isolation(instances[1]); got != "shared" {
		t.Fatalf("control: the second instance serves globex as %s before the move", got)
	}
	if w := call(instances[0], "POST", "localhost", "/admin/tenants/globex/move", "tok", `{"to":"schema"}`); w.Code != 202 {
		t.Fatalf("move: %d %s", w.Code, w.Body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for isolation(instances[1]) != "schema" {
		if time.Now().After(deadline) {
			t.Fatal("the second instance never served globex from its schema")
		}
		time.Sleep(5 * time.Millisecond)
	}
	seen := time.Now()
	w := call(instances[1], "GET", "localhost", "/admin/tenants/globex", "tok", "")
	var view struct {
		Move *tenancycatalog.Move `json:"move"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &view); err != nil || view.Move == nil || view.Move.SwitchedAt == nil {
		t.Fatalf("the move as the second instance shows it: %s (%v)", w.Body, err)
	}
	lag := seen.Sub(*view.Move.SwitchedAt)
	t.Logf("the second instance served globex from its schema %s after the switch", lag)
	if lag > time.Second {
		t.Fatalf("the second instance saw the move %s after the switch, want within a second", lag)
	}
}
