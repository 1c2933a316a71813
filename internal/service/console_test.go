package service_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancytest"
)

// newConsole returns a server with the admin token (and so the console) on, and its catalog's pool.
func newConsole(t *testing.T, token string) (*service.Server, *pgxpool.Pool) {
	t.Helper()
	return newConsoleWith(t, &service.ServerConfig{AdminToken: token})
}

// newConsoleWith is newConsole with a configuration of the test's.
func newConsoleWith(t *testing.T, cfg *service.ServerConfig) (*service.Server, *pgxpool.Pool) {
	t.Helper()
	pool, _ := tenancytest.NewCatalog(t)
	t.Cleanup(func() { tenancytest.DropTenantDatabases(t, pool.Config().ConnString(), service.ReferenceLines()) })
	m, err := tenancymigrate.New(pool, service.ReferenceLines())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return startServer(t, pool, cfg), pool
}

// operator is a browser's cookie jar against a handler, without a network.
type operator struct {
	t      *testing.T
	h      http.Handler
	cookie string
	addr   string // the client's address; httptest's when ""
}

func (o *operator) do(method, path string, form url.Values, headers ...string) *httptest.ResponseRecorder {
	o.t.Helper()
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, path, nil)
	}
	r.Host = "admin.localhost"
	if o.addr != "" {
		r.RemoteAddr = o.addr
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	if o.cookie != "" {
		r.Header.Set("Cookie", o.cookie)
	}
	w := httptest.NewRecorder()
	o.h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.Name == "tenancy_console" {
			o.cookie = c.Name + "=" + c.Value
			if c.MaxAge < 0 {
				o.cookie = ""
			}
		}
	}
	return w
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the page at path.
func (o *operator) csrf(path string) string {
	o.t.Helper()
	w := o.do("GET", path, nil)
	m := csrfField.FindStringSubmatch(w.Body.String())
	if w.Code != 200 || m == nil {
		o.t.Fatalf("GET %s: %d, no CSRF token in\n%s", path, w.Code, w.Body)
	}
	return m[1]
}

func (o *operator) signIn(token string) {
	o.t.Helper()
	w := o.do("POST", "/console/login", url.Values{"token": {token}, "next": {"/console/"}})
	if w.Code != http.StatusSeeOther || o.cookie == "" || w.Header().Get("Location") != "/console/" {
		o.t.Fatalf("sign in: %d %v, want 303 to /console/ with a session cookie", w.Code, w.Header())
	}
}

func statusOf(t *testing.T, c *tenancycatalog.Catalog, slug string) tenancy.Status {
	t.Helper()
	tn, err := c.TenantBySlug(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	return tn.Status
}

// Signing in: the console is off without an admin token, sends whoever is not signed in to the
// sign-in page, refuses a wrong token and a forged or foreign session, and signs out. Every
// page carries the security headers.
func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	off := &operator{t: t, h: newServer(t, "")}
	if w := off.do("GET", "/console/", nil); w.Code != 404 {
		t.Fatalf("console without an admin token: %d, want 404", w.Code)
	}
	const token = "console-s3cret"
	srv, _ := newConsole(t, token)
	o := &operator{t: t, h: srv.Handler()}
	w := o.do("GET", "/console/tenants/acme", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/login?next=%2Fconsole%2Ftenants%2Facme" {
		t.Fatalf("signed out: %d %q, want 303 to the sign-in page", w.Code, w.Header().Get("Location"))
	}
	if w := o.do("POST", "/console/login", url.Values{"token": {"wrong"}}); w.Code != 401 || o.cookie != "" ||
		!strings.Contains(w.Body.String(), "That is not the admin token") {
		t.Fatalf("a wrong token: %d cookie %q, want 401 and no session", w.Code, o.cookie)
	}
	w = o.do("POST", "/console/login", url.Values{"token": {token}, "next": {"//evil.example/"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/" {
		t.Fatalf("next=//evil.example/: sent to %q, want /console/", w.Header().Get("Location"))
	}
	set := w.Header().Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/console/"} {
		if !strings.Contains(set, want) {
			t.Fatalf("session cookie %q lacks %s", set, want)
		}
	}
	w = o.do("GET", "/console/", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<h1>Tenants</h1>") {
		t.Fatalf("signed in: %d\n%s", w.Code, w.Body)
	}
	h := w.Header()
	if h.Get("Content-Security-Policy") != "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'" ||
		h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("security headers: %v", h)
	}

	// A session signed under another token, or edited, is no session.
	good := o.cookie
	other := &operator{t: t, h: newServer(t, "another-token")}
	other.signIn("another-token")
	for name, cookie := range map[string]string{"another server's": other.cookie, "edited": strings.Replace(good, "=", "=9", 1)} {
		o.cookie = cookie
		if w := o.do("GET", "/console/", nil); w.Code != http.StatusSeeOther {
			t.Fatalf("%s session: %d, want 303 to sign in", name, w.Code)
		}
	}
	o.cookie = good
	csrf := o.csrf("/console/")
	if w := o.do("POST", "/console/logout", url.Values{"csrf": {csrf}}); w.Code != http.StatusSeeOther || o.cookie != "" {
		t.Fatalf("sign out: %d, cookie %q", w.Code, o.cookie)
	}
}

// Actions: a destructive one asks first, then acts; a post without the session's CSRF token or
// from another site changes nothing (and the same post with it does).
func TestConsoleActions(t *testing.T) {
	t.Parallel()
	const token = "console-s3cret"
	srv, _ := newConsole(t, token)
	c := srv.Catalog()
	ctx := context.Background()
	if _, err := c.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	o := &operator{t: t, h: srv.Handler()}
	o.signIn(token)
	csrf := o.csrf("/console/tenants/acme")

	if w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"confirm": {"yes"}}); w.Code != 403 {
		t.Fatalf("suspend without a CSRF token: %d, want 403", w.Code)
	}
	if w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {"x" + csrf}, "confirm": {"yes"}}); w.Code != 403 {
		t.Fatalf("suspend with a wrong CSRF token: %d, want 403", w.Code)
	}
	if w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {csrf}, "confirm": {"yes"}},
		"Sec-Fetch-Site", "cross-site"); w.Code != 403 {
		t.Fatalf("suspend from another site: %d, want 403", w.Code)
	}
	if w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {csrf}, "confirm": {"yes"}},
		"Origin", "https://evil.example"); w.Code != 403 {
		t.Fatalf("suspend with a foreign Origin: %d, want 403", w.Code)
	}
	w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {csrf}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Suspend acme?") || !strings.Contains(w.Body.String(), `name="confirm" value="yes"`) {
		t.Fatalf("suspend unconfirmed: %d, want the confirmation page\n%s", w.Code, w.Body)
	}
	if got := statusOf(t, c, "acme"); got != tenancy.StatusActive {
		t.Fatalf("after the refused and unconfirmed posts the tenant is %s, want active", got)
	}
	w = o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {csrf}, "confirm": {"yes"}},
		"Sec-Fetch-Site", "same-origin", "Origin", "http://admin.localhost")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/tenants/acme?done=suspend" {
		t.Fatalf("suspend confirmed: %d %q", w.Code, w.Header().Get("Location"))
	}
	if got := statusOf(t, c, "acme"); got != tenancy.StatusSuspended {
		t.Fatalf("after the confirmed suspend the tenant is %s", got)
	}
	if w := o.do("GET", "/console/tenants/acme?done=suspend", nil); !strings.Contains(w.Body.String(), "Suspended.") {
		t.Fatalf("the page after suspending does not say so:\n%s", w.Body)
	}
	if w := o.do("POST", "/console/tenants/acme/resume", url.Values{"csrf": {csrf}}); w.Code != http.StatusSeeOther {
		t.Fatalf("resume: %d", w.Code)
	}
	if got := statusOf(t, c, "acme"); got != tenancy.StatusActive {
		t.Fatalf("after resume the tenant is %s", got)
	}

	// The other forms, and their refusals shown on the page.
	for _, step := range []struct {
		action string
		form   url.Values
		code   int
		says   string
	}{
		{"plan", url.Values{"plan": {"pro"}}, 303, ""},
		{"plan", url.Values{"plan": {"platinum"}}, 400, "Unknown plan"},
		{"rate-limit", url.Values{"rate_limit": {"500/min"}}, 303, ""},
		{"rate-limit", url.Values{"rate_limit": {"lots"}}, 400, `value="lots"`}, // what was typed stays in the field
		{"domain-add", url.Values{"domain": {"App.Acme.Example"}}, 303, ""},
		{"domain-add", url.Values{"domain": {"not a domain"}}, 400, "Invalid domain"},
		{"domain-add", url.Values{"domain": {"<b>x</b>.example"}}, 400, `value="&lt;b&gt;x&lt;/b&gt;.example"`}, // kept, escaped
		{"domain-add", url.Values{"domain": {"newco.localhost"}}, 400, "subdomains, not custom domains"},        // would never route
		{"domain-remove", url.Values{"domain": {"never.acme.example"}, "confirm": {"yes"}}, 404, "no domain"},
		{"provision", url.Values{}, 409, "Tenant is not provisioning"},
		{"plan", url.Values{"plan": {"pro\xff"}}, 400, "not text"},
		{"domain-remove", url.Values{"domain": {"app.acme.example"}, "confirm": {"yes"}}, 303, ""},
		{"move", url.Values{"to": {"shared"}, "confirm": {"yes"}}, 409, "already"},
		{"unheard-of", url.Values{}, 404, "No such action"},
	} {
		step.form.Set("csrf", csrf)
		w := o.do("POST", "/console/tenants/acme/"+step.action, step.form)
		if w.Code != step.code || !strings.Contains(w.Body.String(), step.says) {
			t.Fatalf("%s %v: %d, want %d saying %q\n%s", step.action, step.form, w.Code, step.code, step.says, w.Body)
		}
	}
	tn, err := c.TenantBySlug(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if tn.Plan != "pro" || tn.RateLimit != "500/min" || len(tn.Domains) != 0 {
		t.Fatalf("after the forms: plan %q limit %q domains %v, want pro, 500/min, none", tn.Plan, tn.RateLimit, tn.Domains)
	}
	for _, path := range []string{"/console/tenants/nobody/resume", "/console/tenants/nobody/suspend", "/console/tenants/%ff/resume"} {
		if w := o.do("POST", path, url.Values{"csrf": {csrf}}); w.Code != 404 || strings.Contains(w.Body.String(), "Suspend nobody?") {
			t.Fatalf("%s: %d, want 404 (no confirmation for a tenant that does not exist)", path, w.Code)
		}
	}

	// A tenant being provisioned cannot move: refused at once, not reported as started.
	if _, err := c.Create(ctx, &tenancycatalog.CreateOpts{Slug: "prov", Isolation: tenancy.IsolationSchema}); err != nil {
		t.Fatal(err)
	}
	if w := o.do("POST", "/console/tenants/prov/move", url.Values{"csrf": {csrf}, "to": {"shared"}, "confirm": {"yes"}}); w.Code != 409 {
		t.Fatalf("moving a provisioning tenant: %d, want 409\n%s", w.Code, w.Body)
	}
	// A deleted tenant's page offers nothing to do.
	if w := o.do("POST", "/console/tenants/prov/delete", url.Values{"csrf": {csrf}, "confirm": {"yes"}}); w.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d", w.Code)
	}
	if body := o.do("GET", "/console/tenants/prov", nil).Body.String(); !strings.Contains(body, "nothing can be done") ||
		strings.Contains(body, `action="/console/tenants/prov/`) {
		t.Fatalf("a deleted tenant's page still offers actions:\n%s", body)
	}
}

// Signing out ends the session everywhere: the cookie saved before is refused afterwards (and
// its CSRF token with it), while another session goes on.
func TestConsoleSignOutEndsTheSession(t *testing.T) {
	t.Parallel()
	const token = "console-s3cret"
	srv, _ := newConsole(t, token)
	if _, err := srv.Catalog().Create(context.Background(), &tenancycatalog.CreateOpts{Slug: "acme"}); err != nil {
		t.Fatal(err)
	}
	o := &operator{t: t, h: srv.Handler()}
	o.signIn(token)
	other := &operator{t: t, h: srv.Handler()}
	other.signIn(token)
	saved, csrf := o.cookie, o.csrf("/console/")
	if w := o.do("POST", "/console/logout", url.Values{"csrf": {csrf}}); w.Code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", w.Code)
	}
	o.cookie = saved
	if w := o.do("GET", "/console/", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("the saved cookie after signing out: %d, want 303 to sign in", w.Code)
	}
	if w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {csrf}, "confirm": {"yes"}}); w.Code != 401 {
		t.Fatalf("a post with the saved cookie: %d, want 401", w.Code)
	}
	if got := statusOf(t, srv.Catalog(), "acme"); got != tenancy.StatusActive {
		t.Fatalf("the tenant is %s after a post of an ended session", got)
	}
	if w := other.do("GET", "/console/", nil); w.Code != 200 {
		t.Fatalf("control: the other session after the first signed out: %d, want 200", w.Code)
	}
}

// The base domain is compared as the subdomain resolver has it ("Example.COM." is example.com), so
// a tenant's subdomain is refused the operators' pages whatever its spelling; and while the catalog
// cannot answer, the admin API's /metrics is still served on a host that may be a custom domain
// (operators need it then), where the console says it cannot tell.
func TestOperatorHostsWithAnOddBaseDomainAndTheCatalogDown(t *testing.T) {
	t.Parallel()
	const token = "console-s3cret"
	srv, pool := newConsoleWith(t, &service.ServerConfig{AdminToken: token, BaseDomain: "Example.COM."})
	if _, err := srv.Catalog().Create(context.Background(), &tenancycatalog.CreateOpts{Slug: "acme"}); err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if w := call(h, "GET", "acme.example.com", "/whoami", "", ""); w.Code != 200 { // positive control: it is acme's host
		t.Fatalf("acme's request: %d, want 200", w.Code)
	}
	for host, want := range map[string]int{"acme.example.com": 404, "ACME.Example.com.": 404, "example.com": 200, "ops.example.net": 200} {
		for _, path := range []string{"/admin/tenants", "/metrics", "/console/login"} {
			if w := call(h, "GET", host, path, token, ""); w.Code != want {
				t.Fatalf("%s on %s: %d, want %d", path, host, w.Code, want)
			}
		}
	}
	// The catalog cannot answer from now on: its database refuses connections, its sessions end.
	admin, err := pgx.Connect(context.Background(), tenancytest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	db := pool.Config().ConnConfig.Database
	if _, err := admin.Exec(context.Background(), `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` ALLOW_CONNECTIONS false`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // first of the cleanups: theirs connect to it
		c, err := pgx.Connect(context.Background(), tenancytest.AdminURL())
		if err == nil {
			c.Exec(context.Background(), `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` ALLOW_CONNECTIONS true`)
			c.Close(context.Background())
		}
	})
	if _, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, db); err != nil {
		t.Fatal(err)
	}
	if w := call(h, "GET", "ops2.example.net", "/metrics", token, ""); w.Code != 200 {
		t.Fatalf("/metrics with the catalog down, on a host it cannot place: %d, want 200", w.Code)
	}
	if w := call(h, "GET", "ops2.example.net", "/console/login", "", ""); w.Code != 503 || !strings.Contains(w.Body.String(), "cannot say") {
		t.Fatalf("the console with the catalog down, on a host it cannot place: %d, want 503 saying why", w.Code)
	}
	if w := call(h, "GET", "example.com", "/console/login", "", ""); w.Code != 200 {
		t.Fatalf("the console on the base domain with the catalog down: %d, want 200 (no lookup needed)", w.Code)
	}
}

// The console, like the admin API, is not on a tenant's hosts (a custom domain is DNS the tenant
// may control); it answers browsers that send only Origin, and slows down whoever guesses the
// token.
func TestConsoleHostsOriginsAndGuesses(t *testing.T) {
	t.Parallel()
	const token = "console-s3cret"
	srv, _ := newConsole(t, token)
	if _, err := srv.Catalog().Create(context.Background(), &tenancycatalog.CreateOpts{Slug: "acme",
		Domains: []string{"shop.acme.example"}}); err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	for host, want := range map[string]int{"acme.localhost": 404, "shop.acme.example": 404, "nobody.localhost": 404,
		"admin.localhost": 200, "localhost:8080": 200, "127.0.0.1:8080": 200, "ops.example.net": 200} {
		r := httptest.NewRequest("GET", "/console/login", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Fatalf("the sign-in page on %s: %d, want %d", host, w.Code, want)
		}
		// The admin API and its /metrics, with the token, on the same hosts: the same answer.
		for _, path := range []string{"/admin/tenants", "/metrics"} {
			if w := call(h, "GET", host, path, token, ""); w.Code != want {
				t.Fatalf("%s on %s: %d, want %d", path, host, w.Code, want)
			}
		}
	}
	o := &operator{t: t, h: h}
	o.signIn(token)
	csrf := o.csrf("/console/")
	if w := o.do("GET", "/console/", nil); w.Header().Get("Referrer-Policy") != "same-origin" {
		t.Fatalf("Referrer-Policy %q, want same-origin (no-referrer makes browsers send Origin: null)", w.Header().Get("Referrer-Policy"))
	}
	// A browser without Sec-Fetch-Site: its Origin decides.
	if w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {csrf}, "confirm": {"yes"}}, "Origin", "null"); w.Code != 403 {
		t.Fatalf("Origin: null: %d, want 403", w.Code)
	}
	if w := o.do("POST", "/console/tenants/acme/suspend", url.Values{"csrf": {csrf}, "confirm": {"yes"}}, "Origin", "http://admin.localhost"); w.Code != 303 {
		t.Fatalf("Origin of this host, no Sec-Fetch-Site: %d, want 303", w.Code)
	}
	// Bad bytes are refused as such, not sent to PostgreSQL.
	for _, q := range []string{"q=%ff", "q=%00", "after=%ff", "plan=%00"} {
		if w := o.do("GET", "/console/?"+q, nil); w.Code != 400 {
			t.Fatalf("?%s: %d, want 400", q, w.Code)
		}
	}
	if w := o.do("GET", "/console/tenants/%ff", nil); w.Code != 404 {
		t.Fatalf("a slug that is not UTF-8: %d, want 404", w.Code)
	}
	// Guessing: ten tries a minute from one address, then 429 — for the right token too.
	guesser := &operator{t: t, h: h, addr: "198.51.100.9:4000"}
	codes := []int{}
	for range 10 {
		codes = append(codes, guesser.do("POST", "/console/login", url.Values{"token": {"guess"}}).Code)
	}
	w := guesser.do("POST", "/console/login", url.Values{"token": {token}})
	if fmt.Sprint(codes) != "[401 401 401 401 401 401 401 401 401 401]" || w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("ten wrong tokens then the right one: %v then %d (Retry-After %q), want ten 401 then 429", codes, w.Code, w.Header().Get("Retry-After"))
	}
	(&operator{t: t, h: h, addr: "198.51.100.10:4000"}).signIn(token) // control: another address signs in

}

// Every string a tenant or operator chose is text on the page, never markup.
func TestConsoleEscapes(t *testing.T) {
	t.Parallel()
	const token = "console-s3cret"
	srv, _ := newConsole(t, token)
	const name = `<script>alert("owned")</script><img src=x onerror=alert(1)>`
	if _, err := srv.Catalog().Create(context.Background(), &tenancycatalog.CreateOpts{Slug: "evil", Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Catalog().Create(context.Background(), &tenancycatalog.CreateOpts{Slug: "plain", Name: "Plain"}); err != nil {
		t.Fatal(err)
	}
	o := &operator{t: t, h: srv.Handler()}
	o.signIn(token)
	for _, path := range []string{"/console/", "/console/tenants/evil", "/console/?q=" + url.QueryEscape(`<script>`)} {
		body := o.do("GET", path, nil).Body.String()
		if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
			t.Fatalf("%s: markup from the tenant's name reached the page:\n%s", path, body)
		}
		if !strings.Contains(body, "&lt;script&gt;") {
			t.Fatalf("%s: the name (or search) is not shown as text:\n%s", path, body)
		}
	}
	// The search that found the evil tenant by its name does not find the plain one.
	body := o.do("GET", "/console/?q="+url.QueryEscape(`<script>`), nil).Body.String()
	if !strings.Contains(body, `href="/console/tenants/evil"`) || strings.Contains(body, `href="/console/tenants/plain"`) {
		t.Fatalf("search by name: want evil alone\n%s", body)
	}
}

// The list over 100,000 tenants: search by slug, name and domain, filters by status, isolation
// and plan, and pages by slug that reach the end.
func TestConsoleListsManyTenants(t *testing.T) {
	t.Parallel()
	const token = "console-s3cret"
	srv, pool := newConsole(t, token)
	ctx := context.Background()
	// 100,000 shared tenants, written as the catalog would (a fifth suspended, a tenth on pro).
	if _, err := pool.Exec(ctx, `INSERT INTO tenancy.tenants (slug, name, plan, status)
		SELECT format('t-%s', lpad(i::text, 6, '0')), format('Tenant %s', i),
		       CASE WHEN i % 10 = 0 THEN 'pro' ELSE 'free' END, CASE WHEN i % 5 = 0 THEN 'suspended' ELSE 'active' END
		  FROM generate_series(1, 100000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Catalog().Create(ctx, &tenancycatalog.CreateOpts{Slug: "zeta", Name: "Zeta Corp", Domains: []string{"shop.zeta.example"}}); err != nil {
		t.Fatal(err)
	}
	o := &operator{t: t, h: srv.Handler()}
	o.signIn(token)
	rows := regexp.MustCompile(`href="/console/tenants/([a-z0-9-]+)"`)
	list := func(query string) (slugs []string, next string) {
		t.Helper()
		w := o.do("GET", "/console/?"+query, nil)
		if w.Code != 200 {
			t.Fatalf("list ?%s: %d\n%s", query, w.Code, w.Body)
		}
		for _, m := range rows.FindAllStringSubmatch(w.Body.String(), -1) {
			slugs = append(slugs, m[1])
		}
		if m := regexp.MustCompile(`href="/console/\?([^"]+)" rel="next"`).FindStringSubmatch(w.Body.String()); m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		return slugs, next
	}
	first, next := list("")
	if len(first) != 50 || first[0] != "t-000001" || next == "" {
		t.Fatalf("first page: %d tenants from %v, next %q; want 50 from t-000001 and a next page", len(first), first[:min(3, len(first))], next)
	}
	second, _ := list(next)
	if len(second) != 50 || second[0] != "t-000051" {
		t.Fatalf("second page starts at %v, want t-000051", second[:min(1, len(second))])
	}
	last, next := list("after=t-099990")
	if fmt.Sprint(last) != "[t-099991 t-099992 t-099993 t-099994 t-099995 t-099996 t-099997 t-099998 t-099999 t-100000 zeta]" || next != "" {
		t.Fatalf("the last page: %v next %q", last, next)
	}
	for query, want := range map[string]string{
		"q=t-04242":                             "[t-042420 t-042421 t-042422 t-042423 t-042424 t-042425 t-042426 t-042427 t-042428 t-042429]",
		"q=ZETA+corp":                           "[zeta]",
		"q=shop.zeta":                           "[zeta]",
		"q=t-0424&status=suspended":             "[t-042400 t-042405 t-042410 t-042415 t-042420 t-042425 t-042430 t-042435 t-042440 t-042445 t-042450 t-042455 t-042460 t-042465 t-042470 t-042475 t-042480 t-042485 t-042490 t-042495]",
		"q=t-04242&plan=pro":                    "[t-042420]",
		"q=t-04242&isolation=schema":            "[]",
		"q=" + url.QueryEscape("%"):             "[]", // a plain character, not a wildcard
		"q=t-04242&status=active&plan=free":     "[t-042421 t-042422 t-042423 t-042424 t-042426 t-042427 t-042428 t-042429]",
		"q=zeta&isolation=shared&status=active": "[zeta]",
	} {
		if got, _ := list(query); fmt.Sprint(got) != want && !(want == "[]" && got == nil) {
			t.Fatalf("?%s: %v, want %s", query, got, want)
		}
	}
	if w := o.do("GET", "/console/?status=gone", nil); w.Code != 400 {
		t.Fatalf("an unknown status: %d, want 400", w.Code)
	}
}
