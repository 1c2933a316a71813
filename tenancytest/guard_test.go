package tenancytest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// Session defaults of the runtime role that a unit of work's connection was cut before it could
// remove — for all databases, and for one (local_preload_libraries stops every connection from
// starting) — are removed by the guard, for this deployment's databases; another deployment's
// database on the same server is left to it. A changed password is reported. On a server of the
// test's own: the defaults would reach every other test's connections.
func TestGuardRemovesRuntimeRoleDefaults(t *testing.T) {
	t.Parallel()
	pg := tenancytest.StartPostgres(t)
	ctx := context.Background()
	pool, catalog := pg.NewCatalog("service")
	url := pg.URL("service")
	// A database tenant, placed in a database of its own (made by hand: no tenant line needed).
	dbTenant, err := catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "db-one", Isolation: tenancy.IsolationDatabase})
	if err != nil {
		t.Fatal(err)
	}
	tenantDB := tenancycatalog.DatabaseName(dbTenant.ID)
	if _, err := pool.Exec(ctx, `CREATE DATABASE `+tenantDB); err != nil {
		t.Fatal(err)
	}
	if err := catalog.Place(ctx, dbTenant.ID, tenancycatalog.DefaultServer, tenantDB); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`CREATE DATABASE other_deployment`,
		`ALTER ROLE tenancy_app SET local_preload_libraries = 'tenancy_no_such_library'`,
		`ALTER ROLE tenancy_app IN DATABASE service SET search_path = pg_catalog`,
		`ALTER ROLE tenancy_app IN DATABASE ` + tenantDB + ` SET default_transaction_read_only = on`,
		`ALTER ROLE tenancy_app IN DATABASE other_deployment SET work_mem = '9MB'`,
		`ALTER ROLE tenancy_app IN DATABASE postgres SET search_path = pg_catalog`, // where a Router's janitor connects
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	runtimeURL, err := tenancypgx.RuntimeURL(url)
	if err != nil {
		t.Fatal(err)
	}
	connect := func() error {
		conn, err := pgx.Connect(ctx, runtimeURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var path string
		if err := conn.QueryRow(ctx, `SHOW search_path`).Scan(&path); err != nil {
			return err
		}
		if path == "pg_catalog" {
			t.Errorf("a runtime connection starts with the search_path the role was given")
		}
		return nil
	}
	if err := connect(); err == nil || !strings.Contains(err.Error(), "tenancy_no_such_library") {
		t.Fatalf("control: a runtime connection with the library default: %v; want it refused", err)
	}
	res, err := tenancypgx.GuardRuntimeRoleOnce(ctx, catalog, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.DefaultsRemoved != 4 {
		t.Errorf("the guard removed %d rows of defaults; want 4 (all databases, the catalog's, the tenant's, postgres)", res.DefaultsRemoved)
	}
	if err := connect(); err != nil {
		t.Fatalf("a runtime connection after the guard: %v", err)
	}
	var left []string
	rows, _ := pool.Query(ctx, `SELECT coalesce(d.datname, '*') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
		LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = 'tenancy_app'`)
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != "other_deployment" {
		t.Errorf("defaults left: %v; want only another deployment's database's", left)
	}

	// The password: reported once it changes, not before.
	runCtx, cancel := context.WithCancel(ctx)
	changed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- tenancypgx.GuardRuntimeRole(runCtx, catalog, &tenancypgx.GuardOpts{Interval: 20 * time.Millisecond, OnPasswordChange: func() { close(changed) }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("GuardRuntimeRole: %v", err)
		}
	}()
	// Running: a default set now goes within a few intervals.
	if _, err := pool.Exec(ctx, `ALTER ROLE tenancy_app IN DATABASE service SET work_mem = '9MB'`); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'service'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the running guard did not remove a default in 10 s")
		}
	}
	time.Sleep(100 * time.Millisecond) // several looks with the password unchanged
	select {
	case <-changed:
		t.Fatal("a password change reported before any")
	default:
	}
	if _, err := pool.Exec(ctx, `ALTER ROLE tenancy_app PASSWORD 'chosen by an attacker'`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the password change was not reported in 10 s")
	}
}
