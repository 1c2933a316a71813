package tenancypgx_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// TestTaggedStatementsNameTheTenant: with TagStatements, the statements of a unit of work (in
// Tx, ReadTx and the single-statement helpers) reach the server with a comment naming the tenant,
// for each model; a tenant made by hand with a slug that could end the comment is named by its
// ID. Without it, no comment.
func TestTaggedStatementsNameTheTenant(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: fstest.MapFS{"0001_items.sql": {Data: []byte(
		`CREATE TABLE items (tenant_id uuid NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('items');`)}}})
	tagged := tenancytest.NewDB(t, env.Pool, &tenancypgx.Config{Router: env.Router, TagStatements: true})
	for _, model := range tenancytest.Models {
		a := env.NewTenant(t, model)
		ctx := tenancytest.Context(a)
		want := "/* tenant=" + a.Slug + " */ "
		var single, inTx, plain string
		if err := tagged.QueryRow(ctx, `SELECT current_query()`).Scan(&single); err != nil {
			t.Fatal(err)
		}
		if err := tagged.ReadTx(ctx, func(tx pgx.Tx) error { return tx.QueryRow(ctx, `SELECT current_query()`).Scan(&inTx) }); err != nil {
			t.Fatal(err)
		}
		if err := env.DB.QueryRow(ctx, `SELECT current_query()`).Scan(&plain); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(single, want) || !strings.HasPrefix(inTx, want) {
			t.Errorf("%s: the server saw %q and %q, want them to start with %q", model, single, inTx, want)
		}
		if strings.Contains(plain, "tenant=") {
			t.Errorf("%s: without TagStatements the server saw %q", model, plain)
		}
		// A tenant made by hand whose slug would end the comment.
		forged := *a
		forged.Slug = "x */ SELECT 1; /*"
		var text string
		if err := tagged.QueryRow(tenancy.WithTenant(ctx, &forged), `SELECT current_query()`).Scan(&text); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(text, "/* tenant="+a.ID+" */ ") {
			t.Errorf("%s: a hand-made slug reached the server as %q", model, text)
		}
	}
}
