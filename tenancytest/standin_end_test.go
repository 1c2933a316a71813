package tenancytest_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancyrouter"
	"github.com/gotenancy/tenancy/tenancytest"
)

// swapEnd is SQL that swaps the driver's prepared statement whose text starts with like — the
// statement that ends a unit of work — for a stand-in answering body.
func swapEnd(like, body string) string {
	return `DO $h$
DECLARE n text; params text;
BEGIN
  FOR n, params IN SELECT p.name, pg_catalog.array_to_string(p.parameter_types::text[], ',')
                     FROM pg_prepared_statements p WHERE p.statement LIKE '` + like + `%' AND NOT p.from_sql LOOP
    EXECUTE 'DEALLOCATE ' || quote_ident(n);
    EXECUTE format('PREPARE %I(%s) AS ` + body + `', n, params);
  END LOOP;
END $h$`
}

// passwordSet reports whether the runtime role has a password.
func passwordSet(t *testing.T, env *tenancytest.Env) bool {
	t.Helper()
	var set bool
	if err := env.Pool.QueryRow(context.Background(), `SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'tenancy_app'`).Scan(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

// A unit of work that swaps the statement ending it (the proven reset of a shared tenant,
// tenancy.end_unit of a database tenant) for a stand-in cannot skip the checks inside the unit:
// in Tx and SQLTx the end goes as an unnamed statement, which SQL cannot replace, so the role
// change is refused (TNCY2) and rolled back. In the single-statement helpers, whose end travels in
// the statement's own pipeline, the stand-in cannot pass for the end: the connection is closed,
// and the tenant's next unit finds none of it.
func TestAStandInEndCannotSkipTheUnitChecks(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine, Router: &tenancyrouter.Config{MaxConnsPerPool: 1}})
	t.Cleanup(func() { env.Pool.Exec(context.Background(), `ALTER ROLE tenancy_app PASSWORD NULL`) })
	db, _ := oneConnectionDB(t, env)
	const role = `ALTER ROLE tenancy_app PASSWORD 'chosen by A'`
	for _, model := range []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationDatabase} {
		t.Run(string(model), func(t *testing.T) {
			a := env.NewTenant(t, model)
			ctx := tenancytest.Context(a)
			swap := swapEnd("SELECT tenancy.reset_session_proven(", `SELECT ''0:x''::text`)
			if model == tenancy.IsolationDatabase {
				swap = swapEnd("SELECT tenancy.end_unit(", `SELECT ''0:x''::text`)
			}
			var swapped int
			for _, via := range []string{"Tx", "SQLTx"} {
				// The single-statement helper prepares its end statement by name on the
				// connection (a new one: the last refusal closed the old).
				if _, err := db.Exec(ctx, `INSERT INTO projects (name) VALUES ('A')`); err != nil {
					t.Fatal(err)
				}
				var err error
				if via == "Tx" {
					err = db.Tx(ctx, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctx, swap); err != nil {
							return err
						}
						if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE from_sql`).Scan(&swapped); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, role)
						return err
					})
				} else {
					err = db.SQLTx(ctx, func(tx *sql.Tx) error {
						if _, err := tx.ExecContext(ctx, swap); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, role)
						return err
					})
				}
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "TNCY2" {
					t.Errorf("%s with its end swapped and the role changed: %v; want the refusal TNCY2", via, err)
				}
				if passwordSet(t, env) {
					t.Fatalf("%s: the role change committed behind a stand-in end", via)
				}
			}
			if swapped == 0 {
				t.Fatal("control: the swap prepared no stand-in: the test proves nothing")
			}
			// The helper: the stand-in is caught and the connection closed, never kept.
			env.Pool.Exec(context.Background(), `ALTER ROLE tenancy_app PASSWORD NULL`)
			if _, err := db.Exec(ctx, swap); err != nil {
				t.Fatalf("Exec of the swap: %v", err)
			}
			var left int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE from_sql`).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Fatalf("the next unit of work found %d statements the last one prepared with SQL: a stand-in end was kept", left)
			}
		})
	}
}
