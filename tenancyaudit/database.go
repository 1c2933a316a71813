package tenancyaudit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy/tenancycatalog"
)

// Options say whom and what the audit checks. A nil *Options means the defaults.
type Options struct {
	// Role is the runtime role tenant transactions run as. Defaults to tenancycatalog.DefaultRole.
	Role string
	// LoginRole is the role the runtime pool logs in as, when it is not Role itself: the audit
	// also checks that it cannot become a role that defeats isolation. Defaults to Role.
	LoginRole string
	// TenantColumn names the column that says whose a row is: a table with it is a tenant table.
	// Defaults to "tenant_id".
	TenantColumn string
	// Workers is how many databases are audited at once. Defaults to 4.
	Workers int
	// Ignore accepts findings, as the catalog's tenancy.audit_ignores does (Catalog.AuditIgnores).
	Ignore []tenancycatalog.AuditIgnore
}

func (o *Options) withDefaults() Options {
	out := Options{}
	if o != nil {
		out = *o
	}
	if out.Role == "" {
		out.Role = tenancycatalog.DefaultRole
	}
	if out.LoginRole == "" {
		out.LoginRole = out.Role
	}
	if out.TenantColumn == "" {
		out.TenantColumn = "tenant_id"
	}
	if out.Workers <= 0 {
		out.Workers = 4
	}
	return out
}

// Beginner is what AuditDatabase reads with: a *pgx.Conn or a *pgxpool.Pool of the migration role
// (or any role that may read the system catalogs and the toolkit's schema).
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// AuditDatabase audits the one database behind db (see Audit for what it checks). Findings named
// in opts.Ignore are reported as accepted.
func AuditDatabase(ctx context.Context, db Beginner, opts *Options) (*Report, error) {
	o := opts.withDefaults()
	if db == nil {
		return nil, errors.New("tenancyaudit: AuditDatabase needs a connection")
	}
	d, fs, err := auditOne(ctx, db, "", o)
	if err != nil {
		return nil, err
	}
	rep := &Report{Databases: []DatabaseReport{d}, Findings: []Finding{}, Ignored: []Finding{}}
	rep.add(fs, o.Ignore)
	rep.sort()
	return rep, nil
}

// add files findings as found or accepted.
func (r *Report) add(fs []Finding, ignore []tenancycatalog.AuditIgnore) {
	for _, f := range fs {
		accepted := false
		for _, ig := range ignore {
			if ig.Kind == f.Kind && ig.Object == f.Object {
				f.Reason, accepted = ig.Reason, true
				break
			}
		}
		if accepted {
			r.Ignored = append(r.Ignored, f)
		} else {
			r.Findings = append(r.Findings, f)
		}
	}
}

// relation is one table, view, materialized view, foreign table or sequence outside the system
// schemas, with what the runtime role (or a role it can become) may do to it.
type relation struct {
	oid                       uint32
	name, schema, relname     string
	kind                      string
	rls, force, partition     bool
	owner                     uint32
	tenantAttnum              int16
	invoker                   bool
	parents                   []uint32 // the tables it inherits from (a partition: its parent)
	read, insert, update, del bool
	truncate, trigger         bool // TRUNCATE; TRIGGER or REFERENCES
	tenant, shared, pinned    bool
	overTenants               bool // a view or materialized view that reads tenant tables
	untenanted                bool // references a tenant table, with no tenant column
}

type auditor struct {
	o        Options
	tx       pgx.Tx
	server   string
	database string
	rules    exprRules
	funcs    map[string]string // oid -> signature, for functions users created
	roles    []uint32          // the runtime role and every role it can become (MEMBER)
	rels     map[uint32]*relation
	tenants  []uint32            // oids of tenant tables, sorted by name
	bases    map[uint32][]uint32 // view -> the relations it reads
	routines []routine
	sorted   []*relation
	findings []Finding
}

func (a *auditor) add(kind string, sev Severity, object, fix, format string, args ...any) {
	a.findings = append(a.findings, Finding{Kind: kind, Severity: sev, Object: object, Server: a.server,
		Database: a.database, Problem: fmt.Sprintf(format, args...), Fix: fix})
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func auditOne(ctx context.Context, db Beginner, server string, o Options) (DatabaseReport, []Finding, error) {
	a := &auditor{o: o, server: server, rels: map[uint32]*relation{}, funcs: map[string]string{}}
	rep := DatabaseReport{Server: server, Role: o.Role, Reachable: []string{}}
	err := func() error {
		tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		a.tx = tx
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&a.database); err != nil {
			return err
		}
		for _, step := range []func(context.Context) error{
			a.loadRoles, a.loadRules, a.loadRelations, a.checkRoles, a.checkTables, a.checkPolicies,
			a.checkUniqueness, a.checkForeignKeys, a.checkViews, a.checkRules, a.checkFunctions,
			a.checkTriggers, a.checkSequences, a.checkSideChannels,
		} {
			if err := step(ctx); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return rep, nil, fmt.Errorf("tenancyaudit: database %s on %s: %w", a.database, server, err)
	}
	rep.Database, rep.TenantTables = a.database, len(a.tenants)
	if len(a.roles) > 0 {
		rows, err := a.tx.Conn().Query(ctx, "SELECT rolname FROM pg_roles WHERE oid = ANY($1) ORDER BY rolname <> $2, rolname", a.roles, o.Role)
		if err == nil {
			rep.Reachable, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			return rep, nil, err
		}
	}
	return rep, a.findings, nil
}

// loadRoles finds the runtime role and every role it can become or act as.
func (a *auditor) loadRoles(ctx context.Context) error {
	var err error
	a.roles, err = column[uint32](ctx, a.tx, `SELECT r.oid FROM pg_roles r, pg_roles rt
		WHERE rt.rolname = $1 AND pg_has_role(rt.oid, r.oid, 'MEMBER') ORDER BY r.oid <> rt.oid, r.rolname`, a.o.Role)
	if err != nil {
		return err
	}
	if len(a.roles) == 0 {
		a.add("role-missing", Critical, a.o.Role,
			fmt.Sprintf("-- run `tenancy migrate --shared` (it creates %s), or:\nCREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOINHERIT;", a.o.Role, ident(a.o.Role)),
			"the runtime role does not exist, so nothing here was checked against it")
	}
	return nil
}

// loadRules reads what a tenant-scoped expression is in this database.
func (a *auditor) loadRules(ctx context.Context) error {
	var ct *uint32
	if err := a.tx.QueryRow(ctx, `SELECT to_regprocedure('tenancy.current_tenant()')::oid`).Scan(&ct); err != nil {
		return err
	}
	a.rules = exprRules{equality: map[string]bool{}}
	if ct != nil {
		a.rules.currentTenant = strconv.FormatUint(uint64(*ct), 10)
		// The function every policy trusts must be the toolkit's: same body, same rights.
		statement, body, err := tenancycatalog.CurrentTenantSQL()
		if err != nil {
			return err
		}
		var src, volatility, language string
		var definer bool
		var config []string
		if err := a.tx.QueryRow(ctx, `SELECT p.prosrc, p.prosecdef, coalesce(p.proconfig, '{}'), p.provolatile::text, l.lanname
			FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = $1`, *ct).
			Scan(&src, &definer, &config, &volatility, &language); err != nil {
			return err
		}
		// STABLE matters: an IMMUTABLE one is folded into a plan, which a pooled connection then
		// reuses for the next tenant.
		if src != body || !definer || volatility != "s" || language != "plpgsql" || !slices.Equal(config, []string{"search_path=pg_catalog, pg_temp"}) {
			a.add("binding-tampered", Critical, "tenancy.current_tenant()", statement,
				"the function every tenant policy trusts is not the toolkit's (its body, language, volatility, SECURITY DEFINER or search_path differ): whatever it returns, the policies admit")
		}
	}
	leakproof, err := column[uint32](ctx, a.tx, `SELECT oid FROM pg_proc WHERE proleakproof`)
	if err != nil {
		return err
	}
	a.rules.leakproof = map[string]bool{}
	for _, f := range leakproof {
		a.rules.leakproof[strconv.FormatUint(uint64(f), 10)] = true
	}
	ops, err := column[uint32](ctx, a.tx, `SELECT oid FROM pg_operator WHERE oprname = '=' AND oid < $1`, firstNormalOID)
	if err != nil {
		return err
	}
	for _, op := range ops {
		a.rules.equality[strconv.FormatUint(uint64(op), 10)] = true
	}
	return nil
}

// relationsSQL reads every table and view users made, in any schema (in pg_catalog and
// information_schema only those made after initdb), with what the roles in $1 may do to it, the
// attnum of the tenant column $2 (0 for none) and the tables it inherits from. Schema USAGE is not
// asked: it only guards name lookup, and a view or routine that names the table needs none.
const relationsSQL = `
SELECT c.oid, c.oid::regclass::text, n.nspname, c.relname, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity,
       c.relispartition, c.relowner::oid, coalesce(a.attnum, 0),
       coalesce((SELECT bool_or(lower(o) IN ('security_invoker=true', 'security_invoker=on', 'security_invoker=1', 'security_invoker=yes'))
                   FROM unnest(c.reloptions) o), false),
       ARRAY(SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid),
       coalesce(bool_or(has_table_privilege(u, c.oid, 'SELECT') OR has_any_column_privilege(u, c.oid, 'SELECT')), false),
       coalesce(bool_or(has_table_privilege(u, c.oid, 'INSERT') OR has_any_column_privilege(u, c.oid, 'INSERT')), false),
       coalesce(bool_or(has_table_privilege(u, c.oid, 'UPDATE') OR has_any_column_privilege(u, c.oid, 'UPDATE')), false),
       coalesce(bool_or(has_table_privilege(u, c.oid, 'DELETE')), false),
       coalesce(bool_or(has_table_privilege(u, c.oid, 'TRUNCATE')), false),
       coalesce(bool_or(has_table_privilege(u, c.oid, 'TRIGGER') OR has_table_privilege(u, c.oid, 'REFERENCES')
                        OR has_any_column_privilege(u, c.oid, 'REFERENCES')), false)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN unnest($1::oid[]) u ON true
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
   AND (c.oid >= 16384 OR n.nspname NOT IN ('pg_catalog', 'information_schema'))
 GROUP BY c.oid, n.oid, a.attnum
 ORDER BY 2`

// loadRelations reads every table and view outside the system schemas, which of them
// are tenant tables, which are shared (tenancy.share), and which tenant tables hold one tenant's
// rows only (a validated CHECK pinning the tenant column, as schema tenants' tables have).
func (a *auditor) loadRelations(ctx context.Context) error {
	rows, err := a.tx.Query(ctx, relationsSQL, a.roles, a.o.TenantColumn)
	if err != nil {
		return err
	}
	for rows.Next() {
		r := &relation{}
		if err := rows.Scan(&r.oid, &r.name, &r.schema, &r.relname, &r.kind, &r.rls, &r.force, &r.partition, &r.owner,
			&r.tenantAttnum, &r.invoker, &r.parents, &r.read, &r.insert, &r.update, &r.del, &r.truncate, &r.trigger); err != nil {
			rows.Close()
			return err
		}
		r.tenant = (r.kind == "r" || r.kind == "p") && r.tenantAttnum > 0 && r.schema != "tenancy"
		a.rels[r.oid] = r
		if r.tenant {
			a.tenants = append(a.tenants, r.oid)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	shared, err := tenancycatalog.SharedTables(ctx, a.tx)
	if err != nil {
		return err
	}
	for _, oid := range shared {
		if r := a.rels[oid]; r != nil && !r.tenant {
			r.shared = true
		}
	}
	rows, err = a.tx.Query(ctx, `SELECT conrelid, conbin::text FROM pg_constraint
		WHERE contype = 'c' AND convalidated AND conrelid = ANY($1)`, a.tenants)
	if err != nil {
		return err
	}
	for rows.Next() {
		var rel uint32
		var bin string
		if err := rows.Scan(&rel, &bin); err != nil {
			rows.Close()
			return err
		}
		if n, err := parseNodeTree(bin); err == nil && a.rules.pinnedTo(n, strconv.Itoa(int(a.rels[rel].tenantAttnum))) {
			a.rels[rel].pinned = true
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A partition of a table listed by the tenant column, bound to one value, holds one tenant's
	// rows too (per-tenant partitions).
	rows, err = a.tx.Query(ctx, `
		SELECT c.oid, c.relpartbound::text FROM pg_class c
		  JOIN pg_inherits i ON i.inhrelid = c.oid
		  JOIN pg_partitioned_table pt ON pt.partrelid = i.inhparent
		 WHERE c.relispartition AND c.oid = ANY($1) AND pt.partstrat = 'l' AND pt.partnatts = 1
		   AND pt.partattrs[0] = (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = i.inhparent AND a.attname = $2)`,
		a.tenants, a.o.TenantColumn)
	if err != nil {
		return err
	}
	for rows.Next() {
		var rel uint32
		var bound string
		if err := rows.Scan(&rel, &bound); err != nil {
			rows.Close()
			return err
		}
		if n, err := parseNodeTree(bound); err == nil && n != nil && n.typ == "PARTITIONBOUNDSPEC" && n.str("is_default") == "false" {
			if ds := n.list("listdatums"); len(ds) == 1 && ds[0] != nil && ds[0].typ == "CONST" && ds[0].str("constisnull") == "false" {
				a.rels[rel].pinned = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = a.tx.Query(ctx, `SELECT oid, oid::regprocedure::text FROM pg_proc WHERE oid >= $1`, firstNormalOID)
	if err != nil {
		return err
	}
	for rows.Next() {
		var oid uint32
		var sig string
		if err := rows.Scan(&oid, &sig); err != nil {
			rows.Close()
			return err
		}
		a.funcs[strconv.FormatUint(uint64(oid), 10)] = sig
	}
	return rows.Err()
}

// isolateFix is the fix for a tenant table that is not isolated as the toolkit does it.
func (a *auditor) isolateFix(table string) string {
	if a.o.TenantColumn != "tenant_id" {
		return fmt.Sprintf("-- enable and force row-level security on %s, with one policy for all commands:\nALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;\nCREATE POLICY tenant_isolation ON %s USING (%s = (SELECT tenancy.current_tenant()::uuid)) WITH CHECK (%s = (SELECT tenancy.current_tenant()::uuid));",
			table, table, table, ident(a.o.TenantColumn), ident(a.o.TenantColumn))
	}
	return fmt.Sprintf("SELECT tenancy.isolate(%s, %s);", quote(table), quote(a.o.Role))
}

var dangerousPredefined = map[string]string{
	"pg_read_all_data":          "reads every table, the binding key included",
	"pg_write_all_data":         "writes every table",
	"pg_read_server_files":      "reads the server's files",
	"pg_write_server_files":     "writes the server's files",
	"pg_execute_server_program": "runs programs on the server",
	"pg_signal_backend":         "cancels or ends other tenants' sessions",
	"pg_read_all_stats":         "sees every session's queries",
	"pg_monitor":                "sees every session's queries",
	"pg_database_owner":         "owns the database's public schema",
}

// checkRoles: the runtime role, any role it can become, and the pool's login role, being a
// superuser, bypassing row-level security, creating roles or databases, owning a tenant table,
// or being a predefined role with rights over other sessions or all data.
func (a *auditor) checkRoles(ctx context.Context) error {
	check := func(from string, roles []uint32, login bool) error {
		rows, err := a.tx.Query(ctx, `SELECT oid, rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication
			FROM pg_roles WHERE oid = ANY($1) ORDER BY rolname`, roles)
		if err != nil {
			return err
		}
		type role struct {
			oid                                              uint32
			name                                             string
			super, bypass, createRole, createDB, replication bool
		}
		rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (x role, err error) {
			err = r.Scan(&x.oid, &x.name, &x.super, &x.bypass, &x.createRole, &x.createDB, &x.replication)
			return x, err
		})
		if err != nil {
			return err
		}
		for _, r := range rs {
			via := ""
			if r.name != from {
				via = fmt.Sprintf(" (%s can become it: SET ROLE %s)", from, ident(r.name))
			}
			kind := func(k string) string {
				if login && r.name != a.o.Role {
					return "login-role-" + strings.TrimPrefix(k, "role-")
				}
				return k
			}
			alter := func(attr string) string {
				fix := "ALTER ROLE " + ident(r.name) + " " + attr + ";"
				if r.name != from {
					fix += "\n-- or: REVOKE " + ident(r.name) + " FROM " + ident(from) + ";"
				}
				return fix
			}
			for _, attr := range []struct {
				has       bool
				kind, fix string
				sev       Severity
				problem   string
			}{
				{r.super, "role-superuser", "NOSUPERUSER", Critical, "the role is a superuser%s: row-level security does not apply to it and it can do anything"},
				{r.bypass, "role-bypassrls", "NOBYPASSRLS", Critical, "the role bypasses row-level security%s: it reads every tenant's rows"},
				{r.createRole, "role-createrole", "NOCREATEROLE", Critical, "the role can create roles%s, and grant itself any role that is not a superuser (pg_read_all_data reads the binding key)"},
				{r.replication, "role-replication", "NOREPLICATION", Critical, "the role may replicate%s: a replication connection streams every table's changes, every tenant's rows included"},
				{r.createDB, "role-createdb", "NOCREATEDB", High, "the role can create databases%s, copies of any template database included"},
			} {
				if attr.has {
					a.add(kind(attr.kind), attr.sev, r.name, alter(attr.fix), attr.problem, via)
				}
			}
			if why, ok := dangerousPredefined[r.name]; ok && r.name != from {
				a.add(kind("role-predefined"), Critical, r.name, "REVOKE "+ident(r.name)+" FROM "+ident(from)+";",
					"%s is a member of the predefined role %s, which %s", from, r.name, why)
			}
			for _, oid := range a.tenants {
				if t := a.rels[oid]; t.owner == r.oid {
					a.add(kind("role-owns-table"), Critical, t.name, "ALTER TABLE "+t.name+" OWNER TO CURRENT_USER; -- as the migration role",
						"%s owns the tenant table%s, so it can turn row-level security off and grant itself anything on it", r.name, via)
				}
			}
		}
		return nil
	}
	if len(a.roles) > 0 {
		if err := check(a.o.Role, a.roles, false); err != nil {
			return err
		}
	}
	if a.o.LoginRole == a.o.Role {
		return nil
	}
	login, err := column[uint32](ctx, a.tx, `SELECT r.oid FROM pg_roles r, pg_roles l
		WHERE l.rolname = $1 AND pg_has_role(l.oid, r.oid, 'MEMBER') AND NOT (r.oid = ANY($2))`, a.o.LoginRole, a.roles)
	if err != nil || len(login) == 0 {
		return err
	}
	return check(a.o.LoginRole, login, true)
}

// checkTables: tenant tables without row-level security, or not forced; tables that reference a
// tenant table but carry no tenant column and no row-level security are checked by
// checkForeignKeys.
func (a *auditor) checkTables(context.Context) error {
	for _, oid := range a.tenants {
		t := a.rels[oid]
		for _, p := range t.parents {
			if parent := a.rels[p]; parent != nil && (!parent.tenant || !parent.rls) {
				a.add("inherits-into-untenanted", Critical, t.name, fmt.Sprintf("ALTER TABLE %s NO INHERIT %s;", t.name, parent.name),
					"the tenant table inherits from %s, which has no row-level security: reading %s returns every tenant's rows of this table", parent.name, parent.name)
			}
		}
		if t.truncate || t.trigger {
			a.add("rls-bypassing-privilege", Critical, t.name,
				fmt.Sprintf("REVOKE TRUNCATE, TRIGGER, REFERENCES ON %s FROM PUBLIC, %s;", t.name, ident(a.o.Role)),
				"the runtime role holds TRUNCATE, TRIGGER or REFERENCES on a tenant table: TRUNCATE empties every tenant's rows (row-level security does not apply to it), and the others attach code or references that see every row")
		}
		if len(t.parents) > 0 && !(t.read || t.insert || t.update || t.del) && a.allTenantParents(t) {
			continue // reached only through its parent, whose policies apply
		}
		if !t.rls {
			a.add("rls-disabled", Critical, t.name, a.isolateFix(t.name),
				"row-level security is off on a tenant table, so every tenant sees and changes every row")
		} else if !t.force {
			a.add("rls-not-forced", Critical, t.name, a.isolateFix(t.name),
				"row-level security is not forced, so the table's owner (and code running as it) sees every row")
		}
	}
	return nil
}

// allTenantParents reports whether every table t inherits from is an isolated tenant table.
func (a *auditor) allTenantParents(t *relation) bool {
	for _, p := range t.parents {
		if parent := a.rels[p]; parent == nil || !parent.tenant || !parent.rls {
			return false
		}
	}
	return true
}

var commandNames = map[string]string{"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}

type policy struct {
	table               uint32
	name, cmd           string
	permissive          bool
	using, check        *node
	anyApplies, allHold bool
}

// checkPolicies judges each tenant table's policies by what they admit, command by command.
//
// For a command, a row passes when some permissive policy admits it and every restrictive one
// does. The rows it admits are all the current tenant's when every permissive policy that
// applies to the runtime role (or a role it can become) pins the tenant, or some restrictive
// policy that applies to all of them does: restrictive policies may narrow, never widen. Reads
// (SELECT, and the rows UPDATE and DELETE touch) are judged on USING; writes (INSERT, and the new
// rows of UPDATE) on WITH CHECK, or USING where a policy has none, as PostgreSQL does.
func (a *auditor) checkPolicies(ctx context.Context) error {
	rows, err := a.tx.Query(ctx, `
		SELECT p.polrelid, p.polname, p.polcmd::text, p.polpermissive, p.polroles, p.polqual::text, p.polwithcheck::text
		  FROM pg_policy p WHERE p.polrelid = ANY($1) ORDER BY p.polrelid, p.polname`, a.tenants)
	if err != nil {
		return err
	}
	// Policies of many tables are often the same text (a schema tenant's tables repeat the shared
	// schema's): each text is parsed once.
	parsed := map[string]*node{}
	parse := func(raw []byte) (*node, error) {
		if raw == nil {
			return nil, nil
		}
		if n, ok := parsed[string(raw)]; ok {
			return n, nil
		}
		n, err := parseNodeTree(string(raw))
		parsed[string(raw)] = n
		return n, err
	}
	type scanned struct {
		p     *policy
		roles []uint32
	}
	var all []scanned
	byTable := map[uint32][]*policy{}
	for rows.Next() {
		p := &policy{}
		var roles []uint32
		if err := rows.Scan(&p.table, &p.name, &p.cmd, &p.permissive, &roles, nil, nil); err != nil {
			rows.Close()
			return err
		}
		raw := rows.RawValues()
		if p.using, err = parse(raw[5]); err == nil {
			p.check, err = parse(raw[6])
		}
		if err != nil {
			rows.Close()
			return err
		}
		all = append(all, scanned{p, roles})
		byTable[p.table] = append(byTable[p.table], p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// Which of the roles policies name each reachable role acts with (USAGE: as itself or by
	// inheritance).
	named := map[uint32]bool{}
	for _, s := range all {
		for _, r := range s.roles {
			if r != 0 {
				named[r] = true
			}
		}
	}
	holds := map[[2]uint32]bool{} // {reachable role, named role}
	if len(named) > 0 && len(a.roles) > 0 {
		var list []uint32
		for r := range named {
			list = append(list, r)
		}
		rows, err := a.tx.Query(ctx, `SELECT u, r FROM unnest($1::oid[]) u, unnest($2::oid[]) r WHERE pg_has_role(u, r, 'USAGE')`, a.roles, list)
		if err != nil {
			return err
		}
		pairs, err := collectPairs[uint32](rows)
		if err != nil {
			return err
		}
		for _, p := range pairs {
			holds[p] = true
		}
	}
	for _, s := range all {
		s.p.allHold = len(a.roles) > 0
		for _, u := range a.roles {
			applies := false
			for _, r := range s.roles {
				if r == 0 || holds[[2]uint32{u, r}] {
					applies = true
					break
				}
			}
			s.p.anyApplies = s.p.anyApplies || applies
			s.p.allHold = s.p.allHold && applies
		}
	}
	type flagged struct {
		p    *policy
		cmds []string
		why  string
	}
	for _, oid := range a.tenants {
		t := a.rels[oid]
		if !t.rls {
			continue // rls-disabled says it
		}
		attnum := strconv.Itoa(int(t.tenantAttnum))
		bad := map[*policy]*flagged{}
		var order []*policy
		var missing []string
		for _, cmd := range []string{"r", "a", "w", "d"} {
			var permissive, restrictive []*policy
			for _, p := range byTable[oid] {
				if p.cmd != "*" && p.cmd != cmd {
					continue
				}
				if p.permissive && p.anyApplies {
					permissive = append(permissive, p)
				} else if !p.permissive && p.allHold {
					restrictive = append(restrictive, p)
				}
			}
			granted := map[string]bool{"r": t.read, "a": t.insert, "w": t.update, "d": t.del}[cmd]
			if len(permissive) == 0 {
				if granted {
					missing = append(missing, commandNames[cmd])
				}
				continue
			}
			// which clauses decide: reads on USING, writes on WITH CHECK (or USING)
			var clauses []func(*policy) (*node, string)
			usingOf := func(p *policy) (*node, string) { return p.using, "USING" }
			checkOf := func(p *policy) (*node, string) {
				if p.check != nil {
					return p.check, "WITH CHECK"
				}
				return p.using, "USING (it has no WITH CHECK)"
			}
			switch cmd {
			case "r", "d":
				clauses = append(clauses, usingOf)
			case "a":
				clauses = append(clauses, checkOf)
			case "w":
				clauses = append(clauses, usingOf, checkOf)
			}
			for _, clause := range clauses {
				narrowed := false
				for _, r := range restrictive {
					if e, _ := clause(r); e != nil {
						if ok, _ := a.rules.scopedTo(e, attnum); ok {
							narrowed = true
							break
						}
					}
				}
				if narrowed {
					continue
				}
				for _, p := range permissive {
					e, which := clause(p)
					if e == nil {
						continue // admits nothing
					}
					if ok, why := a.rules.scopedTo(e, attnum); !ok {
						f := bad[p]
						if f == nil {
							f = &flagged{p: p, why: which + ": " + why}
							bad[p] = f
							order = append(order, p)
						}
						if !slices.Contains(f.cmds, commandNames[cmd]) {
							f.cmds = append(f.cmds, commandNames[cmd])
						}
					}
				}
			}
		}
		for _, p := range order {
			f := bad[p]
			object := t.name + " policy " + p.name
			expr, err := a.policyText(ctx, oid, p.name)
			if err != nil {
				return err
			}
			kind := "policy-widens"
			if strings.Contains(f.why, "app.tenant_id") {
				kind = "policy-forgeable-binding"
			}
			fix := fmt.Sprintf("DROP POLICY %s ON %s;\n%s", ident(p.name), t.name, a.isolateFix(t.name))
			if p.name == "tenant_isolation" {
				fix = a.isolateFix(t.name)
			}
			a.add(kind, Critical, object, fix,
				"for %s it admits rows of other tenants — %s %s; the toolkit generates %s = (SELECT tenancy.current_tenant()::uuid)",
				strings.Join(f.cmds, ", "), a.named(f.why), expr, a.o.TenantColumn)
		}
		if len(missing) > 0 {
			a.add("policy-missing", Medium, t.name, a.isolateFix(t.name),
				"the runtime role may %s but no permissive policy lets it, so those statements see or change nothing (grant only what policies cover)",
				strings.Join(missing, ", "))
		}
	}
	// Any policy that applies may be evaluated on every row before the others filter it.
	for _, sc := range all {
		p := sc.p
		t := a.rels[p.table]
		if !p.anyApplies || !t.rls {
			continue
		}
		why := a.rules.leaks(p.using)
		if why == "" {
			why = a.rules.leaks(p.check)
		}
		if why == "" {
			continue
		}
		expr, err := a.policyText(ctx, p.table, p.name)
		if err != nil {
			return err
		}
		sev := Critical
		if b, ok := strings.CutPrefix(why, "builtin: "); ok {
			sev, why = Medium, b
		}
		a.add("policy-leaky-function", sev, t.name+" policy "+p.name,
			fmt.Sprintf("-- rewrite the policy with LEAKPROOF functions only, or drop it:\nDROP POLICY %s ON %s;", ident(p.name), t.name),
			"the policy runs %s: PostgreSQL may evaluate it on every tenant's rows before the tenant filter, and what it logs, counts or raises shows other tenants' values %s",
			a.named(why), expr)
	}
	return nil
}

var funcOID = regexp.MustCompile(`function call \(oid (\d+)\)`)

// named puts functions' signatures in place of their oids.
func (a *auditor) named(why string) string {
	return funcOID.ReplaceAllStringFunc(why, func(m string) string {
		oid := funcOID.FindStringSubmatch(m)[1]
		if sig, ok := a.funcs[oid]; ok {
			return "a call of " + sig
		}
		return "a call of a built-in function"
	})
}

func (a *auditor) policyText(ctx context.Context, table uint32, name string) (string, error) {
	var using, check *string
	err := a.tx.QueryRow(ctx, `SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)
		FROM pg_policy WHERE polrelid = $1 AND polname = $2`, table, name).Scan(&using, &check)
	var parts []string
	if using != nil {
		parts = append(parts, "USING "+*using)
	}
	if check != nil {
		parts = append(parts, "WITH CHECK "+*check)
	}
	return "(the policy: " + strings.Join(parts, " ") + ")", err
}

// collectPairs reads rows of two columns of type T.
func collectPairs[T any](rows pgx.Rows) ([][2]T, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (p [2]T, err error) {
		err = r.Scan(&p[0], &p[1])
		return p, err
	})
}

// column runs a query of one column and returns its values as T.
func column[T any](ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]T, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[T])
}
