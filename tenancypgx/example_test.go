package tenancypgx_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenancy"
	"tenancy/tenancypgx"
	"tenancy/tenancytest"
)

// exampleDatabase makes a database with the catalog, a tenant table and tenants acme and globex,
// for the examples; it returns the pool, the two tenants and a function that drops it all.
func exampleDatabase() (*pgxpool.Pool, *tenancy.Tenant, *tenancy.Tenant, func()) {
	ctx := context.Background()
	name := tenancytest.UniqueName("tenancy_example")
	admin, err := pgx.Connect(ctx, tenancytest.AdminURL())
	if err != nil {
		log.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		log.Fatal(err)
	}
	drop := func() {
		if c, err := pgx.Connect(ctx, tenancytest.AdminURL()); err == nil {
			c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	pool, err := pgxpool.New(ctx, tenancytest.WithDatabase(tenancytest.AdminURL(), name))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tenancypgx.MigrateCatalog(ctx, pool); err != nil {
		log.Fatal(err)
	}
	// A migration makes projects a tenant table: tenant_id, RLS forced, the policy, the grants.
	if _, err := pool.Exec(ctx, `
		CREATE TABLE projects (tenant_id uuid NOT NULL, id serial, name text NOT NULL, PRIMARY KEY (tenant_id, id));
		SELECT tenancy.isolate('projects');`); err != nil {
		log.Fatal(err)
	}
	catalog, _ := tenancypgx.NewCatalog(pool, nil)
	acme, _ := catalog.Create(ctx, &tenancypgx.CreateOpts{Slug: "acme"})
	globex, _ := catalog.Create(ctx, &tenancypgx.CreateOpts{Slug: "globex"})
	return pool, acme, globex, func() { pool.Close(); drop() }
}

func ExampleDB_Tx() {
	pool, acme, globex, cleanup := exampleDatabase()
	defer cleanup()
	db, _ := tenancypgx.New(pool, nil)

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
	pool, acme, globex, cleanup := exampleDatabase()
	defer cleanup()
	db, _ := tenancypgx.New(pool, nil)

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
