package tenancytest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancytest"
)

// Where the runtime role keeps TEMPORARY (migrations run by a role that does not own the database:
// 0006 then only warns), A's temporary types must not reach the reset, which runs with its owner's
// rights and has no SET search_path (pg_temp is searched first for types): a domain pg_temp.text
// whose CHECK calls A's function would run it as the owner. (Found by review.)
func TestTemporaryTypesDoNotReachTheReset(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	if _, err := env.Pool.Exec(context.Background(), `GRANT TEMPORARY ON DATABASE `+databaseName(t, env)+` TO tenancy_app`); err != nil {
		t.Fatal(err)
	}
	db, _ := oneConnectionDB(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	if _, err := db.Exec(ctxB, `INSERT INTO projects (name) VALUES ('B secret')`); err != nil {
		t.Fatal(err)
	}
	// The checked connection has compiled the reset: A gets a fresh one by tampering.
	_, _ = db.Exec(ctxA, `PREPARE x AS SELECT 1`)
	var loot string
	err := db.Tx(ctxA, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctxA, `DO $d$
DECLARE loot pg_catalog.text;
BEGIN
  CREATE FUNCTION pg_temp.evil(v pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $e$
  BEGIN
    RAISE EXCEPTION 'as %: %', current_user, (SELECT string_agg(name, ',') FROM public.projects);
  END $e$;
  CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil(VALUE));
  BEGIN
    PERFORM tenancy.reset_session_proven(true, NULL, 'x');
  EXCEPTION WHEN OTHERS THEN loot := SQLERRM;
  END;
  PERFORM set_config('app.loot', coalesce(loot, 'nothing'), true);
END $d$`); err != nil {
			return err
		}
		return tx.QueryRow(ctxA, `SELECT current_setting('app.loot')`).Scan(&loot)
	})
	if err != nil || loot != "nothing" {
		t.Fatalf("A's unit: %q, %v; want it to run and get nothing (BREACH if it read rows as the reset's owner)", loot, err)
	}
	// Positive control: B still reads its own row.
	var name string
	if err := db.QueryRow(ctxB, `SELECT name FROM projects`).Scan(&name); err != nil || name != "B secret" {
		t.Fatalf("B reads %q, %v; want its own row", name, err)
	}
}
