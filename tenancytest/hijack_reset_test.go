package tenancytest_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancytest"
)

// The reset that ends every unit of work is itself a statement the driver prepared: A's code can
// find it by its text, DEALLOCATE it and PREPARE a stand-in under its name — one that resets
// nothing and answers a plausible count, one that runs the real reset (once, twice, or and then
// sets session state again) — after swapping one of B's statements too, in a transaction or in
// the single statement of a helper (where the reset runs right after it in the same pipeline).
// None of them may leave B's next read running A's SQL or in A's session state.
func TestTheResetCannotBeHijacked(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	const query = `SELECT name FROM projects WHERE name <> $1`
	// Each stand-in's body; $N is the nonce, the reset's last parameter.
	standIns := map[string]string{
		"a made-up answer":                `SELECT '1000:' || repeat('0', 64)`,
		"the real reset, then its answer": `SELECT tenancy.reset_session_proven(true, NULL, $N)`,
		// A first call drops every SQL-prepared statement, the stand-in with it; the second
		// would then find none and prove the real count — if the text running did not give it
		// away.
		"the reset twice": `SELECT tenancy.reset_session_proven(true, NULL, $N) FROM (SELECT tenancy.reset_session_proven(true, NULL, 'junk') OFFSET 0) s`,
		// The real reset, then session state set again after it, in the same statement; with a
		// first call before, so that the second finds no SQL-prepared statement.
		"the reset, then state again": `SELECT p FROM (SELECT tenancy.reset_session_proven(true, NULL, $N) AS p OFFSET 0) s WHERE set_config('app.planted', 'A', false) IS NOT NULL`,
		"the reset twice, then state again": `SELECT p FROM (SELECT tenancy.reset_session_proven(true, NULL, $N) AS p
			FROM (SELECT tenancy.reset_session_proven(true, NULL, 'junk') OFFSET 0) i OFFSET 0) s WHERE set_config('app.planted', 'A', false) IS NOT NULL`,
	}
	for name, body := range standIns {
		for _, via := range []string{"Tx", "Exec"} {
			t.Run(name+" via "+via, func(t *testing.T) {
				t.Parallel()
				db, _ := oneConnectionDB(t, env)
				a, b := env.Pair(t, tenancy.IsolationShared)
				ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
				if _, err := db.Exec(ctxB, `INSERT INTO projects (name) VALUES ('B secret')`); err != nil {
					t.Fatal(err)
				}
				read := func() (string, error) {
					var got string
					err := db.QueryRow(ctxB, query, "nothing").Scan(&got)
					return got, err
				}
				// Every form of the reset and B's query prepared on the one connection.
				if err := db.Tx(ctxB, func(tx pgx.Tx) error { _, err := tx.Exec(ctxB, `SELECT 1`); return err }); err != nil {
					t.Fatal(err)
				}
				if got, err := read(); err != nil || got != "B secret" {
					t.Fatalf("control: B reads %q, %v", got, err)
				}
				hijack := `DO $h$
DECLARE n text; s text; params text; k integer;
BEGIN
  FOR n, s, params, k IN SELECT p.name, p.statement, pg_catalog.array_to_string(p.parameter_types::text[], ','),
                                pg_catalog.cardinality(p.parameter_types)
                           FROM pg_prepared_statements p
                          WHERE (p.statement LIKE 'SELECT tenancy.reset_session_proven%' OR p.statement = $q$` + query + `$q$)
                            AND p.name <> '' LOOP
    EXECUTE 'DEALLOCATE ' || quote_ident(n);
    IF s LIKE '%reset_session_proven%' THEN
      EXECUTE format('PREPARE %I(%s) AS %s', n, params, replace($b$` + body + `$b$, '$N', '$' || k));
    ELSE
      EXECUTE format('PREPARE %I(text) AS SELECT %L::text', n, 'hijacked by A');
    END IF;
  END LOOP;
END $h$`
				var err error
				if via == "Tx" {
					var swapped int
					err = db.Tx(ctxA, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctxA, hijack); err != nil {
							return err
						}
						return tx.QueryRow(ctxA, `SELECT count(*) FROM pg_prepared_statements WHERE from_sql`).Scan(&swapped)
					})
					if err == nil && swapped < 2 {
						t.Fatalf("control: A swapped %d statements, want the reset's and B's query's", swapped)
					}
				} else if _, err = db.Exec(ctxA, hijack); err != nil {
					t.Fatalf("control: A's swap through Exec failed: %v", err)
				}
				t.Logf("A's unit ended with %v", err)
				if got, err := read(); err == nil && got != "B secret" {
					t.Fatalf("after A swapped the reset, B's read returned %q: ISOLATION BREACH", got)
				} else if err != nil && !strings.Contains(err.Error(), "prepared statement") {
					t.Fatalf("B's read after A's swap: %v; want B's row (at worst one lost-statement error)", err)
				}
				if got, err := read(); err != nil || got != "B secret" {
					t.Fatalf("B's next read: %q, %v; want B's own row", got, err)
				}
				var planted string
				if err := db.Tx(ctxB, func(tx pgx.Tx) error {
					return tx.QueryRow(ctxB, `SELECT coalesce(current_setting('app.planted', true), '')`).Scan(&planted)
				}); err != nil || planted != "" {
					t.Fatalf("B's session after A's unit: app.planted %q, %v: A's session state reached B", planted, err)
				}
			})
		}
	}
}
