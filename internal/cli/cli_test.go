package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/cli"
	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancytest"
)

// newDatabaseURL returns the URL of a database that does not exist yet and is dropped after t,
// with the databases of its database tenants and their template.
func newDatabaseURL(t *testing.T) string {
	name := tenancytest.UniqueName("tenancy_cli")
	url := tenancytest.WithDatabase(tenancytest.AdminURL(), name)
	t.Cleanup(func() { tenancytest.DropDatabase(t, name) })
	t.Cleanup(func() { tenancytest.DropTenantDatabases(t, url, service.ReferenceLines()) })
	return url
}

// exists reports whether the database of url exists.
func exists(t *testing.T, url string) bool {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	admin := openPool(t, tenancytest.AdminURL())
	var ok bool
	if err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, cfg.Database).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// createDatabase creates the (empty) database of url.
func createDatabase(t *testing.T, url string) {
	t.Helper()
	if _, err := tenancyprovision.EnsureDatabase(context.Background(), url); err != nil {
		t.Fatal(err)
	}
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func TestTenantCommands(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)

	// A command that only reads or changes tenants creates nothing where there is no catalog (a
	// mistyped --database-url): it says which database and what makes one.
	r := run(t, "tenant", "list", "--json", "--database-url", db)
	if r.code != 1 || !strings.Contains(r.stderr, "no database") || !strings.Contains(r.stderr, "tenancy migrate") {
		t.Fatalf("list on a database that does not exist: %+v; want refused, naming what makes one", r)
	}
	for _, cmd := range [][]string{{"doctor"}, {"uninstall", "--yes"}} {
		if r := run(t, append(cmd, "--database-url", db)...); r.code != 1 || !strings.Contains(r.stderr, "there is no database") {
			t.Fatalf("%s on a database that does not exist: %+v; want refused, naming it", cmd[0], r)
		}
	}
	if exists(t, db) {
		t.Fatal("tenant list, doctor or uninstall created the database")
	}
	createDatabase(t, db)
	if r = run(t, "tenant", "suspend", "acme", "--database-url", db); r.code != 1 || !strings.Contains(r.stderr, "holds no tenant catalog") {
		t.Fatalf("suspend on a database without a catalog: %+v; want refused", r)
	}
	if r = run(t, "migrate", "--shared", "--database-url", db); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	// Positive control: once migrate made the catalog, list reads it.
	if r = run(t, "tenant", "list", "--json", "--database-url", db); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("list on the new catalog: %+v; want an empty list", r)
	}
	if r = run(t, "tenant", "create", "acme", "--name", "Acme Inc", "--plan", "pro", "--domain", "Shop.ACME.com.", "--database-url", db); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	if !strings.Contains(r.stdout, "shop.acme.com") || !strings.Contains(r.stdout, "Acme Inc") {
		t.Fatalf("create printed %q", r.stdout)
	}
	run(t, "tenant", "create", "globex", "--database-url", db)

	r = run(t, "tenant", "show", "acme", "--json", "--database-url", db)
	var acme tenancy.Tenant
	if err := json.Unmarshal([]byte(r.stdout), &acme); err != nil || acme.Slug != "acme" || acme.Plan != "pro" ||
		acme.Status != tenancy.StatusActive || len(acme.Domains) != 1 {
		t.Fatalf("show --json: %v %+v", err, r)
	}
	r = run(t, "tenant", "list", "--json", "--database-url", db)
	var list []tenancy.Tenant
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Fatalf("list --json: %v %+v", err, r)
	}
	if r = run(t, "tenant", "list", "--database-url", db); !strings.Contains(r.stdout, "acme") || !strings.Contains(r.stdout, "globex") {
		t.Fatalf("list: %+v", r)
	}

	for _, step := range []struct {
		args   []string
		status string
	}{
		{[]string{"suspend", "acme"}, "suspended"},
		{[]string{"resume", "acme"}, "active"},
		{[]string{"delete", "globex"}, "deleted"},
	} {
		r = run(t, append(append([]string{"tenant"}, step.args...), "--json", "--database-url", db)...)
		var got tenancy.Tenant
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || string(got.Status) != step.status {
			t.Fatalf("%v: %+v", step.args, r)
		}
	}
	if r = run(t, "tenant", "update", "acme", "--plan", "enterprise", "--name", "Acme Corp", "--json", "--database-url", db); r.code != 0 ||
		!strings.Contains(r.stdout, `"plan": "enterprise"`) || !strings.Contains(r.stdout, `"name": "Acme Corp"`) {
		t.Fatalf("update: %+v", r)
	}
	if r = run(t, "tenant", "update", "acme", "--database-url", db); r.code != 1 || !strings.Contains(r.stderr, "nothing to update") {
		t.Fatalf("update with nothing: %+v", r)
	}
	if r = run(t, "tenant", "update", "acme", "--plan", "Gold Plan", "--database-url", db); r.code != 2 || !strings.Contains(r.stderr, "plan") {
		t.Fatalf("update with a bad plan: %+v", r)
	}
	// The plans are a configured set: an unknown one is a wrong call, a configured one is taken.
	if r = run(t, "tenant", "update", "acme", "--plan", "premium", "--database-url", db); r.code != 2 || !strings.Contains(r.stderr, `unknown plan "premium"`) {
		t.Fatalf("update to an unknown plan: %+v", r)
	}
	if r = run(t, "tenant", "update", "acme", "--plan", "premium", "--plan-limits", "free=10/min;premium=99/min", "--database-url", db); r.code != 0 {
		t.Fatalf("update to a configured plan: %+v", r)
	}
	if r = run(t, "tenant", "set-limit", "acme", "500/min", "--database-url", db); r.code != 0 || !strings.Contains(r.stdout, "rate limit:  500/min") {
		t.Fatalf("set-limit: %+v", r)
	}
	if r = run(t, "tenant", "set-limit", "acme", "lots", "--database-url", db); r.code != 2 || !strings.Contains(r.stderr, "invalid limit") {
		t.Fatalf("set-limit with a bad limit: %+v", r)
	}
	if r = run(t, "tenant", "set-limit", "acme", "plan", "--database-url", db); r.code != 0 || strings.Contains(r.stdout, "rate limit") {
		t.Fatalf("set-limit plan: %+v", r)
	}
	if r = run(t, "tenant", "domain", "add", "acme", "bücher.example", "--json", "--database-url", db); r.code != 0 ||
		!strings.Contains(r.stdout, "xn--bcher-kva.example") {
		t.Fatalf("domain add: %+v", r)
	}
	if r = run(t, "tenant", "domain", "remove", "acme", "xn--bcher-kva.example", "--database-url", db); r.code != 0 {
		t.Fatalf("domain remove: %+v", r)
	}

	failures := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"duplicate slug", []string{"tenant", "create", "acme"}, 1, "slug acme is already taken"},
		{"invalid slug", []string{"tenant", "create", "-x"}, 2, ""}, // a flag, not a slug
		{"invalid slug chars", []string{"tenant", "create", "Ac_me"}, 2, "only a-z"},
		{"reserved slug", []string{"tenant", "create", "www"}, 2, "reserved"},
		{"punycode slug", []string{"tenant", "create", "xn--cme-gna"}, 2, "third and fourth"},
		{"bad isolation", []string{"tenant", "create", "x1", "--isolation", "rows"}, 2, "invalid isolation"},
		{"bad status", []string{"tenant", "list", "--status", "weird"}, 2, "invalid status"},
		{"bad domain operation", []string{"tenant", "domain", "rename", "acme", "a.example"}, 2, "add or remove"},
		{"bad domain", []string{"tenant", "create", "x2", "--domain", "10.0.0.1"}, 2, "invalid domain"},
		{"bad domain to add", []string{"tenant", "domain", "add", "acme", "bad domain"}, 2, "not a domain name"},
		{"unknown flag", []string{"tenant", "create", "x7", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"duplicate domain", []string{"tenant", "create", "x3", "--domain", "shop.acme.com"}, 1, "domain shop.acme.com already belongs to tenant acme"},
		{"unknown server", []string{"tenant", "create", "x4", "--isolation", "database", "--server", "evil"}, 2, `unknown server alias "evil"`},
		{"server for a shared tenant", []string{"tenant", "create", "x6", "--server", "other"}, 2, "only for database tenants"},
		{"the refused ones were not made", []string{"tenant", "show", "x4"}, 1, "no tenant x4"},
		{"unknown tenant", []string{"tenant", "show", "nobody"}, 1, "no tenant nobody"},
		{"suspend deleted", []string{"tenant", "suspend", "globex"}, 1, "tenant globex is deleted"},
		{"delete deleted", []string{"tenant", "delete", "globex"}, 1, "tenant globex is already deleted"},
		{"remove a domain the tenant lacks", []string{"tenant", "domain", "remove", "acme", "nope.example"}, 1, "tenant acme has no domain nope.example"},
		{"missing argument", []string{"tenant", "show"}, 2, "argument"},
		{"unknown subcommand", []string{"tenant", "rename", "acme"}, 2, "unknown tenant subcommand"},
		{"unknown command", []string{"deploy"}, 2, "unknown command"},
		{"migrate without a line", []string{"migrate"}, 2, "--shared"},
	}
	for _, f := range failures {
		r = run(t, append(f.args, "--database-url", db)...)
		if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("%s: more than one line on stderr: %q", f.name, r.stderr)
		}
		if r.code != f.code || !strings.Contains(r.stderr, f.says) {
			t.Errorf("%s: exit %d stderr %q; want exit %d saying %q", f.name, r.code, r.stderr, f.code, f.says)
		}
	}
}

func TestDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	r := run(t, "tenant", "list", "--database-url", "postgres://postgres@127.0.0.1:1/tenancy?sslmode=disable&connect_timeout=2")
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("%+v; want exit 1 and one line", r)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startServe runs `tenancy serve` with args on a free port and returns its address and a stop
// function that cancels it (as SIGINT does) and returns its exit code.
func startServe(t *testing.T, args ...string) (addr string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), &out, &errOut)
	}()
	stop = func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not shut down")
			return -1
		}
	}
	addrRE := regexp.MustCompile(`serving on (127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			return m[1], stop
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start: %s %s", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, addr, host, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHealthy waits up to 10 s for /healthz to answer 200 with a body containing want.
func waitHealthy(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, addr, "localhost", "/healthz", "")
		if code == 200 && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz: %d %s, want 200 with %s", code, body, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The README's first command, end to end: serve --demo on a database that does not exist yet.
func TestServeDemo(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	addr, stop := startServe(t, "--demo", "--database-url", db, "--admin-token", "s3cret")
	for _, slug := range []string{"acme", "globex", "initech"} {
		code, body := get(t, addr, slug+".localhost", "/whoami", "")
		var who tenancy.Tenant
		if code != 200 || json.Unmarshal([]byte(body), &who) != nil || who.Slug != slug || !tenancy.IsID(who.ID) {
			t.Fatalf("whoami as %s: %d %s", slug, code, body)
		}
		want := map[string]tenancy.Isolation{"acme": tenancy.IsolationShared, "globex": tenancy.IsolationSchema,
			"initech": tenancy.IsolationDatabase}[slug]
		if who.Isolation != want {
			t.Fatalf("%s has isolation %s, want %s", slug, who.Isolation, want)
		}
	}
	if code, _ := get(t, addr, "localhost", "/whoami", ""); code != 400 {
		t.Fatalf("bare localhost: %d, want 400", code)
	}
	// Each demo tenant has projects of its own, and only its own.
	seen := map[string]string{}
	for _, slug := range []string{"acme", "globex", "initech"} {
		code, body := get(t, addr, slug+".localhost", "/projects", "")
		var projects []struct{ ID, Name string }
		if code != 200 || json.Unmarshal([]byte(body), &projects) != nil || len(projects) == 0 {
			t.Fatalf("%s's demo projects: %d %s", slug, code, body)
		}
		for _, p := range projects {
			if other, dup := seen[p.ID]; dup {
				t.Fatalf("project %s is listed by %s and %s", p.ID, other, slug)
			}
			seen[p.ID] = slug
		}
	}
	waitHealthy(t, addr, `"status": "ok"`)
	if code, _ := get(t, addr, "localhost", "/admin/tenants", ""); code != 401 {
		t.Fatalf("admin without token: %d, want 401", code)
	}
	if code, _ := get(t, addr, "localhost", "/admin/tenants", "wrong"); code != 401 {
		t.Fatalf("admin with a wrong token: %d, want 401", code)
	}
	if code, body := get(t, addr, "localhost", "/admin/tenants", "s3cret"); code != 200 || strings.Count(body, `"slug"`) != 3 {
		t.Fatalf("admin list: %d %s", code, body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d on shutdown", code)
	}
	// Seeding is idempotent: a second start on the same database creates nothing and serves.
	addr, stop = startServe(t, "--demo", "--database-url", db)
	if code, _ := get(t, addr, "acme.localhost", "/whoami", ""); code != 200 {
		t.Fatalf("second start: whoami %d", code)
	}
	if code, _ := get(t, addr, "localhost", "/admin/tenants", ""); code != 404 {
		t.Fatalf("admin API without a configured token: %d, want 404 (off)", code)
	}
	if code := stop(); code != 0 {
		t.Fatalf("second serve exited %d", code)
	}
}

func TestServeWithRedis(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	t.Cleanup(func() { // the keys under the default prefix, tenancy:<database>:
		opts, err := redis.ParseURL(tenancytest.RedisURL())
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		ctx := context.Background()
		cfg, _ := pgx.ParseConfig(db)
		name := cfg.Database
		iter := rdb.Scan(ctx, 0, "tenancy:"+name+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	addr, stop := startServe(t, "--demo", "--database-url", db, "--redis-url", tenancytest.RedisURL())
	waitHealthy(t, addr, `"redis": "ok"`)
	// With Redis: limits, the app cache and the catalog's second level live there.
	for range 2 {
		if code, body := get(t, addr, "acme.localhost", "/stats", ""); code != 200 || !strings.Contains(body, `"projects"`) {
			t.Fatalf("stats with Redis: %d %s", code, body)
		}
	}
	if code, _ := get(t, addr, "globex.localhost", "/whoami", ""); code != 200 {
		t.Fatalf("whoami with Redis: %d", code)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	r := run(t, "serve", "--addr", "127.0.0.1:0", "--database-url", db, "--migrations", "demo", "--redis-url", "redis://127.0.0.1:1/0")
	if r.code != 1 || !strings.Contains(r.stderr, "redis") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("serve with Redis unreachable: %+v; want exit 1 and one line naming Redis", r)
	}
	r = run(t, "serve", "--addr", "127.0.0.1:0", "--database-url", db, "--redis-url", "mysql://x")
	if r.code != 1 || !strings.Contains(r.stderr, "redis URL") {
		t.Fatalf("serve with a bad Redis URL: %+v", r)
	}
}

func TestDoctorCommand(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	if r := run(t, "migrate", "--shared", "--database-url", db); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	r := run(t, "doctor", "--database-url", db)
	if r.code != 0 || !strings.Contains(r.stdout, "OK") {
		t.Fatalf("doctor on a clean database: %+v", r)
	}
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE leaky (tenant_id uuid NOT NULL, secret text)`); err != nil {
		t.Fatal(err)
	}
	r = run(t, "doctor", "--database-url", db)
	if r.code != 1 || !strings.Contains(r.stdout, "rls-disabled") || !strings.Contains(r.stdout, "leaky") {
		t.Fatalf("doctor with an unprotected tenant table: %+v", r)
	}
	r = run(t, "doctor", "--json", "--database-url", db)
	var rep struct {
		Databases []struct{ Database string }
		Findings  []struct{ Kind, Object, Database, Severity, Problem, Fix string }
		Ignored   []struct{ Kind, Object, Reason string }
	}
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Findings) != 1 || len(rep.Databases) != 1 {
		t.Fatalf("doctor --json: %+v", r)
	}
	if f := rep.Findings[0]; f.Kind != "rls-disabled" || f.Object != "leaky" || f.Database != rep.Databases[0].Database ||
		f.Severity != "critical" || !strings.Contains(f.Fix, "tenancy.isolate('leaky'") {
		t.Fatalf("doctor --json finding: %+v", f)
	}
	// serve runs the same audit and refuses to start.
	r = run(t, "serve", "--addr", "127.0.0.1:0", "--database-url", db)
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to serve") || !strings.Contains(r.stderr, "leaky") {
		t.Fatalf("serve on a database with a hole: %+v", r)
	}

	// Accepting a finding takes a written reason; it is kept in the catalog, so serve respects it.
	for _, bad := range [][]string{
		{"--ignore", "rls-disabled:leaky"},
		{"--ignore", "leaky", "--reason", "x"},
		{"--reason", "x"},
	} {
		if r := run(t, append([]string{"doctor", "--database-url", db}, bad...)...); r.code != 2 {
			t.Fatalf("doctor %v: %+v", bad, r)
		}
	}
	r = run(t, "doctor", "--json", "--database-url", db, "--ignore", "rls-disabled:leaky", "--reason", "test fixture, no tenant data")
	rep.Findings, rep.Ignored = nil, nil
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Findings) != 0 || len(rep.Ignored) != 1 ||
		rep.Ignored[0].Reason != "test fixture, no tenant data" {
		t.Fatalf("doctor --ignore: %+v", r)
	}
	if r := run(t, "doctor", "--database-url", db); r.code != 0 || !strings.Contains(r.stdout, "ACCEPTED") || !strings.Contains(r.stdout, "test fixture") {
		t.Fatalf("doctor after --ignore: %+v", r)
	}
	addr, stop := startServe(t, "--database-url", db) // it refused to start before
	waitHealthy(t, addr, "")
	stop()
	if r := run(t, "doctor", "--database-url", db, "--unignore", "rls-disabled:leaky"); r.code != 1 || !strings.Contains(r.stdout, "leaky") {
		t.Fatalf("doctor --unignore: %+v", r)
	}
}

func TestServePlanLimits(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	addr, stop := startServe(t, "--demo", "--database-url", db, "--plan-limits", "free=2/min;pro=3/min")
	defer stop()
	codes := func(host string, n int) (out []int) {
		for range n {
			code, _ := get(t, addr, host, "/whoami", "")
			out = append(out, code)
		}
		return out
	}
	if got := fmt.Sprint(codes("acme.localhost", 4)); got != "[200 200 200 429]" { // acme is on pro
		t.Fatalf("acme (pro, 3/min): %s", got)
	}
	if got := fmt.Sprint(codes("globex.localhost", 3)); got != "[200 200 429]" { // globex is on free
		t.Fatalf("globex (free, 2/min): %s", got)
	}
	if r := run(t, "serve", "--addr", "127.0.0.1:0", "--database-url", db, "--plan-limits", "free=often"); r.code == 0 {
		t.Fatalf("a bad --plan-limits was accepted: %+v", r)
	}
}

// The doctor audits each database tenant's own database too.
func TestDoctorAuditsTenantDatabases(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	run(t, "migrate", "--shared", "--tenant", "--database-url", db, "--migrations", "demo")
	if r := run(t, "tenant", "create", "dbco", "--isolation", "database", "--database-url", db, "--migrations", "demo"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	r := run(t, "doctor", "--json", "--database-url", db)
	var rep struct {
		Databases []struct {
			Database     string
			Tenants      []string
			TenantTables int `json:"tenant_tables"`
		}
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Databases) != 2 {
		t.Fatalf("doctor with a clean database tenant: %+v", r)
	}
	tenantDB := ""
	for _, d := range rep.Databases {
		if len(d.Tenants) == 1 && d.Tenants[0] == "dbco" && d.TenantTables > 0 {
			tenantDB = d.Database
		}
	}
	if tenantDB == "" {
		t.Fatalf("the database tenant's database was not audited: %+v", rep)
	}
	// A table without row-level security inside the tenant's database.
	cfg, _ := pgx.ParseConfig(db)
	cfg.Database = tenantDB
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Exec(context.Background(), `CREATE TABLE leaky (tenant_id uuid NOT NULL)`)
	conn.Close(context.Background())
	r = run(t, "doctor", "--database-url", db)
	if r.code != 1 || !strings.Contains(r.stdout, tenantDB) || !strings.Contains(r.stdout, "rls-disabled") {
		t.Fatalf("doctor with a hole in a tenant database: %+v", r)
	}
}

// Outside serve --demo, the reference service's tables are installed only on request: migrate and
// tenant create without --migrations apply the catalog alone, and say so.
func TestDemoTablesOnlyOnRequest(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	r := run(t, "migrate", "--shared", "--tenant", "--database-url", db)
	if r.code != 0 || !strings.Contains(r.stderr, "only the catalog") {
		t.Fatalf("migrate without --migrations: %+v", r)
	}
	if r := run(t, "tenant", "create", "plain", "--isolation", "schema", "--database-url", db); r.code != 0 || !strings.Contains(r.stderr, "only the catalog") {
		t.Fatalf("tenant create without --migrations: %+v", r)
	}
	// The placement is in the JSON (and in list's table).
	if r := run(t, "tenant", "show", "plain", "--json", "--database-url", db); r.code != 0 || !strings.Contains(r.stdout, `"schema": "tenant_`) {
		t.Fatalf("tenant show --json of a schema tenant: %+v", r)
	}
	if r := run(t, "tenant", "list", "--database-url", db); r.code != 0 || !strings.Contains(r.stdout, "PLACEMENT") || !strings.Contains(r.stdout, "tenant_") {
		t.Fatalf("tenant list: %+v", r)
	}
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tables := func() int {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_class WHERE relname IN ('projects', 'tasks') AND relkind = 'r'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := tables(); n != 0 {
		t.Fatalf("%d reference tables installed without --migrations", n)
	}
	if r := run(t, "migrate", "--tenant", "--database-url", db, "--migrations", "demo"); r.code != 0 || strings.Contains(r.stderr, "only the catalog") {
		t.Fatalf("migrate --migrations demo: %+v", r)
	}
	if n := tables(); n != 4 { // projects and tasks in public and in the schema tenant's schema
		t.Fatalf("--migrations demo installed %d reference tables, want 4", n)
	}
}

// Every command explains itself: -h prints its usage, arguments included, and exits 0; a wrong
// call exits 2; an empty environment variable is named, never taken for the default; errors
// carry one prefix.
func TestCLIExplainsItself(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"-h"}, "tenancy serve"},
		{[]string{"tenant", "-h"}, "set-limit SLUG LIMIT|plan"},
		{[]string{"tenant", "create", "-h"}, "usage: tenancy tenant create SLUG"},
		{[]string{"tenant", "set-limit", "-h"}, "SLUG LIMIT"},
		{[]string{"tenant", "domain", "--help"}, "add|remove SLUG DOMAIN"},
		{[]string{"migrate", "-h"}, "--shared | --tenant"},
		{[]string{"migrate", "status", "-h"}, "usage: tenancy migrate status"},
		{[]string{"doctor", "-h"}, "--ignore KIND:OBJECT"},
		{[]string{"serve", "-h"}, "usage: tenancy serve"},
	} {
		r := run(t, c.args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, c.says) {
			t.Errorf("tenancy %v: exit %d, %q; want 0 and %q", c.args, r.code, r.stdout+r.stderr, c.says)
		}
	}
	r := run(t, "tenant")
	for _, sub := range []string{"create", "list", "show", "update", "suspend", "resume", "delete", "provision", "set-limit", "domain"} {
		if r.code != 2 || !strings.Contains(r.stderr, "\n  "+sub+" ") {
			t.Errorf("tenancy tenant: exit %d, does not list %s: %q", r.code, sub, r.stderr)
		}
	}
	t.Setenv("TENANCY_DATABASE_URL", "")
	if r := run(t, "tenant", "list"); r.code != 2 || !strings.Contains(r.stderr, "TENANCY_DATABASE_URL is set but empty") {
		t.Fatalf("empty TENANCY_DATABASE_URL: %+v", r)
	}
	t.Setenv("TENANCY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/"+tenancytest.UniqueName("tenancy_none")+"?sslmode=disable")
	if r := run(t, "tenant", "create", "x", "--isolation", "rows"); strings.Count(r.stderr, "tenancy:") != 1 {
		t.Fatalf("an error with more than one prefix: %q", r.stderr)
	}
}

// uninstall removes every schema, database and template database the catalog made, then the
// catalog; a superseded template goes when the new one is made.
func TestUninstall(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	dir := t.TempDir()
	writeLines(t, dir, map[string]string{"0001_notes.sql": notesV1}, nil)
	with := func(args ...string) []string { return append(args, "--database-url", db, "--migrations", dir) }
	run(t, with("migrate", "--shared", "--tenant")...)
	for _, c := range [][2]string{{"s1", "schema"}, {"d1", "database"}} {
		if r := run(t, with("tenant", "create", c[0], "--isolation", c[1])...); r.code != 0 {
			t.Fatalf("create %s: %+v", c[0], r)
		}
	}
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	count := func(sql string, args ...any) int {
		var n int
		if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	dbName := pool.Config().ConnConfig.Database
	// A second tenant line: the new template supersedes the old one, which is dropped (uninstall
	// below finds only the new one).
	writeLines(t, dir, map[string]string{"0001_notes.sql": notesV1, "0002_more.sql": `ALTER TABLE notes ADD COLUMN extra text`}, nil)
	if r := run(t, with("tenant", "create", "d2", "--isolation", "database")...); r.code != 0 {
		t.Fatalf("create d2: %+v", r)
	}
	if r := run(t, "uninstall", "--database-url", db); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("uninstall without --yes: %+v", r)
	}
	cat, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	placed, err := cat.TenantDatabases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dbs := placed[tenancycatalog.DefaultServer]
	if n := count(`SELECT count(*) FROM pg_namespace WHERE nspname = 'river'`); n != 1 {
		t.Fatalf("before uninstall: %d River schemas, want the one migrate made", n)
	}
	r := run(t, "uninstall", "--yes", "--json", "--database-url", db)
	var removed struct{ Schemas, Databases, Templates []string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &removed) != nil || len(removed.Schemas) != 1 || len(removed.Databases) != 2 {
		t.Fatalf("uninstall: %+v", r)
	}
	if len(removed.Templates) != 1 {
		t.Fatalf("templates of this catalog at uninstall: %v, want the newest only", removed.Templates)
	}
	if n := count(`SELECT count(*) FROM pg_namespace WHERE nspname ~ '^tenant_' OR nspname IN ('tenancy', 'river')`); n != 0 {
		t.Fatalf("%d tenant, catalog or River schemas left in %s", n, dbName)
	}
	if n := count(`SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, dbs); len(dbs) != 2 || n != 0 {
		t.Fatalf("tenant databases %v: %d left", dbs, n)
	}
	var tpls []string
	for _, x := range removed.Templates {
		_, name, _ := strings.Cut(x, "/")
		tpls = append(tpls, name)
	}
	if n := count(`SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, tpls); n != 0 || !strings.HasPrefix(tpls[0], "tenancy_template_") {
		t.Fatalf("templates %v: %d left", tpls, n)
	}
	if r := run(t, "uninstall", "--yes", "--database-url", db); r.code != 1 || !strings.Contains(r.stderr, "no catalog") {
		t.Fatalf("uninstall twice: %+v", r)
	}
}

// A schema or database tenant made without --migrations, where the other tenants carry a tenant
// line, would be active without its tables: refused.
func TestCreateWithoutLinesRefusedWhenTenantsHaveOne(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	dir := t.TempDir()
	writeLines(t, dir, map[string]string{"0001_notes.sql": notesV1}, nil)
	if r := run(t, "migrate", "--shared", "--tenant", "--migrations", dir, "--database-url", db); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	if r := run(t, "tenant", "create", "bare", "--isolation", "schema", "--database-url", db); r.code != 2 || !strings.Contains(r.stderr, "give --migrations") {
		t.Fatalf("create without --migrations: %+v", r)
	}
	if r := run(t, "tenant", "show", "bare", "--database-url", db); r.code != 1 {
		t.Fatalf("the refused tenant was registered: %+v", r)
	}
	if r := run(t, "tenant", "create", "full", "--isolation", "schema", "--migrations", dir, "--database-url", db); r.code != 0 {
		t.Fatalf("create with --migrations: %+v", r)
	}
	if r := run(t, "tenant", "create", "flat", "--database-url", db); r.code != 0 { // shared: nothing to provision
		t.Fatalf("shared tenant without --migrations: %+v", r)
	}
}
