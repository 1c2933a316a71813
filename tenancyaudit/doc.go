// Package tenancyaudit is the isolation audit behind `tenancy doctor` and the check `serve` runs
// at start: it fails on any schema where one tenant could read, change or learn of another's
// data, and gives for each finding the object, the database it is in, what a tenant could do with
// it, and the SQL that fixes it.
//
//	rep, err := tenancyaudit.Audit(ctx, catalog, nil) // the catalog's database and every database tenant's
//	if err != nil { ... }                              // the audit could not run
//	if !rep.OK() { rep.WriteText(os.Stderr); ... }     // something was found
//
// Audit reads the catalog's database and the own database of every database-model tenant, several
// at once; AuditDatabase reads one database (no catalog needed). Both log in as the migration role
// and only read. A tenant table is a table with the tenant column (Options.TenantColumn, default
// tenant_id) outside the catalog's schema; the runtime role is Options.Role (default
// tenancy_app), and the audit judges everything the runtime role can do as itself or after SET ROLE
// to any role it is a member of.
//
// # What it finds (Finding.Kind)
//
// Critical — a tenant can read or change another's rows, or become someone who can:
//   - role-superuser, role-bypassrls, role-createrole, role-replication, role-predefined
//     (pg_read_all_data and the like), role-owns-table: the runtime role, or a role it can
//     become; login-role-*: the same for the role the runtime pool logs in as
//     (Options.LoginRole); role-missing. role-owns-object: anything else it owns (a function,
//     a domain, the database): its owner alters it or drops it with CASCADE, policies included.
//   - foreign-server: a foreign server the runtime role may use (another database's rows, and the
//     mapping's password in pg_user_mappings); function-granted: PostgreSQL's file-reading
//     functions granted to it (Medium: pg_terminate_backend and pg_cancel_backend).
//   - rls-disabled, rls-not-forced: a tenant table without row-level security, or not forced
//     (an inheritance child or partition the runtime role cannot reach but through its isolated
//     parent excepted); rls-bypassing-privilege: TRUNCATE (which row-level security does not
//     govern), TRIGGER or REFERENCES on a tenant table; inherits-into-untenanted: a tenant table
//     that inherits from a table without row-level security, which returns its rows.
//   - binding-tampered: tenancy.current_tenant(), which every policy trusts, is not the toolkit's
//     (body, SECURITY DEFINER, search_path); the fix restores it.
//   - policy-widens: a policy judged by meaning, not text. The parsed expression (pg_node_tree of
//     USING and WITH CHECK) must pin the tenant column to tenancy.current_tenant(), in the forms
//     tenancy.isolate generates (casts and a scalar subquery allowed); an AND passes when one
//     term does, an OR only when every branch does. For each command the permissive policies that
//     apply to the runtime role must all pass, unless a restrictive one that applies to it does:
//     restrictive policies narrow, never widen. Writes are judged on WITH CHECK, or USING where a
//     policy has none, as PostgreSQL applies them. policy-forgeable-binding: a policy that trusts
//     the setting app.tenant_id, which SQL inside a transaction can set.
//   - policy-leaky-function: a policy that passes row values to a function that is not LEAKPROOF
//     (one users wrote; Medium for PostgreSQL's own), or casts them: PostgreSQL may evaluate any
//     part of a policy on every row before the tenant filter, so what it logs or raises tells
//     other tenants' values. leakproof-function: a function users wrote marked LEAKPROOF, which
//     runs before row-level security filters.
//   - security-definer: a SECURITY DEFINER routine (whatever its search_path) that reads or
//     writes a tenant table or a view over one (High when it only is callable by the runtime
//     role: EXECUTE is what counts, schema USAGE only guards name lookup).
//   - view-not-security-invoker, materialized-view: a view over tenant tables (directly or through
//     other views) without security_invoker; a materialized view over them.
//   - rule: a rule (it runs with its table owner's rights); High when it touches no tenant data.
//   - trigger-writes-readable: a trigger on a tenant table whose routine, or a routine it calls,
//     writes into a table that is not a tenant table and that the runtime role can read (SQL
//     built from text counts every readable table it names).
//   - readable-table: a table, foreign table, materialized view or owner's-rights view in any
//     schema, the catalog's included, that the runtime role can read and that is neither a tenant
//     table nor shared (tenancy.share); a system table that holds data (pg_statistic,
//     pg_largeobject, pg_authid, …) granted to it. Schema USAGE is not a defence: a view reaches
//     the table without it.
//   - writable-table: such a table the runtime role can UPDATE, DELETE or TRUNCATE (High: INSERT
//     into one with a unique key).
//   - shared-table-writable: a shared table the runtime role can change.
//   - create-privilege: CREATE on the database or a schema, with which the runtime role makes a
//     schema or table that other tenants' unqualified names resolve to.
//   - large-object-readable: a large object the runtime role can read.
//   - untenanted-child: a table that references a tenant table but has no tenant column and no
//     row-level security (High while the runtime role cannot reach it).
//
// High — a tenant can learn of another's data:
//   - unique-without-tenant: a unique index, unique or primary key, or exclusion constraint whose
//     key columns leave out the tenant column (INCLUDE columns do not count; partial and
//     expression indexes included): an insert that fails tells that the value exists.
//   - foreign-key-without-tenant: a foreign key between tenant tables without the tenant column.
//   - trigger-writes-untenanted: a trigger on a tenant table that writes into a table that is not
//     a tenant table and has a unique key (whether an insert fails tells what others wrote); a
//     SECURITY DEFINER trigger routine is security-definer (EXECUTE is not checked for triggers).
//   - sequence-readable: a sequence the runtime role may read or advance (a tenant table's
//     last_value counts every tenant's rows; any other counts what every tenant does).
//   - role-createdb: the runtime role can create databases (copies of any template included).
//
// Medium: temp-privilege (the runtime role may create temporary objects), policy-missing (the
// runtime role is granted a command no permissive policy allows), trigger-notifies (a trigger on a
// tenant table sends NOTIFY, which every listening session of the runtime role receives).
//
// Tables pinned to one tenant — a validated CHECK (tenant_id = constant), which tenancy.isolate
// puts on a schema tenant's tables, or a partition of a table listed by the tenant column bound
// to one value — hold no one else's rows: their unique keys reveal nothing and are not findings.
//
// # Accepting a finding
//
// Catalog.IgnoreFinding records that a finding (kind and object) is accepted, with its reason, in
// the catalog; Audit then reports it under Report.Ignored and does not fail on it, and so does the
// audit of `serve`. `tenancy doctor --ignore KIND:OBJECT --reason TEXT` records one,
// `--unignore KIND:OBJECT` takes it back.
package tenancyaudit
