package tenancyhttp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancytest"
)

type bundle struct {
	catalog *tenancycatalog.Catalog
	store   *tenancycache.Lookup
	acme    *tenancy.Tenant
	handler http.Handler
}

// setup builds a catalog with acme (active, custom domain shop.acme.com), globex (suspended) and
// initech (deleted), and the middleware with every resolver in front of a handler that reports
// the tenant and path it saw.
func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	_, cat := tenancytest.NewCatalog(t)
	b := &bundle{catalog: cat}
	var err error
	b.acme, err = cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme", Domains: []string{"shop.acme.com"}})
	if err != nil {
		t.Fatal(err)
	}
	globex, _ := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "globex"})
	cat.Suspend(ctx, globex.ID)
	initech, _ := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "initech"})
	cat.Delete(ctx, initech.ID)
	b.store, _ = tenancycache.NewLookup(cat, nil)
	b.handler = newMiddleware(t, b.store)
	return b
}

func newMiddleware(t *testing.T, store tenancy.Store) http.Handler {
	t.Helper()
	mw, err := tenancyhttp.Middleware(store, &tenancyhttp.Config{
		Resolvers: []tenancyhttp.Resolver{
			tenancyhttp.FromSubdomain("localhost", "example.com"),
			tenancyhttp.FromDomain(),
			tenancyhttp.FromHeader("X-Tenant", netip.MustParsePrefix("10.0.0.0/8")),
			tenancyhttp.FromPath("/t/"),
		},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tn := tenancy.MustFromContext(r.Context())
		w.Write([]byte(tn.Slug + " " + r.URL.Path))
	}))
}

// bareMiddleware is the middleware with the subdomain and domain resolvers in front of a handler
// that only calls served.
func (b *bundle) bareMiddleware(t *testing.T, served func()) http.Handler {
	t.Helper()
	mw, err := tenancyhttp.Middleware(b.store, &tenancyhttp.Config{
		Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("localhost"), tenancyhttp.FromDomain()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served() }))
}

type call struct {
	host, path, remote string
	header             map[string]string
	lines              map[string][]string // headers sent as several lines, in order
}

func (b *bundle) do(c call) *httptest.ResponseRecorder {
	if c.path == "" {
		c.path = "/whoami"
	}
	r := httptest.NewRequest("GET", c.path, nil)
	r.Host = c.host
	r.RemoteAddr = "203.0.113.7:5555" // the internet
	if c.remote != "" {
		r.RemoteAddr = c.remote
	}
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	for k, vs := range c.lines {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	w := httptest.NewRecorder()
	b.handler.ServeHTTP(w, r)
	return w
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const (
		noTenant  = tenancyhttp.ProblemNoTenant
		reserved  = tenancyhttp.ProblemReservedTenant
		unknown   = tenancyhttp.ProblemUnknownTenant
		suspended = tenancyhttp.ProblemTenantSuspended
	)
	tests := []struct {
		name   string
		call   call
		status int
		want   string // the handler's body when served, else the problem type
	}{
		{"subdomain", call{host: "acme.localhost"}, 200, "acme /whoami"},
		{"subdomain with port, mixed case", call{host: "ACME.LocalHost:8080"}, 200, "acme /whoami"},
		{"subdomain with trailing dot", call{host: "acme.localhost."}, 200, "acme /whoami"},
		{"second base domain", call{host: "acme.example.com"}, 200, "acme /whoami"},
		{"custom domain", call{host: "shop.acme.com"}, 200, "acme /whoami"},
		{"custom domain, upper case with port", call{host: "SHOP.ACME.COM:443"}, 200, "acme /whoami"},
		{"suspended", call{host: "globex.localhost"}, 403, suspended},
		{"deleted is unknown", call{host: "initech.localhost"}, 404, unknown},
		{"unknown subdomain", call{host: "nobody.localhost"}, 404, unknown},
		{"unknown custom domain", call{host: "unknown.com"}, 404, unknown},
		{"internationalized unknown", call{host: "BÜCHER.localhost"}, 404, unknown},
		{"reserved www", call{host: "www.localhost"}, 400, reserved},
		{"reserved api", call{host: "api.example.com"}, 400, reserved},
		{"two labels under base", call{host: "a.acme.localhost"}, 400, noTenant},
		{"bare base domain", call{host: "localhost"}, 400, noTenant},
		{"bare second base", call{host: "example.com:8080"}, 400, noTenant},
		{"ipv4", call{host: "127.0.0.1:8080"}, 400, noTenant},
		{"ipv6", call{host: "[::1]:8080"}, 400, noTenant},
		{"empty host", call{host: ""}, 400, noTenant},
		{"malformed host", call{host: "acme..localhost"}, 400, noTenant},
		{"markup in host", call{host: "<script>alert(1)</script>.localhost"}, 400, noTenant},
		{"forwarded host from the internet is ignored", call{host: "nobody.localhost",
			header: map[string]string{"X-Forwarded-Host": "acme.localhost"}}, 404, unknown},
		{"forwarded host from a trusted proxy", call{host: "lb.internal", remote: "192.168.1.10:4000",
			header: map[string]string{"X-Forwarded-Host": "acme.localhost"}}, 200, "acme /whoami"},
		{"forwarded host: the proxy's value wins over the client's", call{host: "lb.internal", remote: "192.168.1.10:4000",
			header: map[string]string{"X-Forwarded-Host": "globex.localhost, acme.localhost"}}, 200, "acme /whoami"},
		{"forwarded host: the proxy's own line wins over the client's line", call{host: "lb.internal", remote: "192.168.1.10:4000",
			lines: map[string][]string{"X-Forwarded-Host": {"globex.localhost", "acme.localhost"}}}, 200, "acme /whoami"},
		{"forwarded host: the client's line never names the tenant", call{host: "lb.internal", remote: "192.168.1.10:4000",
			lines: map[string][]string{"X-Forwarded-Host": {"acme.localhost", "nobody.localhost"}}}, 404, unknown},
		{"forwarded host: the last value of the last line", call{host: "lb.internal", remote: "192.168.1.10:4000",
			lines: map[string][]string{"X-Forwarded-Host": {"acme.localhost, globex.localhost", "nobody.localhost, acme.localhost"}}}, 200, "acme /whoami"},
		{"forwarded host: an empty last value is no host", call{host: "acme.localhost", remote: "192.168.1.10:4000",
			lines: map[string][]string{"X-Forwarded-Host": {"acme.localhost", "acme.localhost,"}}}, 400, noTenant},
		{"forwarded host lines from the internet are ignored", call{host: "nobody.localhost",
			lines: map[string][]string{"X-Forwarded-Host": {"globex.localhost", "acme.localhost"}}}, 404, unknown},
		{"port out of range", call{host: "acme.localhost:99999"}, 400, noTenant},
		{"port 65536", call{host: "acme.localhost:65536"}, 400, noTenant},
		{"port 0", call{host: "acme.localhost:0"}, 400, noTenant},
		{"port 65535", call{host: "acme.localhost:65535"}, 200, "acme /whoami"},
		{"forwarded port out of range", call{host: "lb.internal", remote: "192.168.1.10:4000",
			header: map[string]string{"X-Forwarded-Host": "acme.localhost:70000"}}, 400, noTenant},
		{"header from a trusted caller", call{host: "svc", remote: "10.0.0.5:1234",
			header: map[string]string{"X-Tenant": "acme"}}, 200, "acme /whoami"},
		{"header with the tenant id", call{host: "svc", remote: "10.0.0.5:1234",
			header: map[string]string{"X-Tenant": b.acme.ID}}, 200, "acme /whoami"},
		{"header from the internet is refused", call{host: "svc",
			header: map[string]string{"X-Tenant": "acme"}}, 400, noTenant},
		{"header cannot override the subdomain", call{host: "globex.localhost", remote: "10.0.0.5:1234",
			header: map[string]string{"X-Tenant": "acme"}}, 403, suspended},
		{"header cannot override a custom domain", call{host: "unknown.com", remote: "10.0.0.5:1234",
			header: map[string]string{"X-Tenant": "acme"}}, 404, unknown},
		{"tenant header sent twice", call{host: "svc", remote: "10.0.0.5:1234",
			lines: map[string][]string{"X-Tenant": {"acme", "globex"}}}, 400, noTenant},
		{"malformed header", call{host: "svc", remote: "10.0.0.5:1234",
			header: map[string]string{"X-Tenant": "ac me"}}, 400, noTenant},
		{"path prefix", call{host: "localhost", path: "/t/acme/projects/1"}, 200, "acme /projects/1"},
		{"path prefix, tenant root", call{host: "localhost", path: "/t/acme"}, 200, "acme /"},
		{"path prefix, unknown", call{host: "localhost", path: "/t/nobody/x"}, 404, unknown},
		{"path prefix, malformed", call{host: "localhost", path: "/t/Ac%20me/x"}, 400, noTenant},
		{"path cannot override the subdomain", call{host: "globex.localhost", path: "/t/acme/x"}, 403, suspended},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := b.do(tt.call)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if tt.status == 200 {
				if got := w.Body.String(); got != tt.want {
					t.Fatalf("served %q, want %q", got, tt.want)
				}
				return
			}
			checkProblem(t, w, tt.status, tt.want)
			if strings.Contains(w.Body.String(), "<script>") || strings.Contains(w.Body.String(), "nobody") {
				t.Fatalf("the problem echoes the request: %s", w.Body)
			}
		})
	}
}

func checkProblem(t *testing.T, w *httptest.ResponseRecorder, status int, typ string) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p tenancyhttp.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, w.Body)
	}
	if p.Type != typ || p.Status != status || p.Title == "" {
		t.Fatalf("problem %+v, want type %s status %d", p, typ, status)
	}
}

func TestMiddlewareStoreDownIs503(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if w := b.do(call{host: "acme.localhost"}); w.Code != 200 {
		t.Fatalf("control: %d %s", w.Code, w.Body)
	}
	pool, err := pgxpool.New(context.Background(), tenancytest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := tenancycatalog.NewCatalog(pool, nil)
	pool.Close()
	store, _ := tenancycache.NewLookup(cat, nil)
	down := &bundle{handler: newMiddleware(t, store)}
	for _, host := range []string{"acme.localhost", "shop.acme.com"} {
		w := down.do(call{host: host})
		if w.Code != 503 || w.Header().Get("Retry-After") == "" {
			t.Fatalf("%s with the catalog down: %d %s, want 503 with Retry-After", host, w.Code, w.Body)
		}
		checkProblem(t, w, 503, tenancyhttp.ProblemUnavailable)
	}
}

func TestMiddlewareConfigErrors(t *testing.T) {
	t.Parallel()
	store := setup(t).store
	tests := map[string]*tenancyhttp.Config{
		"nil config":          nil,
		"no resolvers":        {},
		"zero resolver":       {Resolvers: []tenancyhttp.Resolver{{}}},
		"subdomain, no base":  {Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain()}},
		"subdomain, bad base": {Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("exa mple.com")}},
		"header, no networks": {Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromHeader("X-Tenant")}},
		"header named Host":   {Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromHeader("host", netip.MustParsePrefix("10.0.0.0/8"))}},
		"path without slash":  {Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromPath("t")}},
		"func nil":            {Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromFunc(nil)}},
	}
	for name, cfg := range tests {
		if _, err := tenancyhttp.Middleware(store, cfg); err == nil {
			t.Errorf("%s: Middleware accepted it", name)
		}
	}
	if _, err := tenancyhttp.Middleware(nil, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromDomain()}}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := tenancyhttp.Middleware(store, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromDomain()}}); err != nil {
		t.Errorf("control: a valid config was refused: %v", err)
	}
}

func TestMiddlewareFromFunc(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mw, err := tenancyhttp.Middleware(b.store, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{
		tenancyhttp.FromFunc(func(r *http.Request) (string, error) { return r.URL.Query().Get("tenant"), nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(tenancy.MustFromContext(r.Context()).Slug))
	}))
	for q, want := range map[string]int{"?tenant=acme": 200, "?tenant=globex": 403, "": 400} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/"+q, nil))
		if w.Code != want {
			t.Errorf("%q: %d, want %d", q, w.Code, want)
		}
	}
}

// The negative cache: a flood of requests for one unknown host costs one catalog query.
func TestMiddlewareUnknownHostIsCached(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := b.store.Stats().Loads
	for range 100 {
		if w := b.do(call{host: "ghost.localhost"}); w.Code != 404 {
			t.Fatalf("%d", w.Code)
		}
	}
	if loads := b.store.Stats().Loads - before; loads != 1 {
		t.Fatalf("100 requests for an unknown host cost %d queries, want 1", loads)
	}
}
