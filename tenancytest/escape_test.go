package tenancytest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyrouter"
	"github.com/gotenancy/tenancy/tenancytest"
)

// SQL inside a tenant transaction — an injection in one handler, say — tries to leave its
// tenant in every way the role and the binding allow, in every model. B's rows stay out of reach
// (and B, the positive control, still sees them), and nothing becomes a role that bypasses
// row-level security, owns a tenant table or reads the catalog.
func TestSQLInsideTxCannotLeaveItsTenant(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	for _, model := range tenancytest.Models {
		t.Run(string(model), func(t *testing.T) {
			t.Parallel()
			a, b := env.Pair(t, model)
			ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
			var bProject string
			if err := env.DB.QueryRow(ctxB, `INSERT INTO projects (name) VALUES ('B secret') RETURNING id::text`).Scan(&bProject); err != nil {
				t.Fatal(err)
			}
			if _, err := env.DB.Exec(ctxA, `INSERT INTO projects (name) VALUES ('A own')`); err != nil {
				t.Fatal(err)
			}
			// Where B's rows are, as seen from A's transaction: the shared table, B's schema.
			bTable := "projects"
			if model == tenancy.IsolationSchema {
				bTable = pgx.Identifier{tenancycatalog.SchemaName(b.ID), "projects"}.Sanitize()
			}

			// Role changes: RESET ROLE stays the runtime role; SET ROLE and SET SESSION
			// AUTHORIZATION to a superuser are refused.
			err := env.DB.Tx(ctxA, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctxA, `RESET ROLE`); err != nil {
					return err
				}
				var user string
				var super, bypass bool
				if err := tx.QueryRow(ctxA, `SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super, &bypass); err != nil {
					return err
				}
				if user != tenancycatalog.DefaultRole || super || bypass {
					t.Errorf("ISOLATION BREACH: after RESET ROLE the transaction is %s (superuser %v, bypassrls %v)", user, super, bypass)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("RESET ROLE: %v", err)
			}
			for _, stmt := range []string{`SET ROLE postgres`, `SET SESSION AUTHORIZATION postgres`, `SET LOCAL ROLE postgres`} {
				if err := env.DB.Tx(ctxA, func(tx pgx.Tx) error { _, err := tx.Exec(ctxA, stmt); return err }); !isRefused(err) {
					t.Errorf("ISOLATION BREACH: %s inside Tx: %v; want permission denied", stmt, err)
				}
			}
			// The catalog is not readable, even after RESET ROLE (a database tenant's own database
			// has no catalog at all).
			if model != tenancy.IsolationDatabase {
				err = env.DB.Tx(ctxA, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctxA, `RESET ROLE; SELECT count(*) FROM tenancy.tenants`)
					return err
				})
				if !isRefused(err) {
					t.Errorf("ISOLATION BREACH: the catalog from inside Tx: %v; want permission denied", err)
				}
			}
			err = env.DB.Tx(ctxA, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctxA, `SELECT * FROM tenancy.binding_key`)
				return err
			})
			if !isRefused(err) {
				t.Errorf("ISOLATION BREACH: the binding key from inside Tx: %v; want permission denied", err)
			}

			// A forged binding: app.tenant_id set to B's id from inside A's transaction — alone,
			// with A's proof, or with a made-up proof — reads, changes and deletes nothing of B's.
			forgeries := map[string]string{
				"B's id":                 `SELECT set_config('app.tenant_id', $1, true)`,
				"B's id, A's proof kept": `SELECT set_config('app.tenant_id', $1, true), current_setting('app.tenant_proof')`,
				"B's id, made-up proof":  `SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', md5($1) || md5($1), true)`,
				"B's id, session level":  `SELECT set_config('app.tenant_id', $1, false)`,
			}
			attacks := map[string]string{
				"read":   `SELECT count(*) FROM ` + bTable + ` WHERE name = 'B secret'`,
				"update": `WITH u AS (UPDATE ` + bTable + ` SET name = 'pwned' RETURNING 1) SELECT count(*) FROM u`,
				"delete": `WITH d AS (DELETE FROM ` + bTable + ` RETURNING 1) SELECT count(*) FROM d`,
				"insert": `WITH i AS (INSERT INTO ` + bTable + ` (name) VALUES ('planted') RETURNING 1) SELECT count(*) FROM i`,
			}
			for fname, forge := range forgeries {
				for aname, attack := range attacks {
					var n int
					err := env.DB.Tx(ctxA, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctxA, forge, b.ID); err != nil {
							return err
						}
						return tx.QueryRow(ctxA, attack).Scan(&n)
					})
					if err == nil && n != 0 {
						t.Errorf("ISOLATION BREACH: %s with %s touched %d of B's rows", aname, fname, n)
					}
					if err == nil && aname == "insert" {
						t.Errorf("ISOLATION BREACH: insert with %s was accepted", fname)
					}
				}
			}
			// Moving A's row to B.
			if _, err := env.DB.Exec(ctxA, `UPDATE projects SET tenant_id = $1`, b.ID); err == nil {
				t.Error("ISOLATION BREACH: A moved its rows to B")
			}
			// Rows of A's own in B's schema: B's schema holds only B's rows.
			if model == tenancy.IsolationSchema {
				if _, err := env.DB.Exec(ctxA, `INSERT INTO `+bTable+` (name) VALUES ('planted by A')`); err == nil {
					t.Error("A stored a row of its own in B's schema")
				}
			}

			// Positive controls: B still has exactly its row, untouched; A still has its own.
			var names []string
			err = env.DB.Tx(ctxB, func(tx pgx.Tx) error {
				rows, _ := tx.Query(ctxB, `SELECT name FROM projects ORDER BY name`)
				var err error
				names, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			if err != nil || len(names) != 1 || names[0] != "B secret" {
				t.Errorf("B's projects after A's attempts: %v, %v; want [B secret]", names, err)
			}
			var n int
			if err := env.DB.QueryRow(ctxA, `SELECT count(*) FROM projects WHERE name = 'A own'`).Scan(&n); err != nil || n != 1 {
				t.Errorf("control: A sees %d of its own projects, %v; want 1", n, err)
			}
		})
	}
}

// isRefused reports whether err is PostgreSQL refusing for want of privilege.
func isRefused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// The runtime pool refuses a login that SQL could use to leave its tenant: a superuser, and a
// role that is a member of another. The control: the runtime role itself is accepted.
func TestUnsafeRuntimeLoginIsRefused(t *testing.T) {
	t.Parallel()
	pool, _ := tenancytest.NewCatalog(t)
	ctx := context.Background()
	_, err := tenancypgx.NewRuntimePool(ctx, pool.Config().ConnString(), nil) // postgres: a superuser
	if !errors.Is(err, tenancypgx.ErrUnsafeRuntimeRole) {
		t.Fatalf("a superuser runtime login: %v; want ErrUnsafeRuntimeRole", err)
	}
	db, err := tenancypgx.New(pool, tenancytest.WithKey(t, pool, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Check(ctx); !errors.Is(err, tenancypgx.ErrUnsafeRuntimeRole) {
		t.Fatalf("a DB on a superuser pool: %v; want ErrUnsafeRuntimeRole", err)
	}
	tn, err := tenancycatalog.NewCatalog(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	acme, err := tn.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Tx(tenancy.WithTenant(ctx, acme), func(pgx.Tx) error { return nil }); !errors.Is(err, tenancypgx.ErrUnsafeRuntimeRole) {
		t.Fatalf("Tx on a superuser pool: %v; want ErrUnsafeRuntimeRole", err)
	}

	member := tenancytest.UniqueName("tenancy_member")
	q := pgx.Identifier{member}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE ROLE `+q+` LOGIN; GRANT pg_read_all_data TO `+q); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Exec(context.Background(), `DROP ROLE `+q) })
	url, _ := tenancypgx.RuntimeURL(pool.Config().ConnString())
	memberURL := replaceUser(t, url, member)
	if _, err := tenancypgx.NewRuntimePool(ctx, memberURL, nil); !errors.Is(err, tenancypgx.ErrUnsafeRuntimeRole) {
		t.Fatalf("a runtime login that is a member of pg_read_all_data: %v; want ErrUnsafeRuntimeRole", err)
	}
	runtime, err := tenancypgx.NewRuntimePool(ctx, url, nil)
	if err != nil {
		t.Fatalf("control: the runtime role is refused: %v", err)
	}
	runtime.Close()
}

// A DB given another catalog's key cannot bind a transaction: the database says so, clearly.
func TestForeignBindingKeyIsRefused(t *testing.T) {
	t.Parallel()
	one, _ := tenancytest.NewCatalog(t)
	other, _ := tenancytest.NewCatalog(t)
	ctx := context.Background()
	db, err := tenancypgx.New(tenancytest.NewRuntimePool(t, one, nil), tenancytest.WithKey(t, other, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Check(ctx); !errors.Is(err, tenancypgx.ErrBindingKeyMismatch) {
		t.Fatalf("another catalog's key: %v; want ErrBindingKeyMismatch", err)
	}
	own, err := tenancypgx.New(tenancytest.NewRuntimePool(t, one, nil), tenancytest.WithKey(t, one, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := own.Check(ctx); err != nil {
		t.Fatalf("control: the catalog's own key: %v", err)
	}
}

// replaceUser returns the URL with its user replaced.
func replaceUser(t *testing.T, rawURL, user string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}

// A statement the driver prepared for tenant B cannot be swapped for tenant A's SQL: A's code,
// on the same pooled connection, finds the statement's name, DEALLOCATEs it and PREPAREs its own
// SQL under that name; the connection is closed after A's transaction, and B's next use of the
// statement runs B's SQL on a new one.
func TestPreparedStatementsCannotBeHijacked(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	db, single := oneConnectionDB(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	if _, err := db.Exec(ctxB, `INSERT INTO projects (name) VALUES ('B secret')`); err != nil {
		t.Fatal(err)
	}
	const query = `SELECT name FROM projects WHERE name <> $1`
	read := func() (string, error) {
		var name string
		err := db.QueryRow(ctxB, query, "nothing").Scan(&name)
		return name, err
	}
	if name, err := read(); err != nil || name != "B secret" {
		t.Fatalf("control: B reads %q, %v", name, err)
	}
	var swapped string
	err := db.Tx(ctxA, func(tx pgx.Tx) error {
		var stmt string
		if err := tx.QueryRow(ctxA, `SELECT name FROM pg_prepared_statements WHERE statement = $1`, query).Scan(&stmt); err != nil {
			return fmt.Errorf("the driver's statement for B's query: %w", err)
		}
		q := pgx.Identifier{stmt}.Sanitize()
		if _, err := tx.Exec(ctxA, `DEALLOCATE `+q+`; PREPARE `+q+` (text) AS SELECT 'hijacked by A'::text`); err != nil {
			return err
		}
		// The positive control: the swap is in place, inside A's transaction.
		return tx.QueryRow(ctxA, `SELECT statement FROM pg_prepared_statements WHERE name = $1 AND from_sql`, stmt).Scan(&swapped)
	})
	if err != nil || !strings.Contains(swapped, "hijacked by A") {
		t.Fatalf("control: A could not swap the statement inside its transaction: %q, %v", swapped, err)
	}
	// The connection A tampered with is closed, not reset: B's next read runs on a new one.
	if name, err := read(); err != nil || name != "B secret" {
		t.Fatalf("B's read after A's swap: %q, %v; want B's own row (ISOLATION BREACH if A's)", name, err)
	}
	if n := single.Stat().NewConnsCount(); n != 2 {
		t.Errorf("the pool opened %d connections; want 2 (the tampered one closed)", n)
	}
}

// adminCount runs a count on the migration role's pool.
func adminCount(t *testing.T, env *tenancytest.Env, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := env.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// roleDefaults counts the runtime role's session defaults in the env's database.
const roleDefaults = `SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
	WHERE r.rolname = 'tenancy_app' AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())`

// roleDefaultsIn counts the runtime role's session defaults in the database named $1.
const roleDefaultsIn = `SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
	WHERE r.rolname = 'tenancy_app' AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1)`

// unitDatabase returns the database a's units of work run in, quoted and as it is: the env's
// for a shared tenant, its own for a database tenant (whose units end with tenancy.end_unit, not
// the proven reset: the checks inside the unit are the same).
func unitDatabase(t *testing.T, env *tenancytest.Env, a *tenancy.Tenant) (quoted, name string) {
	t.Helper()
	if a.Isolation == tenancy.IsolationDatabase {
		return pgx.Identifier{a.Database}.Sanitize(), a.Database
	}
	quoted = databaseName(t, env)
	return quoted, env.Pool.Config().ConnConfig.Database
}

// PostgreSQL lets any role change its own password and session defaults, which every later
// connection of every tenant would start with (a search_path sending shared tenants' rows into
// a schema tenant's tables, read-only transactions...). From inside a unit of work, through each
// API, in a shared tenant's database and in a database tenant's own, that is refused and rolled
// back.
func TestRoleChangesInsideAUnitOfWorkAreRolledBack(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	t.Cleanup(func() { env.Pool.Exec(context.Background(), `ALTER ROLE tenancy_app PASSWORD NULL`) })
	for _, model := range []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationDatabase} {
		t.Run(string(model), func(t *testing.T) { roleChangesAreRolledBack(t, env, env.NewTenant(t, model)) })
	}
}

func roleChangesAreRolledBack(t *testing.T, env *tenancytest.Env, a *tenancy.Tenant) {
	dbname, plain := unitDatabase(t, env, a)
	ctx := tenancytest.Context(a)
	for _, stmt := range []string{
		`ALTER ROLE CURRENT_USER IN DATABASE ` + dbname + ` SET search_path = pg_catalog`,
		`ALTER ROLE tenancy_app PASSWORD 'chosen by A'`,
	} {
		var inside int
		err := env.DB.Tx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT pg_stat_get_xact_tuples_inserted('pg_db_role_setting'::regclass) + pg_stat_get_xact_tuples_updated('pg_authid'::regclass)`).Scan(&inside)
		})
		if inside == 0 {
			t.Fatalf("control: %s did not change a role inside the transaction (%v)", stmt, err)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "TNCY2" {
			t.Errorf("Tx with %s: %v; want the reset's refusal (TNCY2)", stmt, err)
		}
		if _, err := env.DB.Exec(ctx, stmt); !errors.As(err, &pgErr) || pgErr.Code != "TNCY2" {
			t.Errorf("Exec of %s: %v; want the reset's refusal (TNCY2)", stmt, err)
		}
		err = env.DB.SQLTx(ctx, func(tx *sql.Tx) error { _, err := tx.ExecContext(ctx, stmt); return err })
		if !errors.As(err, &pgErr) || pgErr.Code != "TNCY2" {
			t.Errorf("SQLTx with %s: %v; want the reset's refusal (TNCY2)", stmt, err)
		}
	}
	if n := adminCount(t, env, roleDefaultsIn, plain); n != 0 {
		t.Fatalf("the runtime role kept %d session defaults", n)
	}
}

// A unit of work that ends its transaction itself (a COMMIT inside fn) ran what followed without a
// tenant, outside any transaction the toolkit could roll back: Tx reports it, closes the
// connection, and removes role defaults made that way; later connections start clean. In a
// shared tenant's database and in a database tenant's own.
func TestUnitOfWorkThatEndsItsTransactionIsRefused(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	for _, model := range []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationDatabase} {
		t.Run(string(model), func(t *testing.T) { endedTransactionIsRefused(t, env, env.NewTenant(t, model)) })
	}
}

func endedTransactionIsRefused(t *testing.T, env *tenancytest.Env, a *tenancy.Tenant) {
	dbname, plain := unitDatabase(t, env, a)
	ctx := tenancytest.Context(a)
	if _, err := env.DB.Exec(ctx, `INSERT INTO projects (name) VALUES ('A own')`); err != nil {
		t.Fatal(err)
	}
	var unbound, defaults int
	err := env.DB.Tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `COMMIT`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&unbound); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ALTER ROLE CURRENT_USER IN DATABASE `+dbname+` SET search_path = pg_catalog`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, roleDefaults).Scan(&defaults)
	})
	if defaults != 1 {
		t.Fatalf("control: the role default made after the COMMIT is not there (%d, %v)", defaults, err)
	}
	if unbound != 0 {
		t.Errorf("ISOLATION BREACH: after its COMMIT the unit of work read %d rows without a tenant", unbound)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "TNCY1" {
		t.Fatalf("Tx whose fn committed: %v; want the reset's refusal (TNCY1)", err)
	}
	if n := adminCount(t, env, roleDefaultsIn, plain); n != 0 {
		t.Fatalf("the runtime role kept %d session defaults", n)
	}
	if a.Isolation == tenancy.IsolationDatabase {
		return // removed from its database: what follows is the shared runtime pool's
	}
	var path string
	for range 3 { // every connection the pool opens from now on starts clean
		conn, err := env.Runtime.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		err = conn.QueryRow(context.Background(), `SHOW search_path`).Scan(&path)
		conn.Conn().Close(context.Background()) // a new one next time
		conn.Release()
		if err != nil || path == "pg_catalog" {
			t.Fatalf("a later connection's search_path: %q, %v", path, err)
		}
	}
}

// Session defaults given to the runtime role by anyone (here the migration role, as an attacker's
// early-committed ALTER ROLE would) never reach a connection that serves a tenant: the first new
// connection finds them, removes them and is refused; the next starts clean.
func TestConnectionsWithRoleDefaultsAreRefused(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	ctx := context.Background()
	dbname := databaseName(t, env)
	// Defaults that would also stop a removal that trusted the session: read-only, 1 ms statements.
	if _, err := env.Pool.Exec(ctx, `ALTER ROLE tenancy_app IN DATABASE `+dbname+` SET default_transaction_read_only = on;
		ALTER ROLE tenancy_app IN DATABASE `+dbname+` SET statement_timeout = 1`); err != nil {
		t.Fatal(err)
	}
	if n := adminCount(t, env, roleDefaults); n != 1 {
		t.Fatalf("control: %d rows of defaults", n)
	}
	env.Runtime.Reset() // the pool's connections are closed: the next acquire connects
	_, err := env.Runtime.Acquire(ctx)
	if !errors.Is(err, tenancypgx.ErrRoleDefaults) {
		t.Fatalf("a connection born with role defaults: %v; want ErrRoleDefaults", err)
	}
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("the defaults were not removed: %d", n)
	}
	a := env.NewTenant(t, tenancy.IsolationShared)
	if _, err := env.DB.Exec(tenancytest.Context(a), `INSERT INTO projects (name) VALUES ('written')`); err != nil {
		t.Fatalf("the next connection: %v", err)
	}
}

// All tenants' sessions share the runtime role, so without the toolkit's revocations SQL inside
// one tenant's transaction could end the others' (pg_terminate_backend acts on sessions of the
// same role) or read and unlink their large objects. Both are refused; B's transaction, running
// meanwhile, commits.
func TestNoSignalsOrLargeObjectsBetweenTenants(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	inB := make(chan struct{})
	doneB := make(chan error)
	go func() {
		doneB <- env.DB.Tx(ctxB, func(tx pgx.Tx) error {
			close(inB)
			_, err := tx.Exec(ctxB, `SELECT pg_sleep(0.5); INSERT INTO projects (name) VALUES ('B survived')`)
			return err
		})
	}()
	<-inB
	for _, attack := range []string{
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()`,
		`SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()`,
		`SELECT lo_from_bytea(0, 'A''s bytes')`,
		`SELECT count(lo_get(oid)) FROM pg_largeobject_metadata`,
	} {
		if _, err := env.DB.Exec(ctxA, attack); !isRefused(err) {
			t.Errorf("%s from inside A's transaction: %v; want permission denied", attack, err)
		}
	}
	if err := <-doneB; err != nil {
		t.Fatalf("B's transaction: %v", err)
	}
	var n int
	if err := env.DB.QueryRow(ctxB, `SELECT count(*) FROM projects WHERE name = 'B survived'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("control: B's row: %d, %v", n, err)
	}
}

// A role change that the unit of work itself rolls back (fn returns an error) leaves the
// statistics PostgreSQL keeps per connection marked for a while: that connection is closed
// rather than reused, so the next tenant's unit of work is not refused in its place.
func TestRolledBackRoleChangeDoesNotFailTheNextTenant(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	db, _ := oneConnectionDB(t, env)
	dbname := databaseName(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	err := db.Tx(ctxA, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctxA, `ALTER ROLE CURRENT_USER IN DATABASE `+dbname+` SET work_mem = '9MB'`); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("A: %v", err)
	}
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("control: the rolled-back role default is there: %d", n)
	}
	for _, run := range []func() error{
		func() error {
			return db.Tx(ctxB, func(tx pgx.Tx) error { _, err := tx.Exec(ctxB, `SELECT 1`); return err })
		},
		func() error { _, err := db.Exec(ctxB, `SELECT 1`); return err },
	} {
		if err := run(); err != nil {
			t.Fatalf("B after A's rolled-back role change: %v", err)
		}
	}
}

// The attack a second review found: a unit of work COMMITs its transaction, gives the role session
// defaults outside it (1 ms statements) and makes its own session read-only, so that a removal run
// with that session's settings fails and every later connection of every tenant starts with the
// defaults. Through Tx and SQLTx the unit is refused and the defaults removed regardless; through
// Exec a DO block cannot COMMIT at all. Later connections of another tenant are served.
func TestRoleDefaultsCannotLockTheServiceOut(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	dbname := databaseName(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	attack := `COMMIT; ALTER ROLE CURRENT_USER IN DATABASE ` + dbname + ` SET statement_timeout = 1; SET default_transaction_read_only = on`
	var pgErr *pgconn.PgError
	err := env.DB.Tx(ctxA, func(tx pgx.Tx) error { _, err := tx.Exec(ctxA, attack); return err })
	if !errors.As(err, &pgErr) || pgErr.Code != "TNCY1" {
		t.Fatalf("Tx: %v; want the reset's refusal (TNCY1)", err)
	}
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("after Tx the runtime role kept %d rows of defaults", n)
	}
	err = env.DB.SQLTx(ctxA, func(tx *sql.Tx) error { _, err := tx.ExecContext(ctxA, attack); return err })
	if !errors.As(err, &pgErr) || pgErr.Code != "TNCY1" {
		t.Fatalf("SQLTx: %v; want the reset's refusal (TNCY1)", err)
	}
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("after SQLTx the runtime role kept %d rows of defaults", n)
	}
	_, err = env.DB.Exec(ctxA, `DO $$BEGIN COMMIT; EXECUTE 'ALTER ROLE CURRENT_USER IN DATABASE `+strings.ReplaceAll(dbname, `'`, `''`)+` SET statement_timeout = 1'; END$$`)
	if !errors.As(err, &pgErr) || pgErr.Code != "2D000" { // invalid transaction termination
		t.Fatalf("Exec of a DO block that COMMITs: %v; want 2D000", err)
	}
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("after Exec the runtime role kept %d rows of defaults", n)
	}
	env.Runtime.Reset() // new connections from here
	for i := range 5 {
		if _, err := env.DB.Exec(ctxB, `INSERT INTO projects (name) VALUES ($1)`, fmt.Sprint("B ", i)); err != nil {
			t.Fatalf("B's request %d after A's attacks: %v", i, err)
		}
	}
}

// SQL in one unit of work can DEALLOCATE the statements the driver prepared on its connection; the
// next user of that connection would then fail. The connection is closed instead — also when the
// unit then fails. A failed unit that spares the reset's own statement is the limit (pgx does not
// show its cache): the next user of a statement it dropped gets one error, after which that
// connection is closed, and the user after is served.
func TestDeallocatedStatementsDoNotFailTheNextTenant(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	db, single := oneConnectionDB(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	read := func() error {
		var n int
		return db.QueryRow(ctxB, `SELECT count(*) FROM projects`).Scan(&n)
	}
	const allButTheReset = `DO $$DECLARE n text; BEGIN
		FOR n IN SELECT name FROM pg_prepared_statements WHERE statement NOT LIKE '%reset_session%' LOOP
			EXECUTE 'DEALLOCATE ' || quote_ident(n);
		END LOOP; END$$`
	failing := func(stmt string) func() error {
		return func() error {
			return db.Tx(ctxA, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctxA, stmt); err != nil {
					return err
				}
				return errBoom
			})
		}
	}
	for _, c := range []struct {
		name       string
		deallocate func() error
		reused     bool // the control: nothing was deallocated
		limit      bool // the known limit: B may get one error
	}{
		{"Tx", func() error {
			return db.Tx(ctxA, func(tx pgx.Tx) error { _, err := tx.Exec(ctxA, `DEALLOCATE ALL`); return err })
		}, false, false},
		{"Exec", func() error { _, err := db.Exec(ctxA, `DEALLOCATE ALL`); return err }, false, false},
		{"Tx, all but the reset's", func() error {
			return db.Tx(ctxA, func(tx pgx.Tx) error { _, err := tx.Exec(ctxA, allButTheReset); return err })
		}, false, false},
		{"a Tx that fails", failing(`DEALLOCATE ALL`), false, false},
		{"a Tx that fails, all but the reset's", failing(allButTheReset), false, true},
		{"control: a Tx that fails", func() error { return db.Tx(ctxA, func(tx pgx.Tx) error { return errBoom }) }, true, false},
		{"control: a Tx whose statement fails", func() error {
			return db.Tx(ctxA, func(tx pgx.Tx) error { _, err := tx.Exec(ctxA, `SELECT 1/$1::int`, 0); return err })
		}, true, false},
		{"control: a statement that fails", func() error { _, err := db.Exec(ctxA, `SELECT 1/$1::int`, 0); return err }, true, false},
	} {
		if err := read(); err != nil { // B's statements are prepared on the connection
			t.Fatal(err)
		}
		before := single.Stat().NewConnsCount()
		c.deallocate()
		err := read()
		var pgErr *pgconn.PgError
		if c.limit && errors.As(err, &pgErr) && pgErr.Code == "26000" {
			err = read() // once, then on a new connection
		}
		if err != nil {
			t.Errorf("B after A's DEALLOCATE through %s: %v", c.name, err)
		}
		if reused := single.Stat().NewConnsCount() == before; reused != c.reused {
			t.Errorf("%s: the connection was reused: %v", c.name, reused)
		}
	}
}

// A unit of work that seeds random() would make the next user's random() predictable; the reset
// reseeds it from the strong generator. The control: the same seed on a connection of its own
// gives the predicted value.
func TestRandomSeedDoesNotCarryOver(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	db, single := oneConnectionDB(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	var predicted float64
	if err := env.Pool.QueryRow(context.Background(), `SELECT setseed(0.42), random()`).Scan(nil, &predicted); err != nil {
		t.Fatal(err)
	}
	var again float64
	if err := env.Pool.QueryRow(context.Background(), `SELECT setseed(0.42), random()`).Scan(nil, &again); err != nil || again != predicted {
		t.Fatalf("control: setseed(0.42) gives %v then %v", predicted, again)
	}
	if _, err := db.Exec(tenancytest.Context(a), `SELECT setseed(0.42)`); err != nil {
		t.Fatal(err)
	}
	var got float64
	if err := db.QueryRow(tenancytest.Context(b), `SELECT random()`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got == predicted {
		t.Fatalf("B's random() is %v, what A's seed predicts", got)
	}
	if n := single.Stat().NewConnsCount(); n != 1 {
		t.Fatalf("control: B ran on a new connection (%d opened), not the one A seeded", n)
	}
}

// The attack a third review found: a unit of work COMMITs, gives the role session defaults
// outside its transaction, then fails (its next statement errors), so it ends on the rollback path
// rather than the commit's reset — at once, or after PostgreSQL has flushed the statistics that
// tell a role changed on the connection. Through Tx and SQLTx the defaults are removed all the
// same and the connection closed; another tenant's later connections start clean.
func TestFailedUnitOfWorkCannotLeaveRoleDefaults(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	dbname := databaseName(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	attack := []string{
		`COMMIT; ALTER ROLE CURRENT_USER IN DATABASE ` + dbname + ` SET search_path = pg_catalog`,
		`SELECT pg_sleep(0)`, // or long enough for the statistics to be flushed (1 s)
		`SELECT 1/0`,
	}
	for _, pause := range []string{"0", "1.2"} {
		attack[1] = `SELECT pg_sleep(` + pause + `)`
		for name, unit := range map[string]func() error{
			"Tx": func() error {
				return env.DB.Tx(ctxA, func(tx pgx.Tx) error {
					for _, stmt := range attack {
						if _, err := tx.Exec(ctxA, stmt); err != nil {
							return err
						}
					}
					return nil
				})
			},
			"SQLTx": func() error {
				return env.DB.SQLTx(ctxA, func(tx *sql.Tx) error {
					for _, stmt := range attack {
						if _, err := tx.ExecContext(ctxA, stmt); err != nil {
							return err
						}
					}
					return nil
				})
			},
		} {
			var pgErr *pgconn.PgError
			if err := unit(); !errors.As(err, &pgErr) || pgErr.Code != "22012" {
				t.Fatalf("%s (pause %s s): %v; want the unit's own error (division by zero)", name, pause, err)
			}
			if n := adminCount(t, env, roleDefaults); n != 0 {
				t.Fatalf("after %s (pause %s s) the runtime role kept %d rows of defaults", name, pause, n)
			}
			env.Runtime.Reset() // new connections from here
			var path string
			if err := env.DB.QueryRow(ctxB, `SELECT current_setting('search_path')`).Scan(&path); err != nil || path == "pg_catalog" {
				t.Fatalf("B's next connection after %s (pause %s s): search_path %q, %v", name, pause, path, err)
			}
		}
	}
	// The control: the same statement from the migration role leaves the default (it is
	// the toolkit, not PostgreSQL, that removes it).
	if _, err := env.Pool.Exec(context.Background(), `ALTER ROLE tenancy_app IN DATABASE `+dbname+` SET search_path = pg_catalog`); err != nil {
		t.Fatal(err)
	}
	if n := adminCount(t, env, roleDefaults); n != 1 {
		t.Fatalf("control: the default set by the migration role is not there (%d)", n)
	}
	if _, err := env.Pool.Exec(context.Background(), `ALTER ROLE tenancy_app IN DATABASE `+dbname+` RESET ALL`); err != nil {
		t.Fatal(err)
	}
}

// pgx's simple protocol writes arguments into the statement's text, which every session of the
// runtime role can read in pg_stat_activity while it runs: the tenant's proof would be readable
// by other tenants' SQL. A pool, a DB and a router that would use it are refused.
func TestSimpleProtocolIsRefused(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	ctx := context.Background()
	runtimeURL, err := tenancypgx.RuntimeURL(env.Pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	simple := runtimeURL + sep(runtimeURL) + "default_query_exec_mode=simple_protocol"
	if pool, err := tenancypgx.NewRuntimePool(ctx, simple, nil); err == nil || !strings.Contains(err.Error(), "simple_protocol") {
		if pool != nil {
			pool.Close()
		}
		t.Errorf("NewRuntimePool with the simple protocol: %v; want a refusal", err)
	}
	// A pool made by hand, as a user may.
	cfg, err := pgxpool.ParseConfig(simple)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := tenancypgx.New(pool, tenancytest.WithKey(t, env.Pool, nil)); err == nil || !strings.Contains(err.Error(), "simple_protocol") {
		t.Errorf("New on a simple-protocol pool: %v; want a refusal", err)
	}
	if _, err := tenancyrouter.New(&tenancyrouter.Config{Servers: tenancycatalog.Servers{tenancycatalog.DefaultServer: simple}}); err == nil || !strings.Contains(err.Error(), "simple_protocol") {
		t.Errorf("NewRouter with the simple protocol: %v; want a refusal", err)
	}
	// The control: the same URL in the default mode is served.
	good, err := tenancypgx.NewRuntimePool(ctx, runtimeURL, nil)
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	defer good.Close()
	if _, err := tenancypgx.New(good, tenancytest.WithKey(t, env.Pool, nil)); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// sep is what joins a query parameter to u.
func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// The attack a fourth review found: a unit of work COMMITs, gives the role a session default that
// stops every new connection to its database from starting (a library that cannot be loaded),
// then ends its own session — an error that exit_on_error makes fatal, or an idle timeout —
// before the toolkit could remove the default there. The default is removed all the same, from a
// connection opened before it (the janitor), and the tenant's next connections start: for a
// shared tenant, and for a database tenant (whose janitor connects to the server's "postgres").
func TestUnitThatEndsItsSessionCannotLeaveRoleDefaults(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	ctx := context.Background()
	defaultsIn := func(database string) int {
		return adminCount(t, env, `SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
			JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = 'tenancy_app' AND d.datname = $1`, database)
	}
	lockout := `COMMIT; DO $$BEGIN EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET local_preload_libraries = %L',
		current_database(), 'tenancy_no_such_library'); END$$; `
	for _, model := range []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationDatabase} {
		tn := env.NewTenant(t, model)
		tctx := tenancytest.Context(tn)
		var database string
		if err := env.DB.QueryRow(tctx, `SELECT current_database()`).Scan(&database); err != nil {
			t.Fatal(err)
		}
		newConnections := func() { // the tenant's pool opens new connections from here
			if model == tenancy.IsolationDatabase {
				env.Router.Forget(tn.ID)
			} else {
				env.Runtime.Reset()
			}
		}
		for _, ending := range []string{`SET exit_on_error = on`, `SET idle_session_timeout = 1`} {
			attack := lockout + ending
			for name, unit := range map[string]func() error{
				"Tx": func() error {
					return env.DB.Tx(tctx, func(tx pgx.Tx) error {
						_, err := tx.Exec(tctx, attack)
						time.Sleep(20 * time.Millisecond) // idle: the timeout ends the session
						return err
					})
				},
				"SQLTx": func() error {
					return env.DB.SQLTx(tctx, func(tx *sql.Tx) error {
						_, err := tx.ExecContext(tctx, attack)
						time.Sleep(20 * time.Millisecond)
						return err
					})
				},
			} {
				what := fmt.Sprintf("%s %s (%s)", model, name, ending)
				if err := unit(); err == nil {
					t.Errorf("%s: the unit of work that ended its transaction succeeded", what)
				}
				if n := defaultsIn(database); n != 0 {
					t.Fatalf("after %s the runtime role kept %d rows of defaults", what, n)
				}
				newConnections()
				if _, err := env.DB.Exec(tctx, `INSERT INTO projects (name) VALUES ($1)`, what); err != nil {
					t.Fatalf("the tenant's next connection after %s: %v", what, err)
				}
			}
		}
		// The control: the same default set by the migration role does stop a plain runtime
		// connection to that database from starting — not the pool's, which asks for no library
		// when it starts (startup settings take precedence over role defaults).
		if _, err := env.Pool.Exec(ctx, `ALTER ROLE tenancy_app IN DATABASE `+pgx.Identifier{database}.Sanitize()+` SET local_preload_libraries = 'tenancy_no_such_library'`); err != nil {
			t.Fatal(err)
		}
		connect := func(cfg *pgx.ConnConfig) error {
			cfg.Database = database
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err == nil {
				conn.Close(ctx)
			}
			return err
		}
		guarded := env.Runtime.Config().ConnConfig.Copy()
		plain := guarded.Copy()
		delete(plain.RuntimeParams, "local_preload_libraries")
		plainErr, guardedErr := connect(plain), connect(guarded)
		if _, rerr := env.Pool.Exec(ctx, `ALTER ROLE tenancy_app IN DATABASE `+pgx.Identifier{database}.Sanitize()+` RESET ALL`); rerr != nil {
			t.Fatal(rerr)
		}
		if plainErr == nil || !strings.Contains(plainErr.Error(), "tenancy_no_such_library") {
			t.Fatalf("control (%s): a plain runtime connection with the library default: %v; want it refused", model, plainErr)
		}
		if guardedErr != nil {
			t.Fatalf("%s: a connection of the runtime pool with the library default: %v", model, guardedErr)
		}
	}
}

// Behind PgBouncer the pooler opens server connections itself, and one that starts while SQL in
// some unit of work has given the role session defaults keeps them as its own for its whole life.
// With the README's connect_query such a connection ends itself before it serves anyone — also
// when the default is a 1 ms statement timeout that makes the check itself fail. The control, a
// PgBouncer without it, keeps serving the defaults after they were removed.
func TestPooledServerConnectionsDoNotKeepRoleDefaults(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	dbname := databaseName(t, env)
	database := env.Runtime.Config().ConnConfig.Database
	ctx := context.Background()
	for _, d := range []struct{ setting, value, shown string }{
		{"search_path", "pg_catalog", "pg_catalog"},
		{"statement_timeout", "1", "1ms"},
	} {
		// tainted reports whether a session served through url has the default.
		tainted := func(url string) (bool, error) {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				return false, err
			}
			defer conn.Close(ctx)
			var v string
			err = conn.QueryRow(ctx, `SHOW `+d.setting, pgx.QueryExecModeSimpleProtocol).Scan(&v)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "57014" { // the 1 ms timeout itself
				return true, nil
			}
			return v == d.shown, err
		}
		for _, c := range []struct {
			name, connectQuery string
			keeps              bool
		}{
			{"control, no session check", "SELECT 1", true},
			{"with the session check", tenancytest.SessionCheckQuery, false},
		} {
			// PostgreSQL times a simple query as a whole: under load a 1 ms default can cancel the
			// connect query before its first statement turns exit_on_error on, and that server
			// connection then serves the timeout (a denial of service, nothing read). The check
			// must hold in one of three attempts; a check that never holds fails every one.
			attempts := 1
			if d.setting == "statement_timeout" && !c.keeps {
				attempts = 3
			}
			var failures []string
			for attempt := 1; attempt <= attempts; attempt++ {
				failures = pooledServerCase(t, env, dbname, database, d.setting, d.value, c.name, c.connectQuery, c.keeps, tainted)
				if len(failures) == 0 {
					break
				}
			}
			for _, f := range failures {
				t.Error(f)
			}
		}
	}
}

// pooledServerCase runs one case of TestPooledServerConnectionsDoNotKeepRoleDefaults: a PgBouncer
// with connectQuery opens its server connection while the role has setting = value, and keeps
// serving it after the default is removed exactly when keeps. It returns what went wrong.
func pooledServerCase(t *testing.T, env *tenancytest.Env, dbname, database, setting, value, name, connectQuery string, keeps bool,
	tainted func(url string) (bool, error)) []string {
	ctx := context.Background()
	var failures []string
	what := setting + ", " + name
	bouncer := tenancytest.StartPgBouncer(t, env.Pool.Config().ConnString(), &tenancytest.PgBouncerOpts{PoolSize: 1, ConnectQuery: connectQuery})
	url := bouncer.URL("tenancy_app", database)
	if _, err := env.Pool.Exec(ctx, `ALTER ROLE tenancy_app IN DATABASE `+dbname+` SET `+setting+` = '`+value+`'`); err != nil {
		t.Fatal(err)
	}
	// The pooler opens its server connection for the first client while the default exists; the
	// default is then removed (the toolkit does so within milliseconds).
	type result struct {
		tainted bool
		err     error
	}
	first := make(chan result, 1)
	go func() { got, err := tainted(url); first <- result{got, err} }()
	time.Sleep(300 * time.Millisecond)
	if _, err := env.Pool.Exec(ctx, `ALTER ROLE tenancy_app IN DATABASE `+dbname+` RESET ALL`); err != nil {
		t.Fatal(err)
	}
	r := <-first
	if r.err != nil {
		t.Fatalf("%s: the first client: %v", what, r.err)
	}
	if r.tainted != keeps {
		failures = append(failures, fmt.Sprintf("%s: the first client was served the default: %v", what, r.tainted))
	}
	for range 3 {
		got, err := tainted(url)
		if err != nil {
			t.Fatalf("%s: after the default was removed: %v", what, err)
		}
		if got != keeps {
			failures = append(failures, fmt.Sprintf("%s: a server connection born with the default still serves it: %v", what, got))
		}
	}
	return failures
}

// A session takes its role's defaults when it starts and keeps them; SQL in a unit of work can
// switch a default on and off, so a new connection may start with it and find the role without
// it a moment later. The runtime pool checks the session itself: such a connection is refused,
// and tenancy.check_session() ends one (what PgBouncer's connect_query runs). The control: a
// session started without the default passes both.
func TestConnectionBornWithARemovedRoleDefaultIsRefused(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	dbname := databaseName(t, env)
	ctx := context.Background()
	setDefault := func(on bool) {
		stmt := `ALTER ROLE tenancy_app IN DATABASE ` + dbname + ` RESET ALL`
		if on {
			stmt = `ALTER ROLE tenancy_app IN DATABASE ` + dbname + ` SET search_path = pg_catalog`
		}
		if _, err := env.Pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	var removeAfterStart atomic.Bool
	pool := tenancytest.NewRuntimePool(t, env.Pool, func(c *pgxpool.Config) {
		c.MaxConns = 1
		// Runs as soon as the session has started, before the pool's own checks.
		c.ConnConfig.AfterConnect = func(ctx context.Context, _ *pgconn.PgConn) error {
			if removeAfterStart.Load() {
				setDefault(false)
			}
			return nil
		}
	})
	if _, err := pool.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("control: a clean session: %v", err)
	}
	pool.Reset()
	setDefault(true)
	removeAfterStart.Store(true)
	conn, err := pool.Acquire(ctx)
	removeAfterStart.Store(false)
	if err == nil {
		conn.Release()
	}
	if !errors.Is(err, tenancypgx.ErrRoleDefaults) {
		t.Fatalf("a connection born with a default removed since: %v; want ErrRoleDefaults", err)
	}
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("control: the default was not removed (%d)", n)
	}

	// tenancy.check_session(), on a session born with the default.
	url := env.Runtime.Config().ConnConfig.ConnString()
	clean, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer clean.Close(ctx)
	setDefault(true)
	tainted, err := pgx.Connect(ctx, url)
	setDefault(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tainted.Close(ctx)
	if _, err := clean.Exec(ctx, tenancytest.SessionCheckQuery); err != nil {
		t.Fatalf("control: check_session on a clean session: %v", err)
	}
	var path string
	if err := tainted.QueryRow(ctx, `SHOW search_path`).Scan(&path); err != nil || path != "pg_catalog" {
		t.Fatalf("control: the tainted session's search_path: %q, %v", path, err)
	}
	_, err = tainted.Exec(ctx, tenancytest.SessionCheckQuery)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "TNCY3" || pgErr.Severity != "FATAL" {
		t.Fatalf("check_session on a session born with the default: %v; want FATAL TNCY3", err)
	}
	if err := tainted.Ping(ctx); err == nil {
		t.Fatal("the tainted session is still open")
	}
}

// The attack a fifth review found: one unit of work gives the role a default after its COMMIT and
// then holds the row of the role's defaults in a transaction it keeps open, so the removal that
// another unit's tampering sets off waits for it — and fails when it commits ("tuple concurrently
// updated"). The removal is tried again on the same connection; the defaults go, and another
// tenant's new connections start clean.
func TestRoleDefaultsHeldByAnOpenTransactionAreStillRemoved(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	dbname := databaseName(t, env)
	a, b := env.Pair(t, tenancy.IsolationShared)
	ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
	if _, err := env.DB.Exec(ctxB, `INSERT INTO projects (name) VALUES ('B before')`); err != nil {
		t.Fatal(err)
	}
	holding, release := make(chan struct{}), make(chan struct{})
	u1 := make(chan error, 1)
	go func() {
		u1 <- env.DB.Tx(ctxA, func(tx pgx.Tx) error {
			for _, stmt := range []string{
				`COMMIT`,
				`ALTER ROLE CURRENT_USER IN DATABASE ` + dbname + ` SET search_path = pg_catalog`,
				`ALTER ROLE CURRENT_USER IN DATABASE ` + dbname + ` SET local_preload_libraries = 'tenancy_no_such_library'`,
				`BEGIN`,
				`ALTER ROLE CURRENT_USER IN DATABASE ` + dbname + ` SET work_mem = '1MB'`, // holds the row
			} {
				if _, err := tx.Exec(ctxA, stmt); err != nil {
					return err
				}
			}
			close(holding)
			<-release
			_, err := tx.Exec(ctxA, `COMMIT`)
			return err
		})
	}()
	<-holding
	u2 := make(chan error, 1)
	go func() { // its tampering sets off a removal, which waits for U1's row
		u2 <- env.DB.Tx(ctxA, func(tx pgx.Tx) error { _, err := tx.Exec(ctxA, `COMMIT`); return err })
	}()
	time.Sleep(300 * time.Millisecond)
	var waiting int
	if err := env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND usename = 'tenancy_app'`).Scan(&waiting); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-u1; err == nil {
		t.Error("U1, which ended its transaction, succeeded")
	}
	if err := <-u2; err == nil {
		t.Error("U2, which ended its transaction, succeeded")
	}
	if waiting == 0 {
		t.Fatal("control: no removal waited for U1's row: the test proves nothing")
	}
	if n := adminCount(t, env, roleDefaults); n != 0 {
		t.Fatalf("the runtime role kept %d rows of defaults", n)
	}
	env.Runtime.Reset()
	var path string
	if err := env.DB.QueryRow(ctxB, `SELECT current_setting('search_path')`).Scan(&path); err != nil || path == "pg_catalog" {
		t.Fatalf("B's next connection: search_path %q, %v", path, err)
	}
}
