package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymove"
)

// TestTenantMoveCommand moves a tenant of the reference service shared → schema → database with
// the CLI, and checks what it prints, what tenant show says of the move, the refusals of wrong
// calls, and that --finalize removes the old placement's data and nothing else.
func TestTenantMoveCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDatabaseURL(t)
	if r := run(t, "migrate", "--shared", "--tenant", "--database-url", db, "--migrations", "demo"); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	for _, slug := range []string{"acme", "globex"} {
		if r := run(t, "tenant", "create", slug, "--database-url", db); r.code != 0 {
			t.Fatalf("create %s: %+v", slug, r)
		}
	}
	pool := openPool(t, db)
	ids := map[string]string{}
	for slug, n := range map[string]int{"acme": 50, "globex": 7} {
		var id string
		if err := pool.QueryRow(ctx, `SELECT id::text FROM tenancy.tenants WHERE slug = $1`, slug).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[slug] = id
		if _, err := pool.Exec(ctx, `INSERT INTO projects (tenant_id, name) SELECT $1, 'p' || g FROM generate_series(1, $2) g`, id, n); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no destination", []string{"acme"}, "--to"},
		{"an unknown model", []string{"acme", "--to", "cloud"}, "invalid isolation"},
		{"two actions", []string{"acme", "--resume", "--abort"}, "one of"},
		{"a server for a schema", []string{"acme", "--to", "schema", "--server", "default"}, "--server"},
		{"a destination and an action", []string{"acme", "--to", "schema", "--finalize"}, "--to"},
	} {
		if r := run(t, append([]string{"tenant", "move", "--database-url", db}, c.args...)...); r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: %+v; want exit 2 mentioning %q", c.name, r, c.want)
		}
	}
	if r := run(t, "tenant", "move", "acme", "--to", "schema", "--database-url", db); r.code != 2 || !strings.Contains(r.stderr, "--migrations") {
		t.Fatalf("a move without the lines the tenants carry: %+v; want a refusal naming --migrations", r)
	}
	if r := run(t, "tenant", "move", "acme", "--abort", "--database-url", db, "--migrations", "demo"); r.code != 1 || !strings.Contains(r.stderr, "no move") {
		t.Fatalf("abort without a move: %+v", r)
	}

	r := run(t, "tenant", "move", "acme", "--to", "schema", "--database-url", db, "--migrations", "demo")
	if r.code != 0 || !strings.Contains(r.stdout, "moved acme from shared to schema") || !strings.Contains(r.stdout, "50 rows") {
		t.Fatalf("move to schema: %+v", r)
	}
	if r = run(t, "tenant", "show", "acme", "--database-url", db); !strings.Contains(r.stdout, "schema:") || !strings.Contains(r.stdout, "shared → schema, switched") {
		t.Fatalf("show after the move: %+v", r)
	}
	if r = run(t, "tenant", "move", "acme", "--to", "schema", "--database-url", db, "--migrations", "demo"); r.code != 1 || !strings.Contains(r.stderr, "there already") {
		t.Fatalf("a move to where the tenant is: %+v", r)
	}
	// The old rows stay in the shared tables until the move is finalized.
	if n := count(t, pool, `SELECT count(*) FROM public.projects WHERE tenant_id = $1`, ids["acme"]); n != 50 {
		t.Fatalf("before finalizing, the shared tables hold %d of acme's rows, want the 50 of the old placement", n)
	}

	r = run(t, "tenant", "move", "acme", "--to", "database", "--json", "--database-url", db, "--migrations", "demo")
	var res tenancymove.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); r.code != 0 || err != nil {
		t.Fatalf("move to database --json: %v %+v", err, r)
	}
	if res.Move.To != (tenancycatalog.Placement{Isolation: tenancy.IsolationDatabase, Server: tenancycatalog.DefaultServer}) ||
		len(res.Tables) != 4 || res.Tables[0].Table != "projects" || res.Tables[0].Rows != 50 || res.Pause <= 0 { // projects, exports, tasks, the job outbox
		t.Fatalf("move to database: %+v", res)
	}
	// Moving again finalized the move before: the shared rows are gone, globex's stay.
	if n := count(t, pool, `SELECT count(*) FROM public.projects WHERE tenant_id = $1`, ids["acme"]); n != 0 {
		t.Fatalf("the shared tables still hold %d of acme's rows after its first move was finalized", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM public.projects WHERE tenant_id = $1`, ids["globex"]); n != 7 {
		t.Fatalf("globex has %d rows in the shared tables, want its 7", n)
	}
	schema := tenancycatalog.SchemaName(ids["acme"])
	if n := count(t, pool, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema); n != 1 {
		t.Fatalf("the schema acme left is gone before its move was finalized")
	}
	r = run(t, "tenant", "move", "acme", "--finalize", "--database-url", db, "--migrations", "demo")
	if r.code != 0 || !strings.Contains(r.stdout, "finalized") {
		t.Fatalf("finalize: %+v", r)
	}
	if n := count(t, pool, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema); n != 0 {
		t.Fatalf("the old schema stays after the move was finalized")
	}
	r = run(t, "tenant", "show", "acme", "--json", "--database-url", db)
	var shown struct {
		tenancy.Tenant
		Move *tenancycatalog.Move `json:"move"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || shown.Isolation != tenancy.IsolationDatabase || shown.Move == nil ||
		shown.Move.State != tenancycatalog.MoveFinalized {
		t.Fatalf("show --json: %v %+v", err, r)
	}
}

func count(t *testing.T, q *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := q.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
