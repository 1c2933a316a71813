package tenancyaudit

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy/tenancycatalog"
)

// checkUniqueness: unique indexes, unique and primary-key constraints and exclusion constraints on
// tenant tables whose key columns (INCLUDE columns do not count) leave out the tenant column,
// partial and expression indexes included. Inserting another tenant's value then fails, which
// tells the inserter that the value exists. Tables pinned to one tenant hold nobody else's rows.
func (a *auditor) checkUniqueness(ctx context.Context) error {
	rows, err := a.tx.Query(ctx, `SELECT i.indexrelid, i.indrelid, i.indnkeyatts, i.indkey::int2[], coalesce(c.conexclop, '{}')
		  FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype = 'x'
		 WHERE i.indrelid = ANY($1) AND (i.indisunique OR i.indisexclusion)`, a.tenants)
	if err != nil {
		return err
	}
	var flagged []uint32
	for rows.Next() {
		var index, table uint32
		var keyAtts int16
		var keys []int16
		var exclOps []uint32
		if err := rows.Scan(&index, &table, &keyAtts, &keys, &exclOps); err != nil {
			rows.Close()
			return err
		}
		t := a.rels[table]
		if t.pinned {
			continue
		}
		// The tenant column must be a key column and, in an exclusion constraint, compared with =
		// (tenant_id WITH <> would make rows of different tenants conflict).
		at := slices.Index(keys[:min(int(keyAtts), len(keys))], t.tenantAttnum)
		if at >= 0 && (len(exclOps) == 0 || (at < len(exclOps) && a.rules.equality[strconv.FormatUint(uint64(exclOps[at]), 10)])) {
			continue
		}
		flagged = append(flagged, index)
	}
	if err := rows.Err(); err != nil || len(flagged) == 0 {
		return err
	}
	rows, err = a.tx.Query(ctx, `
		SELECT i.indexrelid::regclass::text, i.indrelid, i.indisexclusion, coalesce(c.conname, ''),
		       coalesce(pg_get_constraintdef(c.oid), pg_get_indexdef(i.indexrelid))
		  FROM pg_index i
		  LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')
		 WHERE i.indexrelid = ANY($1)
		 ORDER BY 1`, flagged)
	if err != nil {
		return err
	}
	for rows.Next() {
		var index, constraint, def string
		var table uint32
		var exclusion bool
		if err := rows.Scan(&index, &table, &exclusion, &constraint, &def); err != nil {
			rows.Close()
			return err
		}
		t := a.rels[table]
		col := ident(a.o.TenantColumn)
		var fix string
		switch {
		case exclusion:
			fix = fmt.Sprintf("-- add %s WITH = to the constraint (btree_gist provides = for gist):\n-- %s", col, def)
		case constraint != "":
			fix = fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD CONSTRAINT %s %s;", t.name, ident(constraint), ident(constraint),
				strings.Replace(def, "(", "("+col+", ", 1))
		default:
			at := strings.Index(def, " USING ")
			open := strings.Index(def[max(at, 0):], "(") + max(at, 0)
			fix = fmt.Sprintf("DROP INDEX %s;\n%s;", index, def[:open+1]+col+", "+def[open+1:])
		}
		what := "unique index"
		if exclusion {
			what = "exclusion constraint"
		} else if constraint != "" {
			what = "unique key"
		}
		a.add("unique-without-tenant", High, index, fix,
			"a %s on %s whose key leaves out %s (%s): inserting a value another tenant already has fails, which tells one tenant what another stores",
			what, t.name, a.o.TenantColumn, def)
	}
	return rows.Err()
}

// checkForeignKeys: a foreign key between tenant tables that leaves out the tenant column lets a
// row point at (and so probe for) another tenant's row; a table that references a tenant table
// but has no tenant column and no row-level security holds tenant data no policy guards.
func (a *auditor) checkForeignKeys(ctx context.Context) error {
	rows, err := a.tx.Query(ctx, `SELECT oid, conname, conrelid, confrelid, conkey::int2[] FROM pg_constraint
		WHERE contype = 'f' AND confrelid = ANY($1) ORDER BY conname`, a.tenants)
	if err != nil {
		return err
	}
	type fk struct {
		oid           uint32
		name          string
		child, parent uint32
		withTenant    bool
	}
	fks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (f fk, err error) {
		var keys []int16
		err = r.Scan(&f.oid, &f.name, &f.child, &f.parent, &keys)
		if c := a.rels[f.child]; err == nil && c != nil {
			f.withTenant = c.tenantAttnum > 0 && slices.Contains(keys, c.tenantAttnum)
		}
		return f, err
	})
	if err != nil {
		return err
	}
	for _, f := range fks {
		child, parent := a.rels[f.child], a.rels[f.parent]
		if child == nil || parent == nil {
			continue
		}
		switch {
		case child.tenant && !f.withTenant:
			if child.pinned && parent.pinned && child.schema == parent.schema {
				continue
			}
			a.add("foreign-key-without-tenant", High, child.name+" constraint "+f.name,
				fmt.Sprintf("-- reference (%s, …) → %s (%s, …), with a unique key on %s that leads with %s:\nALTER TABLE %s DROP CONSTRAINT %s;",
					a.o.TenantColumn, parent.name, a.o.TenantColumn, parent.name, a.o.TenantColumn, child.name, ident(f.name)),
				"a foreign key from %s to %s without %s lets a row point at another tenant's row, and whether the insert fails tells that the row exists",
				child.name, parent.name, a.o.TenantColumn)
		case !child.tenant && child.schema != "tenancy":
			sev := High
			if child.read || child.update || child.del {
				sev = Critical
			}
			child.untenanted = true
			var cols, parentCols []string
			var tenantType string
			if err := a.tx.QueryRow(ctx, `
				SELECT ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
				       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
				       (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attnum = $2)
				  FROM pg_constraint c WHERE c.oid = $1`, f.oid, parent.tenantAttnum).Scan(&cols, &parentCols, &tenantType); err != nil {
				return err
			}
			var match []string
			for i := range cols {
				match = append(match, fmt.Sprintf("c.%s = p.%s", ident(cols[i]), ident(parentCols[i])))
			}
			fix := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s;\nUPDATE %s c SET %s = p.%s FROM %s p WHERE %s;\n%s\n-- then make the foreign key lead with %s",
				child.name, col(a), tenantType, child.name, col(a), col(a), parent.name, strings.Join(match, " AND "), a.isolateFix(child.name), a.o.TenantColumn)
			a.add("untenanted-child", sev, child.name, fix,
				"%s references the tenant table %s (constraint %s) but has no %s column: its rows belong to tenants, no policy can pin them to one, and whether an insert fails the foreign key tells that another tenant's row exists",
				child.name, parent.name, f.name, a.o.TenantColumn)
		}
	}
	return nil
}

// viewBases reads, for every view and materialized view, the relations its query reads.
func (a *auditor) viewBases(ctx context.Context) (map[uint32][]uint32, error) {
	rows, err := a.tx.Query(ctx, `
		SELECT DISTINCT rw.ev_class, d.refobjid
		  FROM pg_rewrite rw
		  JOIN pg_depend d ON d.objid = rw.oid AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
		 WHERE rw.rulename = '_RETURN' AND d.refobjid <> rw.ev_class`)
	if err != nil {
		return nil, err
	}
	bases := map[uint32][]uint32{}
	for rows.Next() {
		var view, base uint32
		if err := rows.Scan(&view, &base); err != nil {
			rows.Close()
			return nil, err
		}
		bases[view] = append(bases[view], base)
	}
	return bases, rows.Err()
}

// readsTenantData reports whether a view reads a tenant table, directly or through other views.
func (a *auditor) readsTenantData(view uint32, bases map[uint32][]uint32, seen map[uint32]bool) bool {
	if seen[view] {
		return false
	}
	seen[view] = true
	for _, b := range bases[view] {
		if r := a.rels[b]; r != nil && (r.tenant || ((r.kind == "v" || r.kind == "m") && a.readsTenantData(b, bases, seen))) {
			return true
		}
	}
	return false
}

// checkViews: a view over tenant tables without security_invoker reads them with its owner's
// rights (an owner row-level security does not bind, or binds to no tenant); a materialized view
// over them stores every tenant's rows in a table with no policy.
func (a *auditor) checkViews(ctx context.Context) error {
	bases, err := a.viewBases(ctx)
	if err != nil {
		return err
	}
	a.bases = bases
	for _, r := range a.sortedRels() {
		if (r.kind != "v" && r.kind != "m") || !a.readsTenantData(r.oid, bases, map[uint32]bool{}) {
			continue
		}
		r.overTenants = true
		switch {
		case r.kind == "m":
			a.add("materialized-view", Critical, r.name,
				fmt.Sprintf("DROP MATERIALIZED VIEW %s;\n-- a view WITH (security_invoker = true) over the same query reads under each tenant's policies", r.name),
				"a materialized view over tenant tables stores every tenant's rows and has no row-level security")
		case !r.invoker:
			a.add("view-not-security-invoker", Critical, r.name, fmt.Sprintf("ALTER VIEW %s SET (security_invoker = true);", r.name),
				"the view reads tenant tables with its owner's rights, not under the reading tenant's policies")
		}
	}
	return nil
}

// checkRules: a rule rewrites statements into others that run with the rule's table owner's
// rights; on or over tenant data that bypasses the policies.
func (a *auditor) checkRules(ctx context.Context) error {
	rows, err := a.tx.Query(ctx, `
		SELECT rw.rulename, rw.ev_class,
		       EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
		                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY($1))
		  FROM pg_rewrite rw
		  JOIN pg_class c ON c.oid = rw.ev_class
		  JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE rw.rulename <> '_RETURN' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		 ORDER BY 2, 1`, a.tenants)
	if err != nil {
		return err
	}
	for rows.Next() {
		var name string
		var table uint32
		var touches bool
		if err := rows.Scan(&name, &table, &touches); err != nil {
			rows.Close()
			return err
		}
		t := a.rels[table]
		if t == nil {
			continue
		}
		sev := High
		if touches || t.tenant {
			sev = Critical
		}
		a.add("rule", sev, t.name+" rule "+name,
			fmt.Sprintf("DROP RULE %s ON %s;\n-- a trigger does the same work with the caller's rights, under the caller's policies", ident(name), t.name),
			"a rule on %s runs the statements it adds with the rights of the table's owner, outside the policies of the tenant who triggers it", t.name)
	}
	return rows.Err()
}

// checkFunctions: SECURITY DEFINER functions (and procedures) run with their owner's rights,
// whatever their search_path; one that reads or writes a tenant table, or that the runtime role
// can call, reaches past the caller's policies. tenancy.current_tenant(),
// tenancy.reset_session_proven() and tenancy.end_unit() are the toolkit's own (they read the
// binding key and no tenant data), as is tenancy.capture_change() (a move's trigger: it records
// the keys of the moving tenant's changed rows where the runtime role cannot read).
func (a *auditor) checkFunctions(ctx context.Context) error {
	if err := a.loadRoutines(ctx); err != nil {
		return err
	}
	names := a.tenantNames()
	for _, f := range a.routines {
		if f.leakproof {
			a.add("leakproof-function", Critical, f.sig, fmt.Sprintf("ALTER FUNCTION %s NOT LEAKPROOF;", f.sig),
				"a function users wrote is marked LEAKPROOF, so PostgreSQL runs it on rows before row-level security filters them: whatever it logs, counts or raises shows other tenants' values")
		}
		if !f.definer {
			continue
		}
		touched := a.mentions(f.src, names, f.dynamic)
		for _, d := range f.deps {
			if r := a.rels[d]; r != nil && (r.tenant || r.overTenants) && !slices.Contains(touched, r.relname) {
				touched = append(touched, r.relname)
			}
		}
		if len(touched) == 0 && !f.callable {
			continue
		}
		what := "FUNCTION"
		if f.procedure {
			what = "PROCEDURE"
		}
		fix := fmt.Sprintf("ALTER %s %s SECURITY INVOKER;", what, f.sig)
		if len(touched) == 0 {
			fix += fmt.Sprintf("\n-- or, if it must keep its owner's rights: REVOKE EXECUTE ON %s %s FROM PUBLIC, %s;", what, f.sig, ident(a.o.Role))
		}
		switch {
		case len(touched) > 0 && f.callable:
			a.add("security-definer", Critical, f.sig, fix,
				"a SECURITY DEFINER routine the runtime role can call reads or writes tenant data (%s) with its owner's rights, outside the caller's policies", strings.Join(touched, ", "))
		case len(touched) > 0:
			a.add("security-definer", Critical, f.sig, fix,
				"a SECURITY DEFINER routine reads or writes tenant data (%s) with its owner's rights, outside the caller's policies (a view, trigger or another routine may reach it)", strings.Join(touched, ", "))
		default:
			a.add("security-definer", High, f.sig, fix,
				"the runtime role can call a SECURITY DEFINER routine, which runs with its owner's rights: whatever it reads now or later is outside the caller's policies")
		}
	}
	return nil
}

// routine is a function or procedure users wrote.
type routine struct {
	oid                 uint32
	sig, name, src      string
	deps                []uint32
	callable, procedure bool
	definer, leakproof  bool
	dynamic             bool // runs SQL built from text (EXECUTE, format): literals may name tables
}

// loadRoutines reads every routine users wrote, outside pg_catalog and information_schema.
// Whether the runtime role can call one is EXECUTE alone: schema USAGE only guards name lookup,
// and a view or another routine reaches it without one.
func (a *auditor) loadRoutines(ctx context.Context) error {
	rows, err := a.tx.Query(ctx, `
		SELECT p.oid, p.oid::regprocedure::text, p.proname, coalesce(p.prosrc, ''),
		       ARRAY(SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.refclassid = 'pg_class'::regclass),
		       EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_function_privilege(u, p.oid, 'EXECUTE')),
		       p.prokind = 'p', p.prosecdef, p.proleakproof
		  FROM pg_proc p
		  JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE p.oid >= $2 AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		   AND p.oid IS DISTINCT FROM to_regprocedure('tenancy.current_tenant()')::oid
		   AND p.oid IS DISTINCT FROM to_regprocedure('tenancy.reset_session_proven(boolean,timestamp with time zone,text)')::oid
		   AND p.oid IS DISTINCT FROM to_regprocedure('tenancy.end_unit(timestamp with time zone,text)')::oid
		   AND p.oid IS DISTINCT FROM to_regprocedure('tenancy.capture_change()')::oid
		 ORDER BY 2`, a.roles, firstNormalOID)
	if err != nil {
		return err
	}
	a.routines, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (f routine, err error) {
		err = r.Scan(&f.oid, &f.sig, &f.name, &f.src, &f.deps, &f.callable, &f.procedure, &f.definer, &f.leakproof)
		f.dynamic = dynamicSQL.MatchString(f.src)
		return f, err
	})
	return err
}

var dynamicSQL = regexp.MustCompile(`(?i)\bexecute\b|\bformat\s*\(|quote_ident`)

var identifier = regexp.MustCompile(`"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*`)

// literal matches SQL string literals and comments, which name nothing unless the code runs
// SQL built from text.
var literal = regexp.MustCompile(`(?s)'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/`)

// mentions returns the names in names that appear in src as identifiers (in string literals too
// when the code builds SQL from text).
func (a *auditor) mentions(src string, names map[string]bool, dynamic bool) []string {
	if !dynamic {
		src = literal.ReplaceAllString(src, " ")
	}
	var out []string
	for _, w := range identifier.FindAllString(src, -1) {
		if strings.HasPrefix(w, `"`) {
			w = strings.ReplaceAll(w[1:len(w)-1], `""`, `"`)
		} else {
			w = strings.ToLower(w)
		}
		if names[w] && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

func col(a *auditor) string { return ident(a.o.TenantColumn) }

// tenantNames are the names of tenant tables and of the views over them.
func (a *auditor) tenantNames() map[string]bool {
	names := map[string]bool{}
	for _, r := range a.rels {
		if r.tenant || r.overTenants {
			names[r.relname] = true
		}
	}
	return names
}

var writeTarget = regexp.MustCompile(`(?is)\b(?:insert\s+into|update|delete\s+from|merge\s+into)\s+((?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*))?)`)

// resolve finds the relation a name written in a routine means: schema-qualified exactly, else
// in the given schema, then public, then anywhere.
func (a *auditor) resolve(name, schema string) *relation {
	parts := identifier.FindAllString(name, -1)
	norm := func(s string) string {
		if strings.HasPrefix(s, `"`) {
			return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
		}
		return strings.ToLower(s)
	}
	var want, in string
	switch len(parts) {
	case 1:
		want = norm(parts[0])
	case 2:
		in, want = norm(parts[0]), norm(parts[1])
	default:
		return nil
	}
	var found *relation
	for _, r := range a.sortedRels() {
		if r.relname != want || (in != "" && r.schema != in) {
			continue
		}
		switch {
		case in != "" || r.schema == schema:
			return r
		case r.schema == "public" || found == nil:
			found = r
		}
	}
	return found
}

// checkTriggers: a trigger on a tenant table whose routine — or any routine it calls, by name —
// writes into a table that is not a tenant table and that the runtime role can read copies one
// tenant's data where every tenant reads it; one that sends NOTIFY hands it to any session of the
// runtime role that listens.
func (a *auditor) checkTriggers(ctx context.Context) error {
	rows, err := a.tx.Query(ctx, `
		SELECT t.tgname, t.tgrelid, t.tgfoid
		  FROM pg_trigger t
		 WHERE NOT t.tgisinternal AND t.tgrelid = ANY($1)
		 ORDER BY 2, 1`, a.tenants)
	if err != nil {
		return err
	}
	type trig struct {
		name      string
		table, fn uint32
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (t trig, err error) {
		err = r.Scan(&t.name, &t.table, &t.fn)
		return t, err
	})
	if err != nil {
		return err
	}
	byOID, byName := map[uint32]*routine{}, map[string][]*routine{}
	for i := range a.routines {
		f := &a.routines[i]
		byOID[f.oid] = f
		byName[strings.ToLower(f.name)] = append(byName[strings.ToLower(f.name)], f)
	}
	readable := map[string]bool{}
	for _, r := range a.rels {
		if !r.tenant && r.read {
			readable[r.relname] = true
		}
	}
	for _, tg := range ts {
		t := a.rels[tg.table]
		// The trigger's routine and every routine it calls by name, transitively.
		var srcs []*routine
		seen := map[uint32]bool{}
		queue := []*routine{byOID[tg.fn]}
		for len(queue) > 0 {
			f := queue[0]
			queue = queue[1:]
			if f == nil || seen[f.oid] {
				continue
			}
			seen[f.oid] = true
			srcs = append(srcs, f)
			for _, m := range calls.FindAllStringSubmatch(literal.ReplaceAllString(f.src, " "), -1) {
				queue = append(queue, byName[strings.ToLower(strings.Trim(m[1], `"`))]...)
			}
		}
		var into []string
		notifies := false
		for _, f := range srcs {
			var names []string
			for _, m := range writeTarget.FindAllStringSubmatch(literal.ReplaceAllString(f.src, " "), -1) {
				names = append(names, m[1])
			}
			if f.dynamic { // SQL built from text: any readable table it names may be written
				names = append(names, a.mentions(f.src, readable, true)...)
			}
			notifies = notifies || notify.MatchString(f.src)
			for _, name := range names {
				r := a.resolve(name, t.schema)
				if r == nil || r.tenant || slices.Contains(into, r.name) || (r.kind == "v" && r.invoker && a.onlyTenant(r.oid, map[uint32]bool{})) {
					continue
				}
				if !r.read {
					// Unreadable, but a unique key there makes one tenant's insert fail on another's value.
					var unique bool
					if err := a.tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = $1 AND (indisunique OR indisexclusion))`, r.oid).Scan(&unique); err != nil {
						return err
					}
					if unique {
						into = append(into, r.name)
						a.add("trigger-writes-untenanted", High, t.name+" trigger "+tg.name,
							fmt.Sprintf("DROP TRIGGER %s ON %s;\n-- or make %s a tenant table with keys led by the tenant column (give its rows a tenant_id first): %s", ident(tg.name), t.name, r.name, a.isolateFix(r.name)),
							"a trigger on the tenant table %s writes (in %s) into %s, which is not a tenant table and has a unique key: whether a tenant's insert fails tells what other tenants wrote", t.name, f.sig, r.name)
					}
					continue
				}
				into = append(into, r.name)
				fix := fmt.Sprintf("REVOKE SELECT ON %s FROM PUBLIC, %s;\n-- or make it a tenant table (give its rows a tenant_id first): %s", r.name, ident(a.o.Role), a.isolateFix(r.name))
				if r.shared {
					fix = fmt.Sprintf("DROP TRIGGER %s ON %s; -- a shared table is every tenant's to read: keep tenant data out of it", ident(tg.name), t.name)
				}
				a.add("trigger-writes-readable", Critical, t.name+" trigger "+tg.name, fix,
					"a trigger on the tenant table %s writes (in %s) into %s, which is not a tenant table and which the runtime role can read: one tenant's data lands where every tenant reads it",
					t.name, f.sig, r.name)
			}
		}
		// A trigger runs its routine whoever may EXECUTE it: SECURITY DEFINER there runs as its
		// owner on every tenant's rows.
		if f := byOID[tg.fn]; f != nil && f.definer && !a.reported("security-definer", f.sig) {
			a.add("security-definer", Critical, f.sig, fmt.Sprintf("ALTER FUNCTION %s SECURITY INVOKER;", f.sig),
				"a SECURITY DEFINER routine is the trigger %s on the tenant table %s: it runs with its owner's rights, outside the policies, on the rows of whichever tenant writes (EXECUTE is not checked for triggers)", tg.name, t.name)
		}
		if notifies {
			a.add("trigger-notifies", Medium, t.name+" trigger "+tg.name,
				fmt.Sprintf("-- send ids, not data, or give each tenant its own channel; or: DROP TRIGGER %s ON %s;", ident(tg.name), t.name),
				"a trigger on the tenant table %s sends NOTIFY: every session of the runtime role that LISTENs on the channel receives the payload, whichever tenant wrote the row (tenancypgx unlistens after each transaction; code outside db.Tx does not)", t.name)
		}
	}
	return nil
}

var calls = regexp.MustCompile(`("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*\(`)

var notify = regexp.MustCompile(`(?i)\bpg_notify\s*\(|\bnotify\s+[a-z_"]`)

// reported reports whether a finding of kind about object was already made.
func (a *auditor) reported(kind, object string) bool {
	for _, f := range a.findings {
		if f.Kind == kind && f.Object == object {
			return true
		}
	}
	return false
}

// onlyTenant reports whether a view reads nothing but tenant tables (and views that do).
func (a *auditor) onlyTenant(view uint32, seen map[uint32]bool) bool {
	if seen[view] {
		return true
	}
	seen[view] = true
	for _, b := range a.bases[view] {
		r := a.rels[b]
		switch {
		case r != nil && r.tenant:
		case r != nil && r.kind == "v" && a.onlyTenant(b, seen):
		default:
			return false
		}
	}
	return len(a.bases[view]) > 0
}

// checkSequences: a sequence that a tenant table's column takes its values from (serial,
// identity, or a default calling nextval) counts every tenant's inserts: SELECT last_value,
// nextval and setval on it tell one tenant how busy the others are, or disturb them.
func (a *auditor) checkSequences(ctx context.Context) error {
	if len(a.roles) == 0 {
		return nil
	}
	rows, err := a.tx.Query(ctx, `
		SELECT s.oid::regclass::text,
		       coalesce((SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid
		                    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1), 0)
		  FROM pg_class s
		 WHERE s.relkind = 'S' AND s.relnamespace <> 'pg_catalog'::regnamespace
		   AND EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_sequence_privilege(u, s.oid, 'SELECT')
		                  OR has_sequence_privilege(u, s.oid, 'USAGE') OR has_sequence_privilege(u, s.oid, 'UPDATE'))
		 ORDER BY 1`, a.roles)
	if err != nil {
		return err
	}
	type seq struct {
		name  string
		owner uint32
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (s seq, err error) {
		err = r.Scan(&s.name, &s.owner)
		return s, err
	})
	if err != nil {
		return err
	}
	for _, sq := range seqs {
		fix := fmt.Sprintf("REVOKE ALL ON SEQUENCE %s FROM PUBLIC, %s;", sq.name, ident(a.o.Role))
		table := a.rels[sq.owner]
		switch {
		case table != nil && table.tenant: // pinned to one tenant or not, the reader may be another
			a.add("sequence-readable", High, sq.name,
				fix+"\n-- a serial column then needs no grant once it is an identity column: "+a.isolateFix(table.name),
				"the runtime role may read or advance the sequence of the tenant table %s, whose last_value counts every tenant's rows", table.name)
		default:
			a.add("sequence-readable", High, sq.name,
				fix+"\n-- a column default or routine that calls nextval on it then runs as its owner, or the column becomes an identity column",
				"the runtime role may read or advance the sequence: every tenant's nextval moves it, so its value counts what the other tenants do")
		}
	}
	return nil
}

// checkSideChannels: the runtime role's TEMP privilege, large objects it can read, tables (in
// any schema, the catalog's included) it can read that are neither tenant tables nor shared,
// views that read such tables with their owner's rights, and shared tables it can write.
func (a *auditor) checkSideChannels(ctx context.Context) error {
	if len(a.roles) == 0 {
		return nil
	}
	var temp bool
	if err := a.tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_database_privilege(u, current_database(), 'TEMP'))`,
		a.roles).Scan(&temp); err != nil {
		return err
	}
	if temp {
		a.add("temp-privilege", Medium, "database "+a.database,
			fmt.Sprintf("REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC, %s;", ident(a.database), ident(a.o.Role)),
			"the runtime role may create temporary tables, which live as long as the connection: on a pooled connection they outlast the tenant that made them (tenancypgx discards them; a pooler in session mode or code outside db.Tx does not)")
	}
	los, err := column[string](ctx, a.tx, `
		SELECT l.oid::text FROM pg_largeobject_metadata l
		 WHERE current_setting('lo_compat_privileges')::boolean OR l.lomowner = ANY($1)
		    OR EXISTS (SELECT FROM aclexplode(l.lomacl) g WHERE g.privilege_type = 'SELECT' AND (g.grantee = 0 OR g.grantee = ANY($1)))
		 ORDER BY l.oid LIMIT 21`, a.roles)
	if err != nil {
		return err
	}
	for i, lo := range los {
		if i == 20 {
			a.add("large-object-readable", Critical, "large objects beyond 20", "-- see the findings above; list them all with: SELECT oid FROM pg_largeobject_metadata;",
				"more large objects are readable by the runtime role")
			break
		}
		a.add("large-object-readable", Critical, "large object "+lo,
			fmt.Sprintf("REVOKE ALL ON LARGE OBJECT %s FROM PUBLIC, %s;\nALTER LARGE OBJECT %s OWNER TO CURRENT_USER; -- as the migration role\n-- (and lo_compat_privileges = off)", lo, ident(a.o.Role), lo),
			"the runtime role can read the large object; large objects have no row-level security, so whichever tenant's data it holds, every tenant can read it")
	}
	for _, r := range a.sortedRels() {
		switch {
		case r.tenant:
		case r.shared:
			if r.insert || r.update || r.del || r.truncate {
				a.add("shared-table-writable", Critical, r.name, fmt.Sprintf("SELECT tenancy.share(%s, %s); -- leaves the runtime role SELECT only", quote(r.name), quote(a.o.Role)),
					"the table is shared (every tenant reads it) but the runtime role can change it: one tenant's writes reach every tenant")
			}
		case r.overTenants || r.untenanted:
		case r.kind == "v" && !r.invoker && (r.insert || r.update || r.del) && a.onlyShared(r.oid, map[uint32]bool{}):
			a.add("shared-table-writable", Critical, r.name, fmt.Sprintf("REVOKE INSERT, UPDATE, DELETE ON %s FROM PUBLIC, %s;", r.name, ident(a.o.Role)),
				"the view writes shared tables with its owner's rights, and the runtime role may write through it: one tenant's writes reach every tenant")
		case r.kind == "v" && (r.invoker || a.onlyShared(r.oid, map[uint32]bool{})):
		case r.name == tenancycatalog.FencesTable && a.sealedFences(ctx, r):
		case r.name == tenancycatalog.FencesTable && (r.read || r.insert || r.update || r.del || r.truncate):
			fix, err := tenancycatalog.FencesRepair(ctx, a.tx, r.oid, a.o.Role)
			if err != nil {
				return err
			}
			a.add("readable-table", Critical, r.name, fix,
				"the fences of tenant moves are not as the toolkit made them: a tenant may read or change other tenants' fences, learning who is being moved or stopping their units")
		case !r.read:
			if err := a.checkWritable(ctx, r); err != nil {
				return err
			}
		default:
			what := "table"
			switch r.kind {
			case "v":
				what = "view (reading with its owner's rights)"
			case "m":
				what = "materialized view"
			case "f":
				what = "foreign table"
			}
			fix := fmt.Sprintf("REVOKE SELECT ON %s FROM PUBLIC, %s;\n-- or, if its rows are tenants' (give them a tenant_id first): %s\n-- or, if every tenant may read it: SELECT tenancy.share(%s, %s);",
				r.name, ident(a.o.Role), a.isolateFix(r.name), quote(r.name), quote(a.o.Role))
			a.add("readable-table", Critical, r.name, fix,
				"the runtime role can read this %s, which is neither a tenant table nor shared (tenancy.share): every tenant reads all of its rows", what)
		}
	}
	return a.checkCatalogGrants(ctx)
}

// sealedFences reports whether r, the fences of tenant moves, is as the toolkit made it (row-level
// security reading only the transaction's own proof's fences) with nothing the runtime role can
// write. Any other shape is judged as any table is.
func (a *auditor) sealedFences(ctx context.Context, r *relation) bool {
	if r.insert || r.update || r.del || r.truncate {
		return false
	}
	ok, err := tenancycatalog.FencesAsMade(ctx, a.tx, r.oid)
	return err == nil && ok
}

// checkWritable: a table that is neither a tenant table nor shared, which the runtime role cannot
// read but can change: UPDATE, DELETE or TRUNCATE reach every tenant's rows; INSERT into a table
// with a unique key tells, by failing, that another tenant's value is there.
func (a *auditor) checkWritable(ctx context.Context, r *relation) error {
	fix := fmt.Sprintf("REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM PUBLIC, %s;\n-- or, if its rows are tenants' (give them a tenant_id first): %s", r.name, ident(a.o.Role), a.isolateFix(r.name))
	switch {
	case r.update || r.del || r.truncate:
		a.add("writable-table", Critical, r.name, fix,
			"the runtime role can change or delete rows of this table, which is neither a tenant table nor shared: one tenant's UPDATE, DELETE or TRUNCATE reaches every tenant's rows")
	case r.insert:
		var unique bool
		if err := a.tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = $1 AND (indisunique OR indisexclusion))`, r.oid).Scan(&unique); err != nil {
			return err
		}
		if unique {
			a.add("writable-table", High, r.name,
				fmt.Sprintf("REVOKE INSERT ON %s FROM PUBLIC, %s;\n-- or make it a tenant table, its keys led by the tenant column: %s", r.name, ident(a.o.Role), a.isolateFix(r.name)),
				"the runtime role can insert into this table, which is neither a tenant table nor shared and has a unique key: an insert that fails tells one tenant what another stored")
		}
	}
	return nil
}

// sensitiveCatalogs are the system tables only superusers read in a new cluster.
var sensitiveCatalogs = []string{"pg_authid", "pg_shadow", "pg_statistic", "pg_statistic_ext_data", "pg_largeobject", "pg_user_mapping", "pg_locks"}

// checkCatalogGrants: a system table the runtime role can read that holds data (statistics,
// large objects, passwords), and a CREATE privilege on the database or a schema, with which the
// runtime role makes objects that other tenants' unqualified names resolve to.
func (a *auditor) checkCatalogGrants(ctx context.Context) error {
	catalogs, err := column[string](ctx, a.tx, `
		SELECT c.oid::regclass::text FROM pg_class c
		 WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind IN ('r', 'v', 'm')
		   AND EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_table_privilege(u, c.oid, 'SELECT') OR has_any_column_privilege(u, c.oid, 'SELECT'))
		   AND (c.relname = ANY($2) OR EXISTS (SELECT FROM aclexplode(c.relacl) g WHERE g.grantee = ANY($1) AND g.privilege_type = 'SELECT'))
		 ORDER BY 1`, a.roles, sensitiveCatalogs)
	if err != nil {
		return err
	}
	for _, c := range catalogs {
		if c == "pg_locks" {
			a.add("readable-table", High, c, fmt.Sprintf("REVOKE SELECT ON pg_locks FROM PUBLIC, %s;\nREVOKE EXECUTE ON FUNCTION pg_lock_status() FROM PUBLIC, %[1]s;\nGRANT SELECT ON pg_locks TO pg_monitor; GRANT EXECUTE ON FUNCTION pg_lock_status() TO pg_monitor; -- as a superuser", ident(a.o.Role)),
				"the runtime role can list the locks every session holds: the advisory-lock keys of other tenants' units among them, with which SQL in one tenant's unit could hold another's writes back")
			continue
		}
		a.add("readable-table", Critical, c, fmt.Sprintf("REVOKE SELECT ON %s FROM PUBLIC, %s;", c, ident(a.o.Role)),
			"the runtime role can read a system table granted to it: statistics, large objects and role data in it are every tenant's")
	}
	rows, err := a.tx.Query(ctx, `
		SELECT 'database', current_database() WHERE EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_database_privilege(u, current_database(), 'CREATE'))
		UNION ALL
		SELECT 'schema', n.nspname::text FROM pg_namespace n
		 WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
		   AND EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_schema_privilege(u, n.oid, 'CREATE'))`, a.roles)
	if err != nil {
		return err
	}
	creates, err := collectPairs[string](rows)
	if err != nil {
		return err
	}
	for _, c := range creates {
		a.add("create-privilege", Critical, c[0]+" "+c[1],
			fmt.Sprintf("REVOKE CREATE ON %s %s FROM PUBLIC, %s;", strings.ToUpper(c[0]), ident(c[1]), ident(a.o.Role)),
			"the runtime role may create objects in the %s: a schema named like a role, or a table or function met earlier on the search_path, captures other tenants' unqualified names", c[0])
	}
	return a.checkOwnedAndServers(ctx)
}

// dangerousFunctions are PostgreSQL's functions only superusers (or predefined roles) may call
// in a new cluster, or that the toolkit's migrations take from PUBLIC: granted to the runtime
// role, they read the server's files (every tenant's rows on disk) or end other tenants' sessions.
var dangerousFunctions = map[string]Severity{
	"pg_read_file": Critical, "pg_read_binary_file": Critical, "pg_ls_dir": Critical, "pg_stat_file": Critical,
	"lo_import": Critical, "lo_export": Critical, "pg_ls_waldir": High, "pg_ls_logdir": High, "pg_ls_tmpdir": High,
	"pg_ls_archive_statusdir": High, "pg_terminate_backend": Medium, "pg_cancel_backend": Medium,
}

// checkOwnedAndServers: any object the runtime role (or a role it can become) owns — its owner
// alters or drops it, and DROP … CASCADE takes the policies and columns that depend on it; the
// database itself among them; foreign servers it may use (another database, every tenant's rows,
// and in pg_user_mappings the password of the mapping); and PostgreSQL's file and session functions
// granted to it.
func (a *auditor) checkOwnedAndServers(ctx context.Context) error {
	if len(a.roles) == 0 {
		return nil
	}
	owned := map[uint32]bool{}
	for _, oid := range a.tenants {
		owned[oid] = true // role-owns-table says it
	}
	rows, err := a.tx.Query(ctx, `
		SELECT coalesce(pg_describe_object(d.classid, d.objid, d.objsubid), d.classid::regclass::text || ' ' || d.objid), d.classid = 'pg_class'::regclass, d.objid
		  FROM pg_shdepend d
		 WHERE d.deptype = 'o' AND d.refobjid = ANY($1)
		   AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		UNION ALL
		SELECT 'database ' || quote_ident(datname), false, 0 FROM pg_database WHERE datname = current_database() AND datdba = ANY($1)
		 ORDER BY 1`, a.roles)
	if err != nil {
		return err
	}
	for rows.Next() {
		var what string
		var isRel bool
		var oid uint32
		if err := rows.Scan(&what, &isRel, &oid); err != nil {
			rows.Close()
			return err
		}
		if isRel && owned[oid] {
			continue
		}
		a.add("role-owns-object", Critical, what, fmt.Sprintf("-- as the migration role: give it to yourself, e.g.\nREASSIGN OWNED BY %s TO CURRENT_USER;", ident(a.o.Role)),
			"the runtime role owns %s: SQL of any tenant can alter it or DROP it … CASCADE, which removes the policies, defaults and columns that depend on it", what)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = a.tx.Query(ctx, `
		SELECT s.srvname::text, EXISTS (SELECT FROM pg_user_mapping m WHERE m.umserver = s.oid AND (m.umuser = 0 OR m.umuser = ANY($1)))
		  FROM pg_foreign_server s
		 WHERE EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_server_privilege(u, s.oid, 'USAGE'))
		 ORDER BY 1`, a.roles)
	if err != nil {
		return err
	}
	servers, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (p struct {
		name    string
		mapping bool
	}, err error) {
		err = r.Scan(&p.name, &p.mapping)
		return p, err
	})
	if err != nil {
		return err
	}
	for _, srv := range servers {
		why := "the runtime role may use the foreign server"
		if srv.mapping {
			why += ", and a user mapping gives it credentials (shown to it in pg_user_mappings)"
		}
		a.add("foreign-server", Critical, "server "+srv.name,
			fmt.Sprintf("REVOKE USAGE ON FOREIGN SERVER %s FROM PUBLIC, %s;\nDROP USER MAPPING IF EXISTS FOR %s SERVER %s;", ident(srv.name), ident(a.o.Role), ident(a.o.Role), ident(srv.name)),
			"%s: foreign tables it makes, or dblink, read the other side with the mapping's rights, outside this database's policies", why)
	}
	var names []string
	for n := range dangerousFunctions {
		names = append(names, n)
	}
	rows, err = a.tx.Query(ctx, `
		SELECT p.oid::regprocedure::text, p.proname::text FROM pg_proc p
		 WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY($2)
		   AND EXISTS (SELECT FROM unnest($1::oid[]) u WHERE has_function_privilege(u, p.oid, 'EXECUTE'))
		 ORDER BY 1`, a.roles, names)
	if err != nil {
		return err
	}
	fns, err := collectPairs[string](rows)
	if err != nil {
		return err
	}
	for _, f := range fns {
		what := "reads the server's files, where every tenant's rows are"
		if dangerousFunctions[f[1]] == Medium {
			what = "ends or cancels the sessions of other tenants, which run as the same role"
		}
		a.add("function-granted", dangerousFunctions[f[1]], f[0],
			fmt.Sprintf("REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC, %s; -- as a superuser", f[0], ident(a.o.Role)),
			"the runtime role may call %s, which %s", f[0], what)
	}
	return nil
}

// onlyShared reports whether a view reads nothing but shared tables (and views that do).
func (a *auditor) onlyShared(view uint32, seen map[uint32]bool) bool {
	if seen[view] {
		return true
	}
	seen[view] = true
	for _, b := range a.bases[view] {
		r := a.rels[b]
		if r != nil && r.shared {
			continue
		}
		if r != nil && r.kind == "v" && a.onlyShared(b, seen) {
			continue
		}
		return false
	}
	return true
}

func (a *auditor) sortedRels() []*relation {
	if a.sorted == nil {
		for _, r := range a.rels {
			a.sorted = append(a.sorted, r)
		}
		slices.SortFunc(a.sorted, func(x, y *relation) int { return strings.Compare(x.name, y.name) })
	}
	return a.sorted
}
