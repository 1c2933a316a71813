package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeLines writes migration files under dir/tenant (and dir/shared when shared is given).
func writeLines(t *testing.T, dir string, tenant map[string]string, shared map[string]string) {
	t.Helper()
	for sub, files := range map[string]map[string]string{"tenant": tenant, "shared": shared} {
		if files == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, sql := range files {
			if err := os.WriteFile(filepath.Join(dir, sub, name), []byte(sql), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

const notesV1 = `CREATE TABLE notes (tenant_id uuid NOT NULL, id serial, body text NOT NULL, PRIMARY KEY (tenant_id, id));
SELECT tenancy.isolate('notes');`

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	dir := t.TempDir()
	writeLines(t, dir, map[string]string{"0001_notes.sql": notesV1}, map[string]string{"0001_settings.sql": `CREATE TABLE settings (k text PRIMARY KEY)`})
	with := func(args ...string) []string { return append(args, "--database-url", db, "--migrations", dir) }

	r := run(t, with("migrate", "--shared", "--tenant")...)
	if r.code != 0 || !strings.Contains(r.stdout, "shared line: applied versions [1]") {
		t.Fatalf("first migrate: %+v", r)
	}
	for _, slug := range []string{"alpha", "beta", "gamma"} {
		if r = run(t, with("tenant", "create", slug, "--isolation", "schema")...); r.code != 0 || !strings.Contains(r.stdout, "status:     active") {
			t.Fatalf("create %s: %+v", slug, r)
		}
	}
	// A release adds migration 2; beta has something in its way.
	writeLines(t, dir, map[string]string{"0002_tags.sql": `CREATE TABLE tags (tenant_id uuid NOT NULL, tag text NOT NULL,
		PRIMARY KEY (tenant_id, tag)); SELECT tenancy.isolate('tags');`}, nil)
	r = run(t, "tenant", "show", "beta", "--json", "--database-url", db)
	var beta struct{ ID string }
	json.Unmarshal([]byte(r.stdout), &beta)
	pool := openPool(t, db)
	schema := "tenant_" + strings.ReplaceAll(beta.ID, "-", "")
	if _, err := pool.Exec(t.Context(), `CREATE TABLE `+schema+`.tags (x int)`); err != nil {
		t.Fatal(err)
	}

	r = run(t, with("migrate", "--tenant", "--dry-run")...)
	if r.code != 0 || !strings.Contains(r.stdout, "alpha: would apply [2]") || !strings.Contains(r.stdout, "4 target(s) to migrate") {
		t.Fatalf("dry run: %+v", r)
	}
	r = run(t, with("migrate", "--tenant", "--only", "alpha")...)
	if r.code != 0 || !strings.Contains(r.stdout, "1 target(s) migrated") {
		t.Fatalf("one tenant: %+v", r)
	}
	r = run(t, with("migrate", "--tenant", "--workers", "2")...)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL beta") || !strings.Contains(r.stdout, "2 target(s) migrated, 1 failed") ||
		!strings.Contains(r.stderr, "1 tenant(s) failed") {
		t.Fatalf("migrate with a failing tenant: %+v", r)
	}
	r = run(t, with("migrate", "status", "--json")...)
	var st []struct {
		Target    string
		Version   int
		Pending   int
		LastError string `json:"last_error"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st) != 4 {
		t.Fatalf("status --json: %v %+v", err, r)
	}
	for _, s := range st {
		if failed := s.Target == "beta"; failed != (s.Pending == 1 && s.LastError != "") || (!failed && s.Version != 2) {
			t.Errorf("status %+v", s)
		}
	}
	if r = run(t, with("migrate", "status")...); !strings.Contains(r.stdout, "1 of 4 target(s) behind version 2") {
		t.Fatalf("status: %+v", r)
	}
	// Fixed, a re-run applies only beta's pending migration.
	pool.Exec(t.Context(), `DROP TABLE `+schema+`.tags`)
	if r = run(t, with("migrate", "--tenant", "--json")...); r.code != 0 {
		t.Fatalf("re-run: %+v", r)
	}
	var res struct {
		Targets []struct {
			Target  string
			Applied []int
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Targets) != 1 || res.Targets[0].Target != "beta" {
		t.Fatalf("re-run --json: %v %s", err, r.stdout)
	}
	// Status read with an older line (only its first migration): every target is ahead of it.
	older := t.TempDir()
	writeLines(t, older, map[string]string{"0001_notes.sql": notesV1}, nil)
	if r = run(t, "migrate", "status", "--database-url", db, "--migrations", older); r.code != 0 || !strings.Contains(r.stderr, "ahead of the 1 migration(s) known here") {
		t.Fatalf("status with an older line: %+v", r)
	}

	for _, bad := range [][]string{{"migrate"}, {"migrate", "--schema", "alpha"}, {"migrate", "--tenant", "--workers", "-1"}} {
		if r := run(t, with(bad...)...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, r.code)
		}
	}
	if r := run(t, with("migrate", "--tenant", "--schema", "nobody")...); r.code != 1 || !strings.Contains(r.stderr, "not a schema or database tenant") {
		t.Errorf("unknown --schema: %+v", r)
	}
}

func TestTenantProvisionAndPurgeCommands(t *testing.T) {
	t.Parallel()
	db := newDatabaseURL(t)
	broken, good := t.TempDir(), t.TempDir()
	writeLines(t, broken, map[string]string{"0001_notes.sql": notesV1, "0002_broken.sql": `ALTER TABLE missing ADD x int`}, nil)
	writeLines(t, good, map[string]string{"0001_notes.sql": notesV1}, nil)
	run(t, "migrate", "--shared", "--database-url", db)

	r := run(t, "tenant", "create", "fragile", "--isolation", "schema", "--database-url", db, "--migrations", broken)
	if r.code != 1 || !strings.Contains(r.stderr, "tenancy tenant provision fragile") {
		t.Fatalf("create with a broken tenant line: %+v", r)
	}
	if r = run(t, "tenant", "show", "fragile", "--database-url", db); !strings.Contains(r.stdout, "provisioning") || !strings.Contains(r.stdout, "missing") {
		t.Fatalf("show after a failed provisioning: %+v", r)
	}
	if r = run(t, "tenant", "provision", "fragile", "--database-url", db, "--migrations", good); r.code != 0 || !strings.Contains(r.stdout, "status:     active") {
		t.Fatalf("provision: %+v", r)
	}

	if r = run(t, "tenant", "delete", "fragile", "--purge", "--yes", "--database-url", db); r.code != 1 || !strings.Contains(r.stderr, "delete it first") {
		t.Fatalf("purge of a live tenant: %+v", r)
	}
	run(t, "tenant", "delete", "fragile", "--database-url", db)
	if r = run(t, "tenant", "delete", "fragile", "--purge", "--database-url", db); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("purge without --yes: %+v", r)
	}
	if r = run(t, "tenant", "delete", "fragile", "--purge", "--yes", "--database-url", db); r.code != 0 || !strings.Contains(r.stdout, "purged") {
		t.Fatalf("purge: %+v", r)
	}
	if r = run(t, "tenant", "show", "fragile", "--database-url", db); r.code != 1 {
		t.Fatalf("a purged tenant is still shown: %+v", r)
	}
	var schemas int
	openPool(t, db).QueryRow(t.Context(), `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\_%'`).Scan(&schemas)
	if schemas != 0 {
		t.Fatalf("%d tenant schemas left after the purge", schemas)
	}
}
