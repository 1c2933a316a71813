package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancytest"
)

func newServer(t *testing.T, token string) http.Handler {
	t.Helper()
	h, _ := newServerWithCatalog(t, token)
	return h
}

func newServerWithCatalog(t *testing.T, token string) (http.Handler, *tenancycatalog.Catalog) {
	t.Helper()
	ctx := context.Background()
	pool, _ := tenancytest.NewCatalog(t)
	t.Cleanup(func() { tenancytest.DropTenantDatabases(t, pool.Config().ConnString(), service.ReferenceLines()) })
	m, err := tenancymigrate.New(pool, service.ReferenceLines())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, pool, &service.ServerConfig{AdminToken: token})
	return srv.Handler(), srv.Catalog()
}

// startServer makes a server on pool, runs it until t ends and waits until it is healthy (its
// change listener connected).
func startServer(t *testing.T, pool *pgxpool.Pool, cfg *service.ServerConfig) *service.Server {
	t.Helper()
	srv, err := service.NewServer(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitHealthyHandler(t, srv.Handler())
	return srv
}

func call(h http.Handler, method, host, path, token, body string, headers ...map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Host = host
	r.RemoteAddr = "203.0.113.7:5555" // the internet
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for _, hs := range headers {
		for k, v := range hs {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	h := newServer(t, "tok")
	admin := func(method, path, body string) *httptest.ResponseRecorder {
		return call(h, method, "localhost", path, "tok", body)
	}
	w := admin("POST", "/admin/tenants", `{"slug":"acme","name":"Acme","plan":"pro","domains":["Shop.Acme.COM"]}`)
	if w.Code != 201 || !strings.Contains(w.Body.String(), `"shop.acme.com"`) {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	if w := call(h, "GET", "shop.acme.com", "/whoami", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"acme"`) {
		t.Fatalf("whoami on the custom domain: %d %s", w.Code, w.Body)
	}

	problems := []struct {
		name, method, path, body string
		status                   int
		typ                      string
	}{
		{"duplicate slug", "POST", "/admin/tenants", `{"slug":"acme"}`, 409, tenancyhttp.ProblemConflict},
		{"duplicate domain", "POST", "/admin/tenants", `{"slug":"acme2","domains":["shop.acme.com"]}`, 409, tenancyhttp.ProblemConflict},
		{"invalid slug", "POST", "/admin/tenants", `{"slug":"-acme"}`, 400, tenancyhttp.ProblemBadRequest},
		{"reserved slug", "POST", "/admin/tenants", `{"slug":"admin"}`, 400, tenancyhttp.ProblemBadRequest},
		{"bad isolation", "POST", "/admin/tenants", `{"slug":"x","isolation":"rows"}`, 400, tenancyhttp.ProblemBadRequest},
		{"bad plan", "POST", "/admin/tenants", `{"slug":"x","plan":"Gold Plan"}`, 400, tenancyhttp.ProblemBadRequest},
		{"long name", "POST", "/admin/tenants", `{"slug":"x","name":"` + strings.Repeat("n", 201) + `"}`, 400, tenancyhttp.ProblemBadRequest},
		{"unknown field", "POST", "/admin/tenants", `{"slug":"x","owner":"me"}`, 400, tenancyhttp.ProblemBadRequest},
		{"bad JSON", "POST", "/admin/tenants", `{"slug":`, 400, tenancyhttp.ProblemBadRequest},
		{"two values", "POST", "/admin/tenants", `{"slug":"x"}{"slug":"y"}`, 400, tenancyhttp.ProblemBadRequest},
		{"oversized body", "POST", "/admin/tenants", `{"slug":"x","name":"` + strings.Repeat("n", 70<<10) + `"}`, 400, tenancyhttp.ProblemBadRequest},
		{"unknown tenant", "GET", "/admin/tenants/nobody", "", 404, tenancyhttp.ProblemNotFound},
		{"suspend unknown", "POST", "/admin/tenants/nobody/suspend", "", 404, tenancyhttp.ProblemNotFound},
		{"bad domain", "POST", "/admin/tenants/acme/domains", `{"domain":"1.2.3.4"}`, 400, tenancyhttp.ProblemBadRequest},
	}
	for _, p := range problems {
		w := admin(p.method, p.path, p.body)
		var got tenancyhttp.Problem
		if w.Code != p.status || json.Unmarshal(w.Body.Bytes(), &got) != nil || got.Type != p.typ {
			t.Errorf("%s: %d %s; want %d %s", p.name, w.Code, w.Body, p.status, p.typ)
		}
	}

	if w := admin("PATCH", "/admin/tenants/acme", `{"plan":"pro","name":"Acme Inc."}`); w.Code != 200 || !strings.Contains(w.Body.String(), `"Acme Inc."`) {
		t.Fatalf("update: %d %s", w.Code, w.Body)
	}
	if w := admin("PATCH", "/admin/tenants/acme", `{}`); w.Code != 400 {
		t.Fatalf("update with nothing: %d %s", w.Code, w.Body)
	}
	if w := admin("PATCH", "/admin/tenants/nobody", `{"plan":"pro"}`); w.Code != 404 {
		t.Fatalf("update an unknown tenant: %d %s", w.Code, w.Body)
	}
	var stats struct {
		LookupCache struct{ Hits, Loads uint64 } `json:"lookup_cache"`
		Router      struct{ Pools int }
	}
	if w := admin("GET", "/admin/stats", ""); w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &stats) != nil || stats.LookupCache.Loads == 0 {
		t.Fatalf("admin stats: %d %s", w.Code, w.Body)
	}
	if w := call(h, "GET", "localhost", "/admin/stats", "", ""); w.Code != 401 {
		t.Fatalf("admin stats without the token: %d", w.Code)
	}
	if w := admin("PUT", "/admin/tenants/acme/rate-limit", `{"rate_limit":"2/min"}`); w.Code != 200 || !strings.Contains(w.Body.String(), `"2/min"`) {
		t.Fatalf("set the rate limit: %d %s", w.Code, w.Body)
	}
	// "plan" returns to the plan's rate, as the CLI takes it; an unknown plan is refused.
	if w := admin("PUT", "/admin/tenants/acme/rate-limit", `{"rate_limit":"plan"}`); w.Code != 200 || strings.Contains(w.Body.String(), "rate_limit") {
		t.Fatalf("rate-limit plan: %d %s", w.Code, w.Body)
	}
	if w := admin("PATCH", "/admin/tenants/acme", `{"plan":"premium"}`); w.Code != 400 || !strings.Contains(w.Body.String(), "unknown plan") {
		t.Fatalf("unknown plan: %d %s", w.Code, w.Body)
	}
	if w := admin("POST", "/admin/tenants", `{"slug":"plannless","plan":"premium"}`); w.Code != 400 {
		t.Fatalf("create with an unknown plan: %d %s", w.Code, w.Body)
	}
	if w := admin("GET", "/admin/nowhere", ""); w.Code != 404 || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown admin route: %d %v", w.Code, w.Header())
	}
	admin("PUT", "/admin/tenants/acme/rate-limit", `{"rate_limit":"2/min"}`)
	if w := admin("PUT", "/admin/tenants/acme/rate-limit", `{"rate_limit":"often"}`); w.Code != 400 {
		t.Fatalf("a bad rate limit: %d %s", w.Code, w.Body)
	}
	deadline := time.Now().Add(time.Second)
	for { // the change reaches the serving cache through the catalog's notification
		w := call(h, "GET", "acme.localhost", "/whoami", "", "")
		if w.Header().Get("RateLimit-Policy") == `"tenant";q=2;w=60` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new rate limit did not apply within a second: %v", w.Header())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 3 {
		call(h, "GET", "acme.localhost", "/whoami", "", "")
	}
	if w := call(h, "GET", "acme.localhost", "/whoami", "", ""); w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the new limit: %d %v", w.Code, w.Header())
	}
	if w := admin("PUT", "/admin/tenants/acme/rate-limit", `{"rate_limit":""}`); w.Code != 200 || strings.Contains(w.Body.String(), "rate_limit") {
		t.Fatalf("back to the plan's limit: %d %s", w.Code, w.Body)
	}
	if w := admin("POST", "/admin/tenants/acme/suspend", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"suspended"`) {
		t.Fatalf("suspend: %d %s", w.Code, w.Body)
	}
	waitStatus(t, h, "acme.localhost", 403)
	if w := admin("POST", "/admin/tenants/acme/resume", ""); w.Code != 200 {
		t.Fatalf("resume: %d %s", w.Code, w.Body)
	}
	waitStatus(t, h, "acme.localhost", 200)
	if w := admin("POST", "/admin/tenants/acme/domains", `{"domain":"acme.example.org"}`); w.Code != 200 {
		t.Fatalf("add domain: %d %s", w.Code, w.Body)
	}
	waitStatus(t, h, "acme.example.org", 200)
	if w := admin("DELETE", "/admin/tenants/acme/domains/acme.example.org", ""); w.Code != 200 {
		t.Fatalf("remove domain: %d %s", w.Code, w.Body)
	}
	waitStatus(t, h, "acme.example.org", 404)
	if w := admin("DELETE", "/admin/tenants/acme", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"deleted"`) {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	waitStatus(t, h, "acme.localhost", 404)
	if w := admin("GET", "/admin/tenants", ""); w.Code != 200 || strings.TrimSpace(w.Body.String()) != "[]" {
		t.Fatalf("list after delete: %d %s", w.Code, w.Body)
	}
	if w := admin("GET", "/admin/tenants?all=1", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"acme"`) {
		t.Fatalf("list all: %d %s", w.Code, w.Body)
	}
}

// waitStatus waits (at most a second: the catalog pushes changes) until host's /whoami answers code.
func waitStatus(t *testing.T, h http.Handler, host string, code int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		w := call(h, "GET", host, "/whoami", "", "")
		if w.Code == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/whoami still %d after a second, want %d", host, w.Code, code)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// limiterKeys reads how many keys the service's in-memory rate limiter remembers.
func limiterKeys(t *testing.T, h http.Handler, token string) int {
	t.Helper()
	w := call(h, "GET", "admin.localhost", "/admin/stats", token, "")
	var st struct {
		Limiter *struct{ Keys int } `json:"rate_limiter_memory"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &st) != nil || st.Limiter == nil {
		t.Fatalf("/admin/stats: %d %s, want the memory limiter's keys", w.Code, w.Body)
	}
	return st.Limiter.Keys
}

// With the default configuration (no limiter given: the in-memory one), deleting a tenant drops
// its rate-limit state, and only its own.
func TestDeletedTenantsRateLimitStateIsForgotten(t *testing.T) {
	t.Parallel()
	const token = "s3cret"
	h := newServer(t, token)
	for _, slug := range []string{"gone", "stays"} {
		if w := call(h, "POST", "admin.localhost", "/admin/tenants", token, `{"slug":"`+slug+`"}`); w.Code != 201 {
			t.Fatalf("create %s: %d %s", slug, w.Code, w.Body)
		}
		waitStatus(t, h, slug+".localhost", 200) // a request: the limiter now keeps the tenant's state
	}
	if n := limiterKeys(t, h, token); n != 2 {
		t.Fatalf("the limiter keeps %d keys after requests of two tenants, want 2", n)
	}
	if w := call(h, "DELETE", "admin.localhost", "/admin/tenants/gone", token, ""); w.Code != 200 {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	tenancytest.WaitFor(t, 10*time.Second, "the deleted tenant's limiter state dropped", func() bool { return limiterKeys(t, h, token) == 1 })
	if w := call(h, "GET", "stays.localhost", "/whoami", "", ""); w.Code != 200 {
		t.Fatalf("the other tenant after the deletion: %d, want 200", w.Code)
	}
	if n := limiterKeys(t, h, token); n != 1 {
		t.Fatalf("the limiter keeps %d keys, want the other tenant's 1", n)
	}
}

func TestAdminAPIOffWithoutToken(t *testing.T) {
	t.Parallel()
	h := newServer(t, "")
	if w := call(h, "GET", "localhost", "/admin/tenants", "", ""); w.Code != 404 {
		t.Fatalf("admin API without a token configured: %d, want 404", w.Code)
	}
	if w := call(h, "GET", "localhost", "/admin/tenants", "anything", ""); w.Code != 404 {
		t.Fatalf("admin API without a token configured, bearer sent: %d, want 404", w.Code)
	}
}

// The admin list is paged: ?limit and ?after, with a Link to the next page while one may follow;
// walking the links visits every tenant once. A limit out of range is a 400.
func TestAdminListPages(t *testing.T) {
	t.Parallel()
	const token = "s3cret"
	h := newServer(t, token)
	for _, slug := range []string{"p-one", "p-two", "p-three"} {
		if w := call(h, "POST", "admin.localhost", "/admin/tenants", token, `{"slug":"`+slug+`"}`); w.Code != 201 {
			t.Fatalf("create %s: %d %s", slug, w.Code, w.Body)
		}
	}
	var seen []string
	next := "/admin/tenants?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("more pages than tenants")
		}
		w := call(h, "GET", "admin.localhost", next, token, "")
		var page []struct{ Slug string }
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &page) != nil || len(page) > 2 {
			t.Fatalf("GET %s: %d %s, want at most 2 tenants", next, w.Code, w.Body)
		}
		for _, p := range page {
			seen = append(seen, p.Slug)
		}
		next = ""
		if link := w.Header().Get("Link"); link != "" {
			start, end := strings.Index(link, "<"), strings.Index(link, ">")
			if start < 0 || end < start || !strings.Contains(link, `rel="next"`) {
				t.Fatalf("Link %q, want <URL>; rel=\"next\"", link)
			}
			next = link[start+1 : end]
		}
	}
	if strings.Join(seen, ",") != "p-one,p-three,p-two" {
		t.Fatalf("the pages listed %v, want each tenant once, by slug", seen)
	}
	for _, bad := range []string{"0", "1001", "x"} {
		if w := call(h, "GET", "admin.localhost", "/admin/tenants?limit="+bad, token, ""); w.Code != 400 {
			t.Fatalf("limit=%s: %d, want 400", bad, w.Code)
		}
	}
}
