package tenancypgx_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tenancy/tenancypgx"
	"tenancy/tenancytest"
)

// cleanSchema is a tenant table done right: what every defect below starts from.
const cleanSchema = `
CREATE TABLE items (
	tenant_id uuid NOT NULL,
	id        uuid NOT NULL DEFAULT gen_random_uuid(),
	sku       text NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, sku)
);
SELECT tenancy.isolate('items');
CREATE TABLE parts (
	tenant_id uuid NOT NULL,
	id        uuid NOT NULL DEFAULT gen_random_uuid(),
	item_id   uuid NOT NULL,
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, item_id) REFERENCES items (tenant_id, id)
);
SELECT tenancy.isolate('parts');
CREATE VIEW item_skus WITH (security_invoker = true) AS SELECT id, sku FROM items;
CREATE FUNCTION safe_definer() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS 'SELECT 1';
`

func TestAuditCleanDatabasePasses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.pool.Exec(context.Background(), cleanSchema); err != nil {
		t.Fatal(err)
	}
	rep, err := tenancypgx.Audit(context.Background(), b.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("a clean database has findings: %+v", rep.Findings)
	}
	// The control that the audit looked: both tenant tables were found (and the catalog's own
	// tenancy.domains, which has a tenant_id column, is not a tenant table).
	if strings.Join(rep.TenantTables, ",") != "items,parts" {
		t.Fatalf("tenant tables %v, want items and parts", rep.TenantTables)
	}
	var out strings.Builder
	rep.WriteText(&out)
	if !strings.Contains(out.String(), "OK") {
		t.Fatalf("text report: %s", out.String())
	}
}

func TestAuditFindsEachDefect(t *testing.T) {
	t.Parallel()
	defects := []struct {
		name, sql, check, object string
	}{
		{"rls disabled", `ALTER TABLE items DISABLE ROW LEVEL SECURITY`, "rls-disabled", "items"},
		{"rls not forced", `ALTER TABLE items NO FORCE ROW LEVEL SECURITY`, "rls-not-forced", "items"},
		{"new table without isolation", `CREATE TABLE orders (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id))`, "rls-disabled", "orders"},
		{"no policy", `DROP POLICY tenant_isolation ON items`, "policy-missing", "items"},
		{"policy for SELECT only", `DROP POLICY tenant_isolation ON items;
			CREATE POLICY read ON items FOR SELECT USING (tenant_id = current_setting('app.tenant_id')::uuid)`, "policy-missing", "items"},
		{"policy without WITH CHECK", `DROP POLICY tenant_isolation ON items;
			CREATE POLICY p ON items USING (tenant_id = current_setting('app.tenant_id')::uuid)`, "policy-no-with-check", "items policy p"},
		{"permissive policy open to all", `CREATE POLICY everyone ON items FOR SELECT USING (true)`, "policy-not-tenant-scoped", "items policy everyone"},
		{"unique without tenant", `CREATE UNIQUE INDEX items_sku_global ON items (sku)`, "unique-without-tenant", "items_sku_global"},
		{"foreign key without tenant", `ALTER TABLE parts ADD COLUMN other_item uuid;
			CREATE UNIQUE INDEX items_id_global ON items (id);
			ALTER TABLE parts ADD CONSTRAINT parts_other_fk FOREIGN KEY (other_item) REFERENCES items (id)`, "foreign-key-without-tenant", "parts_other_fk"},
		{"view without security_invoker", `CREATE VIEW all_skus AS SELECT sku FROM items`, "view-not-security-invoker", "all_skus"},
		{"view over a view", `CREATE VIEW sku_count AS SELECT count(*) FROM item_skus`, "view-not-security-invoker", "sku_count"},
		{"materialized view", `CREATE MATERIALIZED VIEW sku_cache AS SELECT sku FROM items`, "materialized-view", "sku_cache"},
		{"security definer without search_path", `CREATE FUNCTION leaky() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM items'`, "security-definer-search-path", "leaky()"},
		{"runtime role owns a table", `ALTER TABLE items OWNER TO {role}`, "role-owns-table", "items"},
		{"runtime role is superuser", `ALTER ROLE {role} SUPERUSER`, "role-superuser", "{role}"},
		{"runtime role bypasses RLS", `ALTER ROLE {role} BYPASSRLS`, "role-bypassrls", "{role}"},
		{"runtime role missing", `DROP ROLE {role}`, "role-missing", "{role}"},
	}
	for _, d := range defects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			// Each case has a runtime role of its own, so altering it touches no other test.
			role := tenancytest.UniqueName("tenancy_rt")
			qrole := pgx.Identifier{role}.Sanitize()
			if _, err := b.pool.Exec(ctx, "CREATE ROLE "+qrole+" NOLOGIN"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				c := context.Background()
				b.pool.Exec(c, "REASSIGN OWNED BY "+qrole+" TO postgres")
				b.pool.Exec(c, "DROP OWNED BY "+qrole)
				b.pool.Exec(c, "DROP ROLE IF EXISTS "+qrole)
			})
			schema := strings.ReplaceAll(cleanSchema, "SELECT tenancy.isolate('items');", "SELECT tenancy.isolate('items', '"+role+"');")
			schema = strings.ReplaceAll(schema, "SELECT tenancy.isolate('parts');", "SELECT tenancy.isolate('parts', '"+role+"');")
			if _, err := b.pool.Exec(ctx, schema); err != nil {
				t.Fatal(err)
			}
			opts := &tenancypgx.AuditOpts{Role: role}
			before, err := tenancypgx.Audit(ctx, b.pool, opts)
			if err != nil || !before.OK() {
				t.Fatalf("control: before the defect: %v %+v", err, before)
			}
			if strings.Contains(d.sql, "DROP ROLE") {
				b.pool.Exec(ctx, "DROP OWNED BY "+qrole)
			}
			if _, err := b.pool.Exec(ctx, strings.ReplaceAll(d.sql, "{role}", qrole)); err != nil {
				t.Fatal(err)
			}
			rep, err := tenancypgx.Audit(ctx, b.pool, opts)
			if err != nil {
				t.Fatal(err)
			}
			object := strings.ReplaceAll(d.object, "{role}", role)
			for _, f := range rep.Findings {
				if f.Check == d.check && f.Object == object && f.Problem != "" {
					return
				}
			}
			t.Fatalf("no %s finding for %s; got %+v", d.check, object, rep.Findings)
		})
	}
}
