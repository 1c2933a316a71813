package tenancytest_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancytest"
)

// A gives the runtime role session defaults after ending its transaction and keeps its unit open;
// a schema tenant's SQLTx connection that opens meanwhile (its own database/sql handle, not the
// pool) must not start with them and keep them for life. (Found by review: that handle's
// connections skipped the pool's check of new connections.)
func TestRoleDefaultsDoNotReachSchemaSQLTx(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	dbname := databaseName(t, env)
	a := env.NewTenant(t, tenancy.IsolationShared)
	b := env.NewTenant(t, tenancy.IsolationSchema)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	holding, release := make(chan struct{}), make(chan struct{})
	u1 := make(chan error, 1)
	go func() {
		u1 <- env.DB.Tx(ctxA, func(tx pgx.Tx) error {
			// One injected string (no arguments: pgx sends it by the simple protocol).
			if _, err := tx.Exec(ctxA, `COMMIT; ALTER ROLE CURRENT_USER IN DATABASE `+dbname+
				` SET application_name = 'planted by A'; ALTER ROLE CURRENT_USER IN DATABASE `+dbname+
				` SET default_transaction_read_only = on; COMMIT`); err != nil {
				return err
			}
			close(holding)
			<-release // stands for pg_sleep(30) at the end of the same string
			return nil
		})
	}()
	<-holding
	if n := adminCount(t, env, roleDefaults); n == 0 {
		t.Fatal("control: A's unit gave the role no session defaults")
	}
	probe := func() (string, error) {
		var app, ro string
		err := env.DB.SQLTx(ctxB, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctxB, `SELECT current_setting('application_name'), current_setting('transaction_read_only')`).Scan(&app, &ro)
		})
		return app + "/" + ro, err
	}
	got, err := probe()
	if got != "/off" && err == nil {
		t.Errorf("ISOLATION BREACH: B's SQLTx during A's unit runs in A's session state %q", got)
	}
	close(release)
	aErr := <-u1
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("control: defaults not swept: %d", n)
	}
	if aErr == nil {
		t.Fatal("control: A's unit, which ended its transaction and changed the role, was not refused")
	}
	for i := 0; i < 3; i++ {
		got, err := probe()
		werr := env.DB.SQLTx(ctxB, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctxB, `INSERT INTO projects (name) VALUES ('B writes')`)
			return err
		})
		if got != "/off" || (err == nil && werr != nil) {
			t.Errorf("after the sweep, B's SQLTx %d: session %q (%v), write %v; want a clean read-write session: ISOLATION BREACH if A's", i, got, err, werr)
		}
	}
	// Positive control: B's writes through SQLTx work.
	if err := env.DB.SQLTx(ctxB, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctxB, `INSERT INTO projects (name) VALUES ('B writes')`)
		return err
	}); err != nil {
		t.Fatalf("B's write through SQLTx: %v", err)
	}
	_ = context.Background
}
