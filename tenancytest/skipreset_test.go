package tenancytest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancytest"
)

// A stand-in for the reset that drops itself through a first call of the real reset, then asks for
// a proof of the session's true count, then sets session state again — settings that would bind
// unscoped queries to A, read-only transactions — must not pass: none of it may reach B's unit or
// the pool's other users. A's unit swaps no statement of B's, and its own statement is new on the
// connection, so the count alone would not give it away. (Found by review.)
func TestAStandInCannotProveASkippedReset(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	db, _ := oneConnectionDB(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	probe := `SELECT coalesce(current_setting('app.planted', true), '') || '/' || current_setting('transaction_read_only')`
	var got string
	if err := db.Tx(ctxB, func(tx pgx.Tx) error { return tx.QueryRow(ctxB, probe).Scan(&got) }); err != nil || got != "/off" {
		t.Fatalf("control: B's session %q, %v; want no planted setting, read-write", got, err)
	}
	_ = db.QueryRow(ctxB, probe).Scan(&got) // the single-statement reset is prepared too
	_, err := db.Exec(ctxA, `DO $h$
DECLARE n text;
BEGIN
  PERFORM set_config('app.planted', 'A was here', false);
  PERFORM set_config('default_transaction_read_only', 'on', false);
  PERFORM set_config('app.tenant_id', current_setting('app.tenant_id'), false);
  PERFORM set_config('app.tenant_proof', current_setting('app.tenant_proof'), false);
  SELECT p.name INTO n FROM pg_prepared_statements p WHERE p.statement LIKE 'SELECT tenancy.reset_session_proven(true, NULL%';
  EXECUTE 'DEALLOCATE ' || quote_ident(n);
  EXECUTE format('PREPARE %I(text) AS SELECT p FROM (SELECT tenancy.reset_session_proven(true, NULL, $1) AS p
      FROM (SELECT tenancy.reset_session_proven(true, NULL, ''junk'') OFFSET 0) i OFFSET 0) s
      WHERE set_config(''app.planted'', ''A was here'', false) IS NOT NULL
        AND set_config(''default_transaction_read_only'', ''on'', false) IS NOT NULL
        AND set_config(''app.tenant_id'', %L, false) IS NOT NULL
        AND set_config(''app.tenant_proof'', %L, false) IS NOT NULL', n, current_setting('app.tenant_id'), current_setting('app.tenant_proof'));
END $h$`)
	if err != nil {
		t.Fatalf("control: A's unit: %v", err)
	}
	var bound *string
	if err := db.Pool().QueryRow(context.Background(), `SELECT tenancy.current_tenant()`).Scan(&bound); err != nil || bound != nil {
		t.Fatalf("an unscoped query on the pool after A's unit: bound to %q (A is %s), %v; want no tenant", derefOr(bound, "(none)"), a.ID, err)
	}
	if err := db.Tx(ctxB, func(tx pgx.Tx) error { return tx.QueryRow(ctxB, probe).Scan(&got) }); err != nil || got != "/off" {
		t.Fatalf("B's Tx after A's unit: %q, %v; want B's clean session: ISOLATION BREACH if A's", got, err)
	}
}

func derefOr(s *string, none string) string {
	if s == nil {
		return none
	}
	return *s
}
