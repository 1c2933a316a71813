package tenancypgx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AuditOpts says whom Audit checks. A nil *AuditOpts means the defaults.
type AuditOpts struct {
	// Role is the runtime role tenant transactions run as. Defaults to DefaultRole.
	Role string
	// PoolRoleIsRuntime audits the pool's own login role as the runtime role (when the pool given
	// to Audit is the runtime pool). Defaults to false.
	PoolRoleIsRuntime bool
}

// Finding is one way isolation is at risk.
type Finding struct {
	// Check is a stable name: role-missing, role-superuser, role-bypassrls, role-owns-table,
	// rls-disabled, rls-not-forced, policy-missing, policy-no-using, policy-no-with-check,
	// policy-not-tenant-scoped, policy-forgeable-binding, unique-without-tenant, foreign-key-without-tenant,
	// view-not-security-invoker, materialized-view, security-definer-search-path.
	Check string `json:"check"`
	// Object is what the finding is about: a role, table, policy, view or function.
	Object string `json:"object"`
	// Problem says what is wrong and what to do.
	Problem string `json:"problem"`
}

// AuditReport is what Audit found.
type AuditReport struct {
	Database     string    `json:"database"`
	Role         string    `json:"role"`
	TenantTables []string  `json:"tenant_tables"`
	Findings     []Finding `json:"findings"`
}

// OK reports whether nothing was found.
func (r *AuditReport) OK() bool { return len(r.Findings) == 0 }

// WriteText writes the report for people.
func (r *AuditReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "tenancy doctor: database %s, runtime role %s, %d tenant table(s)\n", r.Database, r.Role, len(r.TenantTables))
	for _, f := range r.Findings {
		fmt.Fprintf(w, "FAIL  %-28s %s: %s\n", f.Check, f.Object, f.Problem)
	}
	if r.OK() {
		_, err := fmt.Fprintln(w, "OK    isolation holds: no finding")
		return err
	}
	_, err := fmt.Fprintf(w, "%d finding(s): isolation is at risk\n", len(r.Findings))
	return err
}

// A tenant table is any table outside the system and catalog schemas with a tenant_id column.
const tenantTablesSQL = `
SELECT c.oid, c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity, coalesce(c.relowner = r.oid, false)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
  LEFT JOIN pg_roles r ON r.rolname = $1
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenancy') AND n.nspname NOT LIKE 'pg_toast%'
 ORDER BY 2`

// Policies of the tenant tables that apply to the role (PUBLIC or the role itself).
const policiesSQL = `
SELECT p.polrelid::regclass::text, p.polname, p.polcmd::text, p.polpermissive,
       coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
  FROM pg_policy p
 WHERE p.polrelid = ANY($1)
   AND ('{0}' && p.polroles OR (SELECT oid FROM pg_roles WHERE rolname = $2) = ANY(p.polroles))`

// Unique indexes on tenant tables that do not contain tenant_id.
const uniqueSQL = `
SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = 'tenant_id'
 WHERE i.indrelid = ANY($1) AND i.indisunique AND NOT (a.attnum = ANY(i.indkey))`

// Foreign keys between tenant tables whose columns do not include tenant_id.
const foreignKeySQL = `
SELECT c.conname, c.conrelid::regclass::text
  FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = 'tenant_id'
 WHERE c.contype = 'f' AND c.conrelid = ANY($1) AND c.confrelid = ANY($1) AND NOT (a.attnum = ANY(c.conkey))`

// Views and materialized views that read tenant tables, directly or through other views.
const viewsSQL = `
WITH RECURSIVE reads(view, relkind, options) AS (
    SELECT DISTINCT v.oid, v.relkind, v.reloptions
      FROM pg_depend d
      JOIN pg_rewrite rw ON rw.oid = d.objid
      JOIN pg_class v ON v.oid = rw.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = ANY($1) AND v.oid <> d.refobjid AND v.relkind IN ('v', 'm')
    UNION
    SELECT v.oid, v.relkind, v.reloptions
      FROM reads
      JOIN pg_depend d ON d.refobjid = reads.view AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      JOIN pg_rewrite rw ON rw.oid = d.objid
      JOIN pg_class v ON v.oid = rw.ev_class
     WHERE v.oid <> reads.view AND v.relkind IN ('v', 'm')
)
SELECT view::regclass::text, relkind::text,
       coalesce((SELECT bool_or(lower(o) IN ('security_invoker=true', 'security_invoker=on', 'security_invoker=1', 'security_invoker=yes'))
                   FROM unnest(options) o), false)
  FROM reads ORDER BY 1`

// SECURITY DEFINER functions outside the system schemas without a fixed search_path.
const definerSQL = `
SELECT p.oid::regprocedure::text
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND NOT coalesce((SELECT bool_or(c LIKE 'search_path=%') FROM unnest(p.proconfig) c), false)
 ORDER BY 1`

// Audit checks the database behind pool for what would let one tenant see another's rows: a
// runtime role that is a superuser, bypasses row-level security or owns a tenant table; a tenant
// table (one with a tenant_id column) without RLS, without FORCE, without a policy for some
// command, or with a policy lacking USING or WITH CHECK or not scoped to app.tenant_id; unique
// indexes and foreign keys on tenant tables without tenant_id; views over tenant tables without
// security_invoker, and materialized views over them; SECURITY DEFINER functions without a fixed
// search_path. An error means the audit could not run, not that it found something.
func Audit(ctx context.Context, pool *pgxpool.Pool, opts *AuditOpts) (*AuditReport, error) {
	if pool == nil {
		return nil, errors.New("tenancypgx: Audit needs a pool")
	}
	rep := &AuditReport{Role: DefaultRole, Findings: []Finding{}, TenantTables: []string{}}
	if opts != nil && opts.Role != "" {
		rep.Role = opts.Role
	}
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if opts != nil && opts.PoolRoleIsRuntime {
			if err := tx.QueryRow(ctx, "SELECT current_user").Scan(&rep.Role); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&rep.Database); err != nil {
			return err
		}
		return audit(ctx, tx, rep)
	})
	if err != nil {
		return nil, fmt.Errorf("tenancypgx: audit: %w", err)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool { return rep.Findings[i].Object < rep.Findings[j].Object })
	return rep, nil
}

func audit(ctx context.Context, tx pgx.Tx, rep *AuditReport) error {
	add := func(check, object, format string, args ...any) {
		rep.Findings = append(rep.Findings, Finding{Check: check, Object: object, Problem: fmt.Sprintf(format, args...)})
	}
	role := rep.Role
	var super, bypass bool
	err := tx.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role).Scan(&super, &bypass)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		add("role-missing", role, "the runtime role does not exist: run `tenancy migrate --shared`, or create it LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE, a member of no role")
	case err != nil:
		return err
	default:
		if super {
			add("role-superuser", role, "the runtime role is a superuser, so row-level security does not apply to it: ALTER ROLE %s NOSUPERUSER", pgx.Identifier{role}.Sanitize())
		}
		if bypass {
			add("role-bypassrls", role, "the runtime role bypasses row-level security: ALTER ROLE %s NOBYPASSRLS", pgx.Identifier{role}.Sanitize())
		}
	}

	rows, err := tx.Query(ctx, tenantTablesSQL, role)
	if err != nil {
		return err
	}
	var oids []uint32
	for rows.Next() {
		var oid uint32
		var name string
		var rls, force, owned bool
		if err := rows.Scan(&oid, &name, &rls, &force, &owned); err != nil {
			return err
		}
		oids = append(oids, oid)
		rep.TenantTables = append(rep.TenantTables, name)
		if !rls {
			add("rls-disabled", name, "row-level security is off, so every tenant sees every row: SELECT tenancy.isolate('%s')", name)
		}
		if !force {
			add("rls-not-forced", name, "row-level security is not forced, so the table's owner sees every row: SELECT tenancy.isolate('%s')", name)
		}
		if owned {
			add("role-owns-table", name, "the runtime role %s owns the table, so it can turn row-level security off: give the table to the migration role", role)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := auditPolicies(ctx, tx, oids, rep, add); err != nil {
		return err
	}

	for _, q := range []struct {
		sql, check, problem string
	}{
		{uniqueSQL, "unique-without-tenant", "a unique index on %s without tenant_id reveals whether another tenant has a value: lead it with tenant_id"},
		{foreignKeySQL, "foreign-key-without-tenant", "a foreign key of %s without tenant_id lets a row point at another tenant's row: include tenant_id in both keys"},
	} {
		rows, err := tx.Query(ctx, q.sql, oids)
		if err != nil {
			return err
		}
		pairs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (p [2]string, err error) {
			err = r.Scan(&p[0], &p[1])
			return p, err
		})
		if err != nil {
			return err
		}
		for _, p := range pairs {
			add(q.check, p[0], q.problem, p[1])
		}
	}

	rows, err = tx.Query(ctx, viewsSQL, oids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var view, kind string
		var invoker bool
		if err := rows.Scan(&view, &kind, &invoker); err != nil {
			return err
		}
		switch {
		case kind == "m":
			add("materialized-view", view, "a materialized view over tenant tables stores every tenant's rows and has no row-level security: use a view with security_invoker")
		case !invoker:
			add("view-not-security-invoker", view, "the view reads tenant tables with its owner's rights, bypassing row-level security: ALTER VIEW %s SET (security_invoker = true)", view)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}

	rows, err = tx.Query(ctx, definerSQL)
	if err != nil {
		return err
	}
	fns, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, f := range fns {
		add("security-definer-search-path", f, "a SECURITY DEFINER function without a fixed search_path can be made to run a caller's objects with its owner's rights: ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp", f)
	}
	return nil
}

// auditPolicies checks that each tenant table has, for every command, a permissive policy for the
// runtime role, and that every such policy has the clauses its commands need and is scoped to
// the tenant setting.
func auditPolicies(ctx context.Context, tx pgx.Tx, oids []uint32, rep *AuditReport, add func(check, object, format string, args ...any)) error {
	rows, err := tx.Query(ctx, policiesSQL, oids, rep.Role)
	if err != nil {
		return err
	}
	covered := map[string]map[string]bool{} // table -> command -> has a permissive policy
	for rows.Next() {
		var table, name, cmd, using, check string
		var permissive bool
		if err := rows.Scan(&table, &name, &cmd, &permissive, &using, &check); err != nil {
			return err
		}
		object := table + " policy " + name
		cmds := map[string][]string{"*": {"r", "a", "w", "d"}, "r": {"r"}, "a": {"a"}, "w": {"w"}, "d": {"d"}}[cmd]
		needsUsing := cmd != "a"
		needsCheck := cmd == "*" || cmd == "a" || cmd == "w"
		if needsUsing && using == "" {
			add("policy-no-using", object, "the policy has no USING clause")
		}
		if needsCheck && check == "" {
			add("policy-no-with-check", object, "the policy has no WITH CHECK clause, so writes are not checked explicitly: add WITH CHECK (tenant_id = ...)")
		}
		if permissive {
			for _, expr := range []string{using, check} {
				switch {
				case expr == "", strings.Contains(expr, "tenancy.current_tenant()"):
					continue
				case strings.Contains(expr, "app.tenant_id"):
					add("policy-forgeable-binding", object, "the policy trusts the setting app.tenant_id, which SQL inside a transaction can set to any tenant: compare with tenancy.current_tenant() instead (SELECT tenancy.isolate('%s'))", table)
				default:
					add("policy-not-tenant-scoped", object, "a permissive policy that does not compare with tenancy.current_tenant() opens rows to every tenant: %s", expr)
				}
				break
			}
			if covered[table] == nil {
				covered[table] = map[string]bool{}
			}
			for _, c := range cmds {
				covered[table][c] = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	names := map[string]string{"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}
	for _, table := range rep.TenantTables {
		var missing []string
		for _, c := range []string{"r", "a", "w", "d"} {
			if !covered[table][c] {
				missing = append(missing, names[c])
			}
		}
		if len(missing) > 0 {
			add("policy-missing", table, "no permissive policy for %s applies to the runtime role: SELECT tenancy.isolate('%s')", strings.Join(missing, ", "), table)
		}
	}
	return nil
}
