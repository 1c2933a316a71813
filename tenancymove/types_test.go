package tenancymove_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymove"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// typesLine has a type of the tenant line's own (an enum, made in each schema the line runs in)
// and values a JSON round trip would change.
var typesLine = fstest.MapFS{
	"0001_notes.sql": {Data: []byte(`
		CREATE TYPE mood AS ENUM ('calm', 'busy');
		CREATE TABLE notes (
			tenant_id uuid NOT NULL,
			id        int NOT NULL,
			mood      mood NOT NULL,
			doc       jsonb,
			raw       json,
			nums      int[],
			PRIMARY KEY (tenant_id, id));
		SELECT tenancy.isolate('notes');`)},
}

// TestMoveKeepsEveryValue moves a tenant whose table has a type of its own schema and values a
// JSON round trip would change — a jsonb null, json with duplicate keys and spaces, an array
// whose lower bound is not 1 — changing them while the move catches up, shared → schema →
// shared: every value arrives as it was.
func TestMoveKeepsEveryValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: typesLine})
	db := tenancytest.NewDB(t, env.Pool, &tenancypgx.Config{Store: env.Catalog})
	mover, err := tenancymove.New(env.Catalog, &tenancymove.Config{Migrator: env.Migrator})
	if err != nil {
		t.Fatal(err)
	}
	a := env.NewTenant(t, tenancy.IsolationShared)
	actx := tenancytest.Context(a)
	write := func(id int) {
		t.Helper()
		if _, err := db.Exec(actx, `INSERT INTO notes (id, mood, doc, raw, nums) VALUES ($1, 'busy', 'null', '{"a": 1, "a": 2}', '[0:1]={7,8}')
			ON CONFLICT (tenant_id, id) DO UPDATE SET mood = 'calm', doc = 'null', raw = '{ "b" : [1,  2] }', nums = '[-1:0]={5,6}'`, id); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		t.Helper()
		var out string
		if err := db.QueryRow(actx, `SELECT string_agg(format('%s|%s|%s|%s|%s', id, mood, doc, raw, nums), ';' ORDER BY id) FROM notes`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	write(1)
	write(2)
	for _, to := range []tenancycatalog.Placement{{Isolation: tenancy.IsolationSchema}, {Isolation: tenancy.IsolationShared}} {
		changed := false
		_, err := mover.Move(ctx, a.ID, &tenancymove.Opts{To: to, Progress: func(p tenancymove.Progress) {
			if p.Step == "catch up" && !changed {
				changed = true
				write(2) // changed while the move runs: copied again
				write(3)
			}
		}})
		if err != nil {
			t.Fatalf("move to %s: %v", to, err)
		}
		want := `1|busy|null|{"a": 1, "a": 2}|[0:1]={7,8};2|calm|null|{ "b" : [1,  2] }|[-1:0]={5,6};3|busy|null|{"a": 1, "a": 2}|[0:1]={7,8}`
		if to.Isolation == tenancy.IsolationShared {
			want = `1|busy|null|{"a": 1, "a": 2}|[0:1]={7,8};2|calm|null|{ "b" : [1,  2] }|[-1:0]={5,6};3|calm|null|{ "b" : [1,  2] }|[-1:0]={5,6}`
		}
		if got := read(); got != want {
			t.Fatalf("after the move to %s:\n got %s\nwant %s", to, got, want)
		}
		var jsonNull bool
		if err := db.QueryRow(actx, `SELECT doc IS NOT NULL AND jsonb_typeof(doc) = 'null' FROM notes WHERE id = 2`).Scan(&jsonNull); err != nil || !jsonNull {
			t.Fatalf("after the move to %s the jsonb null of a changed row is SQL NULL (%v)", to, err)
		}
		if _, err := mover.Finalize(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
	}
}
