package tenancyaudit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancyaudit"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancytest"
)

// cleanLine is a tenant line that uses every feature the audit must accept: tenant tables with
// keys and references that lead with tenant_id, a serial column, a trigger that writes a tenant
// table, a view with security_invoker and a SECURITY INVOKER function.
var cleanLine = fstest.MapFS{"0001_items.sql": {Data: []byte(`
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
CREATE TABLE counters (tenant_id uuid NOT NULL, id bigserial, PRIMARY KEY (tenant_id, id));
SELECT tenancy.isolate('counters');
CREATE TABLE item_log (tenant_id uuid NOT NULL, sku text NOT NULL);
SELECT tenancy.isolate('item_log');
CREATE FUNCTION log_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO item_log (sku) VALUES (NEW.sku);
	RETURN NEW;
END $$;
CREATE TRIGGER log_item AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION log_item();
CREATE VIEW item_skus WITH (security_invoker = true) AS SELECT id, sku FROM items;
GRANT SELECT ON item_skus TO tenancy_app;
CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM items';
`)}}

// fixture is a catalog database on the clean line with a shared table (plans) and two shared
// tenants, A and B, each with one item: A's is "a-secret".
type fixture struct {
	env        *tenancytest.Env
	a, b       *tenancy.Tenant
	ctxA, ctxB context.Context
	aItem      string
	database   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{env: tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: cleanLine})}
	f.a, f.b = f.env.Pair(t, tenancy.IsolationShared)
	f.ctxA, f.ctxB = tenancytest.Context(f.a), tenancytest.Context(f.b)
	f.exec(t, `CREATE TABLE plans (name text PRIMARY KEY, price int NOT NULL);
		INSERT INTO plans VALUES ('free', 0), ('pro', 10);
		SELECT tenancy.share('plans');`)
	if err := f.env.DB.Tx(f.ctxA, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `INSERT INTO items (sku) VALUES ('a-secret') RETURNING id`).Scan(&f.aItem)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.DB.Exec(f.ctxB, `INSERT INTO items (sku) VALUES ('b-own')`); err != nil {
		t.Fatal(err)
	}
	if err := f.env.Pool.QueryRow(context.Background(), "SELECT current_database()").Scan(&f.database); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := f.env.Pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

func (f *fixture) audit(t *testing.T, opts *tenancyaudit.Options) *tenancyaudit.Report {
	t.Helper()
	rep, err := tenancyaudit.Audit(context.Background(), f.env.Catalog, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// count runs a count query in tn's transaction; an error counts as nothing seen.
func (f *fixture) count(ctx context.Context, sql string, args ...any) int {
	var n int
	if err := f.env.DB.Tx(ctx, func(tx pgx.Tx) error { return tx.QueryRow(ctx, sql, args...).Scan(&n) }); err != nil {
		return 0
	}
	return n
}

// aSeesOwn is the positive control beside every "B sees nothing": A sees its row.
func (f *fixture) aSeesOwn(t *testing.T) {
	t.Helper()
	if n := f.count(f.ctxA, `SELECT count(*) FROM items WHERE sku = 'a-secret'`); n != 1 {
		t.Fatalf("control: A sees its own item %d times, want 1", n)
	}
}

func find(rep *tenancyaudit.Report, kind, object string) *tenancyaudit.Finding {
	for i, f := range rep.Findings {
		if f.Kind == kind && f.Object == object {
			return &rep.Findings[i]
		}
	}
	return nil
}

var errRollback = errors.New("rolled back on purpose")

func code(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// A clean database, every supported feature in use, with tenants of all three models: no finding.
func TestCleanDatabaseHasNoFinding(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.env.NewTenant(t, tenancy.IsolationSchema)
	dbTenant := f.env.NewTenant(t, tenancy.IsolationDatabase)
	// A restrictive policy narrows: it may sit beside the toolkit's.
	f.exec(t, `CREATE POLICY not_empty ON items AS RESTRICTIVE FOR SELECT USING (sku <> '')`)
	// Per-tenant partitions: a unique key without the tenant column on a partition that holds one
	// tenant's rows reveals no one else's.
	f.exec(t, `CREATE TABLE events (tenant_id uuid NOT NULL, slug text NOT NULL) PARTITION BY LIST (tenant_id);
		SELECT tenancy.isolate('events');
		CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('`+f.a.ID+`');
		ALTER TABLE events_a ADD CONSTRAINT events_a_slug UNIQUE (slug)`)
	// A policy of one's own that compares the tenant column as text, and an inheritance child
	// reached only through its parent.
	f.exec(t, `CREATE TABLE notes (tenant_id uuid NOT NULL, body text);
		ALTER TABLE notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
		CREATE POLICY own ON notes USING (tenant_id::text = tenancy.current_tenant())
			WITH CHECK (tenant_id = ANY (ARRAY[(SELECT tenancy.current_tenant()::uuid)]));
		GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO tenancy_app;
		CREATE TABLE notes_2025 () INHERITS (notes)`)
	rep := f.audit(t, nil)
	if !rep.OK() {
		var out strings.Builder
		rep.WriteText(&out)
		t.Fatalf("a clean database has findings:\n%s", out.String())
	}
	// The controls that the audit looked: the catalog's database and the database tenant's, and
	// the tenant tables of the shared schema, the schema tenant and the database tenant.
	var catalogs, tenantDBs int
	for _, d := range rep.Databases {
		switch {
		case len(d.Tenants) == 0 && d.Database == f.database:
			catalogs++
		case len(d.Tenants) == 1 && d.Tenants[0] == dbTenant.Slug && d.Database == dbTenant.Database:
			tenantDBs++
		}
	}
	if len(rep.Databases) != 2 || catalogs != 1 || tenantDBs != 1 {
		t.Fatalf("databases audited: %+v", rep.Databases)
	}
	if n := rep.TenantTables(); n != 3*4+4 {
		t.Fatalf("%d tenant tables, want 16 (8 in public, 4 in the schema tenant's and the database tenant's)", n)
	}
	// The features work as the runtime role: the serial column (now an identity column) without a
	// grant on its sequence, the trigger, the view, the function.
	if _, err := f.env.DB.Exec(f.ctxB, `INSERT INTO counters DEFAULT VALUES`); err != nil {
		t.Fatalf("insert into a table with a serial column: %v", err)
	}
	if n := f.count(f.ctxB, `SELECT count(*) FROM item_log`); n != 1 {
		t.Fatalf("B's trigger-written log has %d rows, want 1", n)
	}
	if n := f.count(f.ctxB, `SELECT count(*) FROM item_skus`); n != 1 {
		t.Fatalf("B sees %d rows through the view, want its 1", n)
	}
	if n := f.count(f.ctxB, `SELECT item_count()`); n != 1 {
		t.Fatalf("B counts %d items through the function, want its 1", n)
	}
	if n := f.count(f.ctxB, `SELECT count(*) FROM plans`); n != 2 {
		t.Fatalf("B reads %d plans, want the 2 shared", n)
	}
	f.aSeesOwn(t)
	var out strings.Builder
	if err := rep.WriteText(&out); err != nil || !strings.Contains(out.String(), "OK") {
		t.Fatalf("text report: %v %s", err, out.String())
	}
}

// hole is one kind of finding: the SQL that opens it, the finding it must give, and how tenant B
// then reads, learns or changes what is A's (reached reports whether it did).
type hole struct {
	name, sql, kind, object string
	reached                 func(t *testing.T, f *fixture) bool
}

func bCounts(sql string) func(*testing.T, *fixture) bool {
	return func(_ *testing.T, f *fixture) bool { return f.count(f.ctxB, sql) > 0 }
}

var holes = []hole{
	{"policy with an OR", `CREATE POLICY wide ON items USING (tenant_id = tenancy.current_tenant()::uuid OR tenant_id IS NOT NULL)`,
		"policy-widens", "items policy wide", bCounts(`SELECT count(*) FROM items WHERE sku = 'a-secret'`)},
	{"policy trusting app.tenant_id", `DROP POLICY tenant_isolation ON items;
		CREATE POLICY legacy ON items USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)`,
		"policy-forgeable-binding", "items policy legacy", func(t *testing.T, f *fixture) bool {
			var n int
			err := f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
				if _, err := tx.Exec(f.ctxB, `SELECT set_config('app.tenant_id', $1, true)`, f.a.ID); err != nil {
					return err
				}
				return tx.QueryRow(f.ctxB, `SELECT count(*) FROM items WHERE sku = 'a-secret'`).Scan(&n)
			})
			return err == nil && n > 0
		}},
	{"unique index without the tenant", `CREATE UNIQUE INDEX items_sku_global ON items (sku)`,
		"unique-without-tenant", "items_sku_global", func(t *testing.T, f *fixture) bool {
			// B cannot see A's sku, but an insert of it fails: B learns that it exists.
			err := f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
				if _, err := tx.Exec(f.ctxB, `INSERT INTO items (sku) VALUES ('b-fresh')`); err != nil {
					t.Fatalf("control: B inserts a sku no one has: %v", err)
				}
				if _, err := tx.Exec(f.ctxB, `INSERT INTO items (sku) VALUES ('a-secret')`); err != nil {
					return err
				}
				return errRollback
			})
			return code(err) == "23505"
		}},
	{"security definer function over a tenant table", `CREATE FUNCTION leaky() RETURNS bigint LANGUAGE sql SECURITY DEFINER
		SET search_path = public, pg_temp AS 'SELECT count(*) FROM items'`,
		"security-definer", "leaky()", func(t *testing.T, f *fixture) bool {
			return f.count(f.ctxB, `SELECT leaky()`) > f.count(f.ctxB, `SELECT count(*) FROM items`)
		}},
	{"view without security_invoker", `CREATE VIEW all_items AS SELECT sku FROM items; GRANT SELECT ON all_items TO tenancy_app`,
		"view-not-security-invoker", "all_items", bCounts(`SELECT count(*) FROM all_items WHERE sku = 'a-secret'`)},
	{"materialized view", `CREATE MATERIALIZED VIEW item_cache AS SELECT sku FROM items; GRANT SELECT ON item_cache TO tenancy_app`,
		"materialized-view", "item_cache", bCounts(`SELECT count(*) FROM item_cache WHERE sku = 'a-secret'`)},
	{"rule", `CREATE TABLE requests (sku text); GRANT INSERT ON requests TO tenancy_app;
		CREATE RULE rename AS ON INSERT TO requests DO ALSO UPDATE items SET sku = 'renamed' WHERE sku = NEW.sku`,
		"rule", "requests rule rename", func(t *testing.T, f *fixture) bool {
			// B changes A's row through the rule, which runs as the table's owner.
			f.env.DB.Exec(f.ctxB, `INSERT INTO requests VALUES ('a-secret')`)
			var n int
			f.env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM items WHERE sku = 'renamed'`).Scan(&n)
			f.env.Pool.Exec(context.Background(), `UPDATE items SET sku = 'a-secret' WHERE sku = 'renamed'`)
			return n > 0
		}},
	{"trigger writing a readable table", `CREATE TABLE item_feed (sku text); GRANT SELECT, INSERT ON item_feed TO tenancy_app;
		CREATE FUNCTION feed_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO item_feed (sku) VALUES (NEW.sku); RETURN NEW; END $$;
		CREATE TRIGGER feed_item AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION feed_item()`,
		"trigger-writes-readable", "items trigger feed_item", func(t *testing.T, f *fixture) bool {
			sku := tenancytest.UniqueName("a-new")
			if _, err := f.env.DB.Exec(f.ctxA, `INSERT INTO items (sku) VALUES ($1)`, sku); err != nil {
				t.Fatalf("control: A inserts an item: %v", err)
			}
			return f.count(f.ctxB, `SELECT count(*) FROM item_feed WHERE sku = $1`, sku) > 0
		}},
	{"readable sequence of a tenant table", `GRANT SELECT ON SEQUENCE counters_id_seq TO tenancy_app`,
		"sequence-readable", "counters_id_seq", func(t *testing.T, f *fixture) bool {
			// B has inserted nothing into counters; the sequence tells it how many rows A has.
			for range 3 {
				if _, err := f.env.DB.Exec(f.ctxA, `INSERT INTO counters DEFAULT VALUES`); err != nil {
					t.Fatalf("control: A inserts: %v", err)
				}
			}
			return f.count(f.ctxB, `SELECT last_value FROM counters_id_seq`) >= 3
		}},
	{"TEMP privilege", `GRANT TEMPORARY ON DATABASE {db} TO tenancy_app`,
		"temp-privilege", "database {dbname}", func(t *testing.T, f *fixture) bool {
			// A temporary table outlives the transaction on its connection (tenancypgx discards it,
			// a pooler in session mode would hand it to the next tenant).
			err := f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
				_, err := tx.Exec(f.ctxB, `CREATE TEMP TABLE items (sku text)`)
				return err
			})
			return err == nil
		}},
	{"readable large object", `SELECT lo_from_bytea(424242, 'a-secret-blob');
		GRANT SELECT ON LARGE OBJECT 424242 TO tenancy_app; GRANT EXECUTE ON FUNCTION lo_get(oid) TO tenancy_app`,
		"large-object-readable", "large object 424242", func(t *testing.T, f *fixture) bool {
			var b []byte
			err := f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error { return tx.QueryRow(f.ctxB, `SELECT lo_get(424242)`).Scan(&b) })
			return err == nil && string(b) == "a-secret-blob"
		}},
	{"readable table that is not a tenant's", `CREATE TABLE archive (body text); INSERT INTO archive VALUES ('a-archived');
		GRANT SELECT ON archive TO tenancy_app`,
		"readable-table", "archive", bCounts(`SELECT count(*) FROM archive WHERE body = 'a-archived'`)},
	{"fences readable by every tenant", `INSERT INTO tenancy.fences (proof, placement, tenant_id, state)
			VALUES ('a-proof', 'shared', gen_random_uuid(), 'moved');
		CREATE POLICY everyone ON tenancy.fences FOR SELECT USING (true)`,
		"readable-table", "tenancy.fences", bCounts(`SELECT count(*) FROM tenancy.fences`)},
	{"readable catalog table", `GRANT SELECT ON tenancy.tenants TO tenancy_app`,
		"readable-table", "tenancy.tenants", func(t *testing.T, f *fixture) bool {
			return f.count(f.ctxB, `SELECT count(*) FROM tenancy.tenants WHERE slug = $1`, f.a.Slug) > 0
		}},
	{"writable shared table", `GRANT UPDATE ON plans TO tenancy_app`,
		"shared-table-writable", "plans", func(t *testing.T, f *fixture) bool {
			// B changes the price every tenant reads.
			err := f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
				tag, err := tx.Exec(f.ctxB, `UPDATE plans SET price = 0 WHERE name = 'pro'`)
				if err != nil {
					return err
				}
				if tag.RowsAffected() == 0 {
					return nil
				}
				return errRollback
			})
			return errors.Is(err, errRollback)
		}},
	{"table referencing a tenant table without a tenant column", `CREATE TABLE item_notes (item_tenant uuid NOT NULL, item_id uuid NOT NULL, note text,
			FOREIGN KEY (item_tenant, item_id) REFERENCES items (tenant_id, id));
		INSERT INTO item_notes SELECT tenant_id, id, 'a-note' FROM items WHERE sku = 'a-secret';
		GRANT SELECT, INSERT ON item_notes TO tenancy_app`,
		"untenanted-child", "item_notes", bCounts(`SELECT count(*) FROM item_notes WHERE note = 'a-note'`)},
	{"foreign key without the tenant", `ALTER TABLE parts ADD COLUMN other_item uuid;
		CREATE UNIQUE INDEX items_id_global ON items (id);
		ALTER TABLE parts ADD CONSTRAINT parts_other_fk FOREIGN KEY (other_item) REFERENCES items (id)`,
		"foreign-key-without-tenant", "parts constraint parts_other_fk", func(t *testing.T, f *fixture) bool {
			// B probes for A's item id: pointing at it succeeds where a made-up id fails.
			insert := func(other string) error {
				return f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
					_, err := tx.Exec(f.ctxB, `INSERT INTO parts (item_id, other_item)
						SELECT id, $1::uuid FROM items WHERE sku = 'b-own'`, other)
					if err != nil {
						return err
					}
					return errRollback
				})
			}
			return errors.Is(insert(f.aItem), errRollback) && code(insert("00000000-0000-0000-0000-000000000001")) == "23503"
		}},
}

// bTx runs statements in B's transaction and returns the last one's error, if any.
func (f *fixture) bTx(stmts ...string) error {
	return f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(f.ctxB, s); err != nil {
				return err
			}
		}
		return nil
	})
}

// adminCount counts as the migration role (row-level security does not bind it).
func (f *fixture) adminCount(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := f.env.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%v: %s", err, sql)
	}
	return n
}

// holesFromReview are the holes an adversarial review of the first version found it passed.
var holesFromReview = []hole{
	{"TRUNCATE on a tenant table", `GRANT TRUNCATE ON counters TO tenancy_app`,
		"rls-bypassing-privilege", "counters", func(t *testing.T, f *fixture) bool {
			// TRUNCATE ignores row-level security: B empties A's rows.
			if _, err := f.env.DB.Exec(f.ctxA, `INSERT INTO counters DEFAULT VALUES`); err != nil {
				t.Fatalf("control: A inserts: %v", err)
			}
			if f.bTx(`TRUNCATE counters`) != nil {
				return false
			}
			return f.adminCount(t, `SELECT count(*) FROM counters WHERE tenant_id = $1`, f.a.ID) == 0
		}},
	{"tenant table inheriting a shared table", `CREATE TABLE catalog_entries (sku text); SELECT tenancy.share('catalog_entries');
		ALTER TABLE items INHERIT catalog_entries`,
		"inherits-into-untenanted", "items", bCounts(`SELECT count(*) FROM catalog_entries WHERE sku = 'a-secret'`)},
	{"LEAKPROOF function", `CREATE FUNCTION short_sku(s text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE LEAKPROOF COST 0.0001 AS $$
		BEGIN IF length(s) > 5 THEN RAISE EXCEPTION 'sku too long: %', s; END IF; RETURN true; END $$`,
		"leakproof-function", "short_sku(text)", func(t *testing.T, f *fixture) bool {
			// Run before the policy's filter, its error quotes A's sku.
			err := f.bTx(`SET LOCAL enable_indexscan = off`, `SET LOCAL enable_bitmapscan = off`, `SELECT count(*) FROM items WHERE short_sku(sku)`)
			return err != nil && strings.Contains(err.Error(), "a-secret")
		}},
	{"policy calling a function on row values", `CREATE FUNCTION shout(s text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
		BEGIN IF s LIKE 'a-%' THEN RAISE EXCEPTION 'saw %', s; END IF; RETURN true; END $$;
		CREATE POLICY loud ON items AS RESTRICTIVE FOR SELECT USING (shout(sku))`,
		"policy-leaky-function", "items policy loud", func(t *testing.T, f *fixture) bool {
			err := f.bTx(`SET LOCAL enable_indexscan = off`, `SET LOCAL enable_bitmapscan = off`, `SELECT count(*) FROM items`)
			return err != nil && strings.Contains(err.Error(), "a-secret")
		}},
	{"CREATE on the database", `GRANT CREATE ON DATABASE {db} TO tenancy_app`,
		"create-privilege", "database {dbname}", func(t *testing.T, f *fixture) bool {
			// B makes a schema named like the runtime role, first on the default search_path, and
			// captures A's next insert.
			defer f.env.Pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS tenancy_app CASCADE`)
			if f.bTx(`CREATE SCHEMA tenancy_app`, `CREATE TABLE tenancy_app.items (sku text)`) != nil {
				return false
			}
			sku := tenancytest.UniqueName("a-captured")
			f.env.DB.Exec(f.ctxA, `INSERT INTO items (sku) VALUES ($1)`, sku)
			return f.count(f.ctxB, `SELECT count(*) FROM tenancy_app.items WHERE sku = $1`, sku) > 0
		}},
	{"table the runtime role may delete from", `CREATE TABLE outbox (payload text); INSERT INTO outbox VALUES ('a-event');
		GRANT INSERT, DELETE ON outbox TO tenancy_app`,
		"writable-table", "outbox", func(t *testing.T, f *fixture) bool {
			defer f.env.Pool.Exec(context.Background(), `INSERT INTO outbox SELECT 'a-event' WHERE NOT EXISTS (SELECT FROM outbox)`)
			if f.bTx(`DELETE FROM outbox`) != nil {
				return false
			}
			return f.adminCount(t, `SELECT count(*) FROM outbox WHERE payload = 'a-event'`) == 0
		}},
	{"tenancy.current_tenant() replaced", `CREATE OR REPLACE FUNCTION tenancy.current_tenant() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
		SET search_path = pg_catalog, pg_temp AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '') $$`,
		"binding-tampered", "tenancy.current_tenant()", func(t *testing.T, f *fixture) bool {
			var n int
			err := f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
				if _, err := tx.Exec(f.ctxB, `SELECT set_config('app.tenant_id', $1, true)`, f.a.ID); err != nil {
					return err
				}
				return tx.QueryRow(f.ctxB, `SELECT count(*) FROM items WHERE sku = 'a-secret'`).Scan(&n)
			})
			return err == nil && n > 0
		}},
	{"tenant table without row-level security", `CREATE TABLE invoices (tenant_id uuid NOT NULL, total text);
		INSERT INTO invoices SELECT tenant_id, 'a-invoice' FROM items WHERE sku = 'a-secret';
		GRANT SELECT ON invoices TO tenancy_app`,
		"rls-disabled", "invoices", bCounts(`SELECT count(*) FROM invoices WHERE total = 'a-invoice'`)},
	{"domain owned by the runtime role", `CREATE DOMAIN sku_text AS text; ALTER TABLE item_log ALTER COLUMN sku TYPE sku_text;
		ALTER DOMAIN sku_text OWNER TO tenancy_app`,
		"role-owns-object", "type sku_text", func(t *testing.T, f *fixture) bool {
			// Its owner adds a constraint, which PostgreSQL checks on every row, RLS or not: the
			// error quotes A's value.
			err := f.bTx(`ALTER DOMAIN sku_text ADD CONSTRAINT numeric_sku CHECK (VALUE::int > 0)`)
			return err != nil && strings.Contains(err.Error(), "a-secret")
		}},
	{"trigger writing an unreadable table with a unique key", `CREATE TABLE sku_registry (sku text PRIMARY KEY);
		INSERT INTO sku_registry SELECT sku FROM items;
		GRANT INSERT ON sku_registry TO tenancy_app;
		CREATE FUNCTION register_sku() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO sku_registry VALUES (NEW.sku); RETURN NEW; END $$;
		CREATE TRIGGER register_sku BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION register_sku()`,
		"trigger-writes-untenanted", "items trigger register_sku", func(t *testing.T, f *fixture) bool {
			// B cannot read the registry, but its insert of A's sku fails there.
			err := f.env.DB.Tx(f.ctxB, func(tx pgx.Tx) error {
				if _, err := tx.Exec(f.ctxB, `INSERT INTO items (sku) VALUES ('a-secret')`); err != nil {
					return err
				}
				return errRollback
			})
			return code(err) == "23505"
		}},
	{"file-reading function granted", `CHECKPOINT; GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO tenancy_app`,
		"function-granted", "pg_read_binary_file(text)", func(t *testing.T, f *fixture) bool {
			// The heap file of items holds every tenant's rows.
			var path string
			if err := f.env.Pool.QueryRow(context.Background(), `SELECT pg_relation_filepath('items')`).Scan(&path); err != nil {
				t.Fatal(err)
			}
			return f.count(f.ctxB, `SELECT position('a-secret'::bytea IN pg_read_binary_file($1))`, path) > 0
		}},
	{"lock list readable", `GRANT SELECT ON pg_catalog.pg_locks TO PUBLIC; GRANT EXECUTE ON FUNCTION pg_catalog.pg_lock_status() TO PUBLIC`,
		"readable-table", "pg_locks", func(t *testing.T, f *fixture) bool {
			// A's unit key, as a unit of A holds it: B lists it.
			conn, err := f.env.Pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_lock(424242)`); err != nil {
				t.Fatal(err)
			}
			defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(424242)`)
			return f.count(f.ctxB, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242`) > 0
		}},
	{"system table granted", `ANALYZE items; GRANT SELECT ON pg_catalog.pg_statistic TO tenancy_app`,
		"readable-table", "pg_statistic", bCounts(`SELECT count(*) FROM pg_statistic WHERE stavalues1::text LIKE '%a-secret%'`)},
}

// Each kind of hole: the audit finds it (kind, object, database), tenant B really reaches A's
// data through it, and the finding's own fix removes both the finding and the reach.
func TestEachHoleIsFoundIsRealAndFixed(t *testing.T) {
	t.Parallel()
	for _, h := range append(holes, holesFromReview...) {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if rep := f.audit(t, nil); !rep.OK() {
				t.Fatalf("control: findings before the hole: %+v", rep.Findings)
			}
			if h.reached(t, f) {
				t.Fatal("control: B reached A's data before the hole was made")
			}
			f.aSeesOwn(t)
			f.exec(t, strings.NewReplacer("{db}", pgx.Identifier{f.database}.Sanitize()).Replace(h.sql))
			object := strings.ReplaceAll(h.object, "{dbname}", f.database)

			rep := f.audit(t, nil)
			found := find(rep, h.kind, object)
			if found == nil {
				t.Fatalf("no %s finding for %s; got %+v", h.kind, object, rep.Findings)
			}
			if found.Database != f.database || found.Server != tenancycatalog.DefaultServer || found.Problem == "" || found.Fix == "" || found.Severity == "" {
				t.Fatalf("finding incomplete: %+v", found)
			}
			if rep.OK() {
				t.Fatal("a report with a finding is OK")
			}
			if !h.reached(t, f) {
				t.Fatal("the hole is not real: B did not reach A's data through it")
			}

			f.exec(t, found.Fix)
			after := f.audit(t, nil)
			if again := find(after, h.kind, object); again != nil {
				t.Fatalf("the fix did not remove the finding: %+v\nfix:\n%s", again, found.Fix)
			}
			if h.reached(t, f) {
				t.Fatalf("after the fix B still reaches A's data\nfix:\n%s", found.Fix)
			}
			f.aSeesOwn(t)
		})
	}
}

// Variants the audit must recognise as the same kinds of hole.
func TestVariantsAreFound(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	variants := []struct{ name, sql, kind, object string }{
		{"policy comparing with another column", `ALTER TABLE items ADD COLUMN owner uuid;
			CREATE POLICY owner ON items FOR SELECT USING (tenant_id = owner)`, "policy-widens", "items policy owner"},
		{"policy calling a function", `CREATE FUNCTION is_staff() RETURNS boolean LANGUAGE sql AS 'SELECT true';
			CREATE POLICY staff ON items FOR SELECT USING (is_staff() AND tenant_id IS NOT NULL)`, "policy-widens", "items policy staff"},
		{"insert policy checking nothing", `CREATE POLICY any_insert ON counters FOR INSERT WITH CHECK (tenant_id IS NOT NULL)`,
			"policy-widens", "counters policy any_insert"},
		{"all-commands policy whose WITH CHECK widens", `CREATE POLICY loose_check ON item_log USING (tenant_id = (SELECT tenancy.current_tenant()::uuid)) WITH CHECK (true)`,
			"policy-widens", "item_log policy loose_check"},
		{"restrictive policy cannot widen", `DROP POLICY tenant_isolation ON parts;
			CREATE POLICY open ON parts USING (true);
			CREATE POLICY also ON parts AS RESTRICTIVE USING (true)`, "policy-widens", "parts policy open"},
		{"partial unique index", `CREATE UNIQUE INDEX items_sku_partial ON items (sku) WHERE sku <> ''`, "unique-without-tenant", "items_sku_partial"},
		{"expression unique index", `CREATE UNIQUE INDEX items_sku_lower ON items (lower(sku))`, "unique-without-tenant", "items_sku_lower"},
		{"tenant only an INCLUDE column", `CREATE UNIQUE INDEX items_sku_incl ON items (sku) INCLUDE (tenant_id)`, "unique-without-tenant", "items_sku_incl"},
		{"unique key on a default partition", `CREATE TABLE logs (tenant_id uuid NOT NULL, slug text NOT NULL) PARTITION BY LIST (tenant_id);
			SELECT tenancy.isolate('logs'); CREATE TABLE logs_rest PARTITION OF logs DEFAULT;
			ALTER TABLE logs_rest ADD CONSTRAINT logs_rest_slug UNIQUE (slug)`, "unique-without-tenant", "logs_rest_slug"},
		{"unique constraint", `ALTER TABLE item_log ADD CONSTRAINT item_log_sku_key UNIQUE (sku)`, "unique-without-tenant", "item_log_sku_key"},
		{"definer callable by the runtime role", `CREATE FUNCTION as_owner() RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS 'SELECT current_user::text'`,
			"security-definer", "as_owner()"},
		{"definer view over a private table", `CREATE TABLE secrets (v text); CREATE VIEW secret_view AS SELECT v FROM secrets; GRANT SELECT ON secret_view TO tenancy_app`,
			"readable-table", "secret_view"},
		{"rls disabled", `CREATE TABLE orders (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id))`, "rls-disabled", "orders"},
		{"rls not forced", `ALTER TABLE parts NO FORCE ROW LEVEL SECURITY`, "rls-not-forced", "parts"},
		{"granted without a policy", `CREATE TABLE quotes (tenant_id uuid NOT NULL); ALTER TABLE quotes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
			GRANT SELECT ON quotes TO tenancy_app`, "policy-missing", "quotes"},
		{"exclusion constraint comparing the tenant with <>", `CREATE EXTENSION IF NOT EXISTS btree_gist;
			ALTER TABLE items ADD CONSTRAINT sku_one_owner EXCLUDE USING gist (sku WITH =, tenant_id WITH <>)`, "unique-without-tenant", "sku_one_owner"},
		{"view over a sequence", `CREATE VIEW counter_stats AS SELECT last_value FROM counters_id_seq; GRANT SELECT ON counter_stats TO tenancy_app`,
			"readable-table", "counter_stats"},
		{"definer reached through an invoker view", `CREATE SCHEMA internal;
			CREATE FUNCTION internal.all_skus() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER SET search_path = public AS 'SELECT sku FROM item_skus';
			CREATE VIEW sku_directory WITH (security_invoker = true) AS SELECT * FROM internal.all_skus() s;
			GRANT SELECT ON sku_directory TO tenancy_app`, "security-definer", "internal.all_skus()"},
		{"trigger writing a shared table through a helper", `CREATE FUNCTION publish(s text) RETURNS void LANGUAGE sql AS 'INSERT INTO plans VALUES (s, 0)';
			CREATE FUNCTION on_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM publish(NEW.sku); RETURN NEW; END $$;
			CREATE TRIGGER on_item AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION on_item()`, "trigger-writes-readable", "items trigger on_item"},
		{"trigger writing through dynamic SQL", `CREATE TABLE feed (v text); GRANT SELECT, INSERT ON feed TO tenancy_app;
			CREATE FUNCTION on_part() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('INSERT INTO %I VALUES ($1)', 'feed') USING NEW.id::text; RETURN NEW; END $$;
			CREATE TRIGGER on_part AFTER INSERT ON parts FOR EACH ROW EXECUTE FUNCTION on_part()`, "trigger-writes-readable", "parts trigger on_part"},
		{"trigger sending NOTIFY", `CREATE FUNCTION announce() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('items', NEW.sku); RETURN NEW; END $$;
			CREATE TRIGGER announce AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION announce()`, "trigger-notifies", "items trigger announce"},
		{"sequence behind a default function", `CREATE SEQUENCE item_no_seq; GRANT USAGE ON SEQUENCE item_no_seq TO tenancy_app`,
			"sequence-readable", "item_no_seq"},
		{"insert-only table with a unique key", `CREATE TABLE signups (email text PRIMARY KEY); GRANT INSERT ON signups TO tenancy_app`,
			"writable-table", "signups"},
		{"child with RLS but no tenant column", `CREATE TABLE item_refs (item_tenant uuid, item_id uuid, FOREIGN KEY (item_tenant, item_id) REFERENCES items (tenant_id, id));
			ALTER TABLE item_refs ENABLE ROW LEVEL SECURITY; CREATE POLICY add ON item_refs FOR INSERT WITH CHECK (true); GRANT INSERT ON item_refs TO tenancy_app`,
			"untenanted-child", "item_refs"},
		{"table in information_schema", `CREATE TABLE information_schema.item_notes (tenant_id uuid NOT NULL, body text);
			GRANT SELECT ON information_schema.item_notes TO tenancy_app`, "rls-disabled", "information_schema.item_notes"},
		{"CREATE on a schema", `CREATE SCHEMA scratch; GRANT CREATE ON SCHEMA scratch TO tenancy_app`, "create-privilege", "schema scratch"},
		{"tenancy.current_tenant() made IMMUTABLE", `ALTER FUNCTION tenancy.current_tenant() IMMUTABLE`, "binding-tampered", "tenancy.current_tenant()"},
		{"SECURITY DEFINER trigger nobody may call", `CREATE TABLE sku_registry (sku text PRIMARY KEY);
			CREATE FUNCTION register_sku() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN INSERT INTO sku_registry VALUES (NEW.sku); RETURN NEW; END $$;
			REVOKE EXECUTE ON FUNCTION register_sku() FROM PUBLIC;
			CREATE TRIGGER register_sku BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION register_sku()`, "security-definer", "register_sku()"},
		{"trigger writing an unreadable table with a unique key", ``, "trigger-writes-untenanted", "items trigger register_sku"},
		{"domain owned by the runtime role", `CREATE DOMAIN note_text AS text; ALTER TABLE item_log ADD COLUMN note note_text;
			ALTER DOMAIN note_text OWNER TO tenancy_app`, "role-owns-object", "type note_text"},
		{"owner's-rights view writing a shared table", `CREATE VIEW plan_admin AS SELECT name, price FROM plans; GRANT SELECT, UPDATE ON plan_admin TO tenancy_app`,
			"shared-table-writable", "plan_admin"},
		{"foreign server with a user mapping", `CREATE EXTENSION IF NOT EXISTS postgres_fdw; CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'postgres');
			GRANT USAGE ON FOREIGN SERVER elsewhere TO tenancy_app; CREATE USER MAPPING FOR tenancy_app SERVER elsewhere OPTIONS (user 'postgres', password 'secret')`,
			"foreign-server", "server elsewhere"},
		{"file-reading function granted", `GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO tenancy_app`, "function-granted", "pg_read_binary_file(text)"},
		{"tenant data in another schema", `CREATE SCHEMA reports; GRANT USAGE ON SCHEMA reports TO tenancy_app;
			CREATE TABLE reports.monthly (tenant_id uuid NOT NULL, total int); GRANT SELECT ON reports.monthly TO tenancy_app`, "rls-disabled", "reports.monthly"},
	}
	for _, v := range variants {
		if v.sql != "" {
			f.exec(t, v.sql)
		}
	}
	// The sequence of a schema tenant's table counts that tenant's rows for whoever reads it.
	st := f.env.NewTenant(t, tenancy.IsolationSchema)
	seq := tenancycatalog.SchemaName(st.ID) + ".counters_id_seq"
	f.exec(t, "GRANT SELECT ON SEQUENCE "+seq+" TO tenancy_app")
	variants = append(variants, struct{ name, sql, kind, object string }{"schema tenant's sequence", "", "sequence-readable", seq})
	rep := f.audit(t, nil)
	for _, v := range variants {
		if find(rep, v.kind, v.object) == nil {
			t.Errorf("%s: no %s finding for %s", v.name, v.kind, v.object)
		}
	}
	if t.Failed() {
		var out strings.Builder
		rep.WriteText(&out)
		t.Log(out.String())
	}
}

// The tenant column may have another name: the audit takes it as an option.
func TestTenantColumnIsConfigurable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(t, `CREATE TABLE invoices (org_id uuid NOT NULL, total int);
		ALTER TABLE invoices ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
		CREATE POLICY org ON invoices USING (org_id = (SELECT tenancy.current_tenant()::uuid));
		GRANT SELECT ON invoices TO tenancy_app;
		CREATE TABLE payments (org_id uuid NOT NULL, amount int);
		GRANT SELECT ON payments TO tenancy_app`)
	rep := f.audit(t, &tenancyaudit.Options{TenantColumn: "org_id"})
	if find(rep, "rls-disabled", "payments") == nil {
		t.Fatalf("payments, whose org_id column has no RLS, is not found: %+v", rep.Findings)
	}
	if find(rep, "rls-disabled", "invoices") != nil || find(rep, "policy-widens", "invoices policy org") != nil {
		t.Fatalf("invoices, isolated on org_id, has a finding: %+v", rep.Findings)
	}
	// With the default column, org_id is nobody's tenant column: both are readable tables.
	rep = f.audit(t, nil)
	if find(rep, "readable-table", "payments") == nil {
		t.Fatalf("with tenant_id as the column, payments is not a readable table: %+v", rep.Findings)
	}
}

// Findings accepted in the catalog, with a reason, do not fail the audit; others still do.
func TestAcceptedFindings(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(t, `CREATE TABLE countries (code text PRIMARY KEY); GRANT SELECT ON countries TO tenancy_app;
		CREATE TABLE archive (body text); GRANT SELECT ON archive TO tenancy_app`)
	ctx := context.Background()
	if err := f.env.Catalog.IgnoreFinding(ctx, "readable-table", "countries", " "); !errors.Is(err, tenancycatalog.ErrInvalidIgnore) {
		t.Fatalf("accepting without a reason: %v", err)
	}
	if err := f.env.Catalog.IgnoreFinding(ctx, "readable-table", "countries", "ISO codes, public"); err != nil {
		t.Fatal(err)
	}
	rep := f.audit(t, nil)
	if len(rep.Ignored) != 1 || rep.Ignored[0].Object != "countries" || rep.Ignored[0].Reason != "ISO codes, public" {
		t.Fatalf("accepted: %+v", rep.Ignored)
	}
	if find(rep, "readable-table", "archive") == nil || find(rep, "readable-table", "countries") != nil || rep.OK() {
		t.Fatalf("findings: %+v", rep.Findings)
	}
	if err := f.env.Catalog.IgnoreFinding(ctx, "readable-table", "archive", "old data, scrubbed"); err != nil {
		t.Fatal(err)
	}
	if rep := f.audit(t, nil); !rep.OK() || len(rep.Ignored) != 2 {
		t.Fatalf("with both accepted: %+v", rep)
	}
	if ok, err := f.env.Catalog.UnignoreFinding(ctx, "readable-table", "archive"); !ok || err != nil {
		t.Fatalf("unignore: %v %v", ok, err)
	}
	if rep := f.audit(t, nil); rep.OK() || find(rep, "readable-table", "archive") == nil {
		t.Fatalf("after taking it back: %+v", rep)
	}
}

// A hole in a database tenant's own database is reported there, by name.
func TestAuditsEveryTenantDatabase(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	one := f.env.NewTenant(t, tenancy.IsolationDatabase)
	two := f.env.NewTenant(t, tenancy.IsolationDatabase)
	cfg, err := f.env.Catalog.Servers().ConnConfig(two.Server, two.Database)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(context.Background(), `CREATE VIEW everything AS SELECT * FROM items; GRANT SELECT ON everything TO tenancy_app`)
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A database named like a tenant's that no tenant of this catalog has: listed, not a finding.
	stray := "tenant_"
	for len(stray) < len("tenant_")+32 {
		stray += strings.TrimPrefix(tenancytest.UniqueName("x"), "x_")
	}
	stray = stray[:len("tenant_")+32]
	f.exec(t, "CREATE DATABASE "+stray)
	t.Cleanup(func() { tenancytest.DropDatabase(t, stray) })
	rep := f.audit(t, nil)
	listed := map[string]string{}
	for _, u := range rep.Unclaimed {
		listed[u.Database] = u.Kind
	}
	if listed[stray] != "tenant" || listed[one.Database] != "" || listed[two.Database] != "" {
		t.Fatalf("unclaimed databases %v: want %s (and neither tenant's own)", listed, stray)
	}
	if len(rep.Databases) != 3 {
		t.Fatalf("audited %d databases, want the catalog's and two tenants'", len(rep.Databases))
	}
	got := find(rep, "view-not-security-invoker", "everything")
	if got == nil || got.Database != two.Database || len(rep.Findings) != 1 {
		t.Fatalf("want one finding, in %s (not %s): %+v", two.Database, one.Database, rep.Findings)
	}
	var out strings.Builder
	rep.WriteText(&out)
	if !strings.Contains(out.String(), two.Database) || !strings.Contains(out.String(), "ALTER VIEW everything SET (security_invoker = true)") {
		t.Fatalf("text report:\n%s", out.String())
	}
}

// roleFixture is a fixture whose runtime role is a role of the test's own (roles belong to the
// whole server, so a test may only change its own), granted the items table.
func roleFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	role := tenancytest.UniqueName("tenancy_rt")
	f.exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN NOINHERIT; SELECT tenancy.isolate('items', '%s')`, role, role))
	t.Cleanup(func() {
		c := context.Background()
		for _, r := range []string{role, role + "_up", role + "_login"} {
			f.env.Pool.Exec(c, "REASSIGN OWNED BY "+r+" TO postgres")
			f.env.Pool.Exec(c, "DROP OWNED BY "+r)
			f.env.Pool.Exec(c, "DROP ROLE IF EXISTS "+r)
		}
	})
	return f, role
}

// as connects to the fixture's database as role, with no tenant bound.
func (f *fixture) as(t *testing.T, role string) *pgx.Conn {
	t.Helper()
	cfg := f.env.Pool.Config().ConnConfig.Copy()
	cfg.User = role
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// seesAll reports whether conn, bound to no tenant, sees A's item (in a transaction rolled back:
// whatever it did to get there is undone).
func seesAll(conn *pgx.Conn, setup string) bool {
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false
	}
	defer tx.Rollback(ctx)
	if setup != "" {
		if _, err := tx.Exec(ctx, setup); err != nil {
			return false
		}
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM public.items WHERE sku = 'a-secret'`).Scan(&n); err != nil {
		return false
	}
	return n > 0
}

// forgeA reads the binding key and the catalog as pg_read_all_data and binds the transaction to
// tenant A, as the HMAC in tenancy.current_tenant() expects.
const forgeA = `SET ROLE pg_read_all_data;
SELECT set_config('app.tenant_id', t.id::text, true),
       set_config('app.tenant_proof', encode(sha256(k.outer_key || sha256(k.inner_key || convert_to(t.id::text, 'UTF8'))), 'hex'), true)
  FROM tenancy.binding_key k, tenancy.tenants t WHERE t.slug = '{aslug}';
RESET ROLE`

func TestRoleHoles(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, sql, kind, object string
		login                   bool   // the login role is {r}_login, which can become the runtime role
		setup                   string // what the role runs before reading, in the same transaction
	}{
		{"runtime role is a superuser", `ALTER ROLE {r} SUPERUSER`, "role-superuser", "{r}", false, ""},
		{"runtime role bypasses RLS", `ALTER ROLE {r} BYPASSRLS`, "role-bypassrls", "{r}", false, ""},
		{"runtime role can become a superuser", `CREATE ROLE {r}_up SUPERUSER NOLOGIN; GRANT {r}_up TO {r}`, "role-superuser", "{r}_up", false, "SET ROLE {r}_up"},
		{"runtime role owns a tenant table", `ALTER TABLE items OWNER TO {r}`, "role-owns-table", "items", false, "ALTER TABLE items NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY"},
		// CREATEROLE grants itself pg_read_all_data (any role but a superuser), reads the binding
		// key and binds itself to tenant A, as only tenancypgx should be able to.
		{"runtime role can create roles", `ALTER ROLE {r} CREATEROLE`, "role-createrole", "{r}", false,
			"GRANT pg_read_all_data TO {r}; " + forgeA},
		{"runtime role is a member of pg_read_all_data", `GRANT pg_read_all_data TO {r}`, "role-predefined", "pg_read_all_data", false, forgeA},
		{"policy for a role the runtime role can become", `CREATE ROLE {r}_up NOLOGIN; GRANT {r}_up TO {r}; GRANT SELECT ON items TO {r}_up;
			CREATE POLICY via_role ON items FOR SELECT TO {r}_up USING (true)`, "policy-widens", "items policy via_role", false, "SET ROLE {r}_up"},
		{"login role can become a superuser", `CREATE ROLE {r}_up SUPERUSER NOLOGIN; GRANT {r}_up TO {r}_login`,
			"login-role-superuser", "{r}_up", true, "SET ROLE {r}_up"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f, role := roleFixture(t)
			r := strings.NewReplacer("{r}", role)
			opts := &tenancyaudit.Options{Role: role}
			if c.login {
				opts.LoginRole = role + "_login"
			}
			if rep := f.audit(t, opts); !rep.OK() {
				t.Fatalf("control: findings before the hole: %+v", rep.Findings)
			}
			login := role
			if c.login {
				login = role + "_login"
			}
			if c.login {
				f.exec(t, r.Replace("CREATE ROLE {r}_login LOGIN; GRANT {r} TO {r}_login"))
			}
			r = strings.NewReplacer("{r}", role, "{aslug}", f.a.Slug)
			if seesAll(f.as(t, login), r.Replace(c.setup)) {
				t.Fatal("control: the role sees A's item before the hole")
			}
			f.exec(t, r.Replace(c.sql))
			conn := f.as(t, login)
			rep := f.audit(t, opts)
			found := find(rep, c.kind, r.Replace(c.object))
			if found == nil {
				t.Fatalf("no %s finding for %s; got %+v", c.kind, r.Replace(c.object), rep.Findings)
			}
			if !seesAll(conn, r.Replace(c.setup)) {
				t.Fatal("the hole is not real: the role does not see A's item through it")
			}
			f.exec(t, found.Fix)
			conn = f.as(t, login) // role attributes are read at login
			if after := f.audit(t, opts); find(after, c.kind, r.Replace(c.object)) != nil {
				t.Fatalf("the fix did not remove the finding\nfix:\n%s", found.Fix)
			}
			if seesAll(conn, r.Replace(c.setup)) {
				t.Fatalf("after the fix the role still sees A's item\nfix:\n%s", found.Fix)
			}
			f.aSeesOwn(t)
		})
	}
}

// The runtime role that does not exist is a finding, not an error.
func TestMissingRuntimeRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rep := f.audit(t, &tenancyaudit.Options{Role: tenancytest.UniqueName("no_such_role")})
	if rep.OK() || rep.Findings[0].Kind != "role-missing" {
		t.Fatalf("findings: %+v", rep.Findings)
	}
}

// A runtime role that can create databases can copy any template database, the toolkit's
// template of database tenants included.
func TestRoleThatCreatesDatabases(t *testing.T) {
	t.Parallel()
	f, role := roleFixture(t)
	opts := &tenancyaudit.Options{Role: role}
	ctx := context.Background()
	create := func() bool {
		name := tenancytest.UniqueName("tenancy_made_by_runtime")
		_, err := f.as(t, role).Exec(ctx, "CREATE DATABASE "+name)
		if err == nil {
			tenancytest.DropDatabase(t, name)
		}
		return err == nil
	}
	if create() {
		t.Fatal("control: the runtime role creates a database before the hole")
	}
	f.exec(t, "ALTER ROLE "+role+" CREATEDB")
	found := find(f.audit(t, opts), "role-createdb", role)
	if found == nil {
		t.Fatal("no role-createdb finding")
	}
	if !create() {
		t.Fatal("the hole is not real: the role cannot create a database")
	}
	f.exec(t, found.Fix)
	if find(f.audit(t, opts), "role-createdb", role) != nil || create() {
		t.Fatal("the fix did not remove the finding or the reach")
	}
	f.aSeesOwn(t)
}

// A runtime role with REPLICATION can stream every table's changes.
func TestRoleThatReplicates(t *testing.T) {
	t.Parallel()
	f, role := roleFixture(t)
	opts := &tenancyaudit.Options{Role: role}
	if rep := f.audit(t, opts); !rep.OK() {
		t.Fatalf("control: %+v", rep.Findings)
	}
	f.exec(t, "ALTER ROLE "+role+" REPLICATION")
	found := find(f.audit(t, opts), "role-replication", role)
	if found == nil {
		t.Fatal("no role-replication finding")
	}
	f.exec(t, found.Fix)
	if find(f.audit(t, opts), "role-replication", role) != nil {
		t.Fatal("the fix did not remove the finding")
	}
}
