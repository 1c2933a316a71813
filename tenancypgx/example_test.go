package tenancypgx_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// exampleDatabase makes a database with the catalog, a tenant table and tenants acme and globex,
// for the examples; it returns a DB on it, the two tenants and a function that drops it all.
func exampleDatabase() (*tenancypgx.DB, *tenancy.Tenant, *tenancy.Tenant, func()) {
	ctx := context.Background()
	name := tenancytest.UniqueName("tenancy_example")
	server, err := pgx.Connect(ctx, tenancytest.AdminURL())
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close(ctx)
	if _, err := server.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		log.Fatal(err)
	}
	drop := func() {
		if c, err := pgx.Connect(ctx, tenancytest.AdminURL()); err == nil {
			c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	// Two logins: the migration role for the catalog and migrations, the runtime role for tenant work.
	url := tenancytest.WithDatabase(tenancytest.AdminURL(), name)
	admin, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tenancycatalog.MigrateCatalog(ctx, admin); err != nil {
		log.Fatal(err)
	}
	// A migration makes projects a tenant table: tenant_id, RLS forced, the policy, the grants.
	if _, err := admin.Exec(ctx, `
		CREATE TABLE projects (tenant_id uuid NOT NULL, id uuid DEFAULT gen_random_uuid(), name text NOT NULL, PRIMARY KEY (tenant_id, id));
		SELECT tenancy.isolate('projects');`); err != nil {
		log.Fatal(err)
	}
	catalog, _ := tenancycatalog.NewCatalog(admin, nil)
	acme, _ := catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme"})
	globex, _ := catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "globex"})

	runtimeURL, _ := tenancypgx.RuntimeURL(url) // the same server and database, as tenancy_app
	runtime, err := tenancypgx.NewRuntimePool(ctx, runtimeURL, nil)
	if err != nil {
		log.Fatal(err)
	}
	key, err := catalog.BindingKey(ctx)
	if err != nil {
		log.Fatal(err)
	}
	db, err := tenancypgx.New(runtime, &tenancypgx.Config{Key: key})
	if err != nil {
		log.Fatal(err)
	}
	return db, acme, globex, func() { db.Close(); runtime.Close(); admin.Close(); drop() }
}

func ExampleDB_Tx() {
	db, acme, globex, cleanup := exampleDatabase()
	defer cleanup()

	// The tenant comes from the context (tenancyhttp.Middleware puts it there); the SQL never
	// names it.
	ctx := tenancy.WithTenant(context.Background(), acme)
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO projects (name) VALUES ('Rocket skates'), ('Giant magnet')`)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}

	for _, t := range []*tenancy.Tenant{acme, globex} {
		ctx := tenancy.WithTenant(context.Background(), t)
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM projects`).Scan(&n); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s sees %d projects\n", t.Slug, n)
	}
	fmt.Println(db.Tx(context.Background(), func(pgx.Tx) error { return nil }) == tenancy.ErrNoTenant)
	// Output:
	// acme sees 2 projects
	// globex sees 0 projects
	// true
}

// database/sql users (sqlc, GORM, ent, sqlx) get a *sql.Tx with the same guarantees.
func ExampleDB_SQLTx() {
	db, acme, globex, cleanup := exampleDatabase()
	defer cleanup()

	ctx := tenancy.WithTenant(context.Background(), acme)
	if err := db.SQLTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO projects (name) VALUES ($1)`, "Anvil")
		return err
	}); err != nil {
		log.Fatal(err)
	}
	for _, t := range []*tenancy.Tenant{acme, globex} {
		ctx := tenancy.WithTenant(context.Background(), t)
		var names []string
		err := db.SQLTx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT name FROM projects ORDER BY name`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var name string
				if err := rows.Scan(&name); err != nil {
					return err
				}
				names = append(names, name)
			}
			return rows.Err()
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(t.Slug, names)
	}
	// Output:
	// acme [Anvil]
	// globex []
}
