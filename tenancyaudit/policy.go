package tenancyaudit

import (
	"fmt"
	"strconv"
	"strings"
)

// firstNormalOID is where the oids of objects users create start: below it are PostgreSQL's own
// (a cast or an operator there cannot be redefined by anyone but a superuser).
const firstNormalOID = 16384

// exprRules say what a tenant-scoped expression is in one database.
type exprRules struct {
	currentTenant string          // oid of tenancy.current_tenant(), "" when the database has none or it was altered
	equality      map[string]bool // oids of PostgreSQL's own = operators
	leakproof     map[string]bool // oids of LEAKPROOF functions
}

// scopedTo reports whether expr, a policy's USING or WITH CHECK on a table whose tenant column
// is attnum, admits only rows of the current tenant; when it does not, why says what differs
// from the forms the toolkit generates.
//
// The forms: tenant = current, where tenant is the tenant column (or a binary-compatible
// relabelling of it) and current is tenancy.current_tenant() under casts of PostgreSQL's own,
// directly or as a scalar subquery (SELECT current) with no FROM; either side may come first.
// An AND passes when one of its terms does (the others only narrow); an OR when every branch
// does. Anything else — an OR with a branch that does not pin the tenant, IS NOT NULL, a
// comparison with another column or with app.tenant_id (which SQL inside a transaction can set),
// a function call, a constant — can admit another tenant's rows.
func (r *exprRules) scopedTo(expr *node, attnum string) (ok bool, why string) {
	if expr == nil {
		return false, "the expression is empty"
	}
	switch expr.typ {
	case "BOOLEXPR":
		args := expr.list("args")
		switch expr.str("boolop") {
		case "and":
			var whys []string
			for _, a := range args {
				ok, why := r.scopedTo(a, attnum)
				if ok {
					return true, ""
				}
				whys = append(whys, why)
			}
			return false, "no term of the AND pins the tenant (" + strings.Join(whys, "; ") + ")"
		case "or":
			for i, a := range args {
				if ok, why := r.scopedTo(a, attnum); !ok {
					return false, fmt.Sprintf("an OR admits a row when any branch does, and its %s branch does not pin the tenant: %s", ordinal(i+1), why)
				}
			}
			return true, ""
		default:
			return false, "a NOT admits every row its operand refuses"
		}
	case "OPEXPR":
		args := expr.list("args")
		if len(args) != 2 || !r.equality[expr.str("opno")] {
			if r.isTenantColumn(args, attnum) {
				return false, "it compares the tenant column with an operator other than PostgreSQL's = (e.g. <>, <, LIKE), which admits other tenants' values"
			}
			return false, "an operator expression that does not compare the tenant column with the current tenant"
		}
		left, right := args[0], args[1]
		if r.isColumn(right, attnum) {
			left, right = right, left
		}
		switch {
		case !r.isColumn(left, attnum):
			if r.isCurrentTenant(left) || r.isCurrentTenant(right) {
				return false, "it compares the current tenant with something other than the tenant column"
			}
			return false, "an equality that involves neither the tenant column nor the current tenant"
		case r.isCurrentTenant(right):
			return true, ""
		case stripCasts(right) != nil && stripCasts(right).typ == "VAR":
			return false, "it compares the tenant column with another column, which admits every row where the two are equal"
		case r.readsSetting(right):
			return false, "it compares the tenant column with the setting app.tenant_id, which SQL inside a transaction can set to any tenant (compare with tenancy.current_tenant(), which checks the binding)"
		default:
			return false, "it compares the tenant column with an expression that is not tenancy.current_tenant()"
		}
	case "NULLTEST":
		return false, "an IS [NOT] NULL test admits every tenant's rows"
	case "CONST":
		return false, "a constant admits every row or none"
	case "FUNCEXPR":
		return false, "function call (oid " + expr.str("funcid") + ") can return true for any row"
	case "SUBLINK":
		return false, "a subquery test (EXISTS, IN, ANY) is not a form the toolkit generates"
	case "SCALARARRAYOPEXPR":
		// tenant = ANY (ARRAY[current]) with one element is the equality.
		args := expr.list("args")
		if expr.str("useOr") == "true" && r.equality[expr.str("opno")] && len(args) == 2 && r.isColumn(args[0], attnum) {
			if arr := args[1]; arr != nil && arr.typ == "ARRAYEXPR" {
				if elems := arr.list("elements"); len(elems) == 1 && r.isCurrentTenant(elems[0]) {
					return true, ""
				}
			}
		}
		return false, "an = ANY / IN list admits every tenant the list names"
	}
	return false, "a " + strings.ToLower(expr.typ) + " expression is not a form the toolkit generates"
}

func (r *exprRules) isTenantColumn(args []*node, attnum string) bool {
	for _, a := range args {
		if r.isColumn(a, attnum) {
			return true
		}
	}
	return false
}

// canonicalOut are the types whose text form is one per value (uuid, int2, int4, int8): the
// tenant column cast to text compares as the column does.
var canonicalOut = map[string]bool{"2950": true, "21": true, "23": true, "20": true}

// isColumn reports whether n is the tenant column of the policy's own table, possibly relabelled
// or cast to text from a type whose text form is canonical.
func (r *exprRules) isColumn(n *node, attnum string) bool {
	for n != nil && n.typ == "RELABELTYPE" {
		n = n.child("arg")
	}
	if n != nil && n.typ == "COERCEVIAIO" {
		if v := n.child("arg"); v != nil && v.typ == "VAR" && canonicalOut[v.str("vartype")] {
			n = v
		}
	}
	return n != nil && n.typ == "VAR" && n.str("varno") == "1" && n.str("varlevelsup") == "0" && n.str("varattno") == attnum
}

// leaks returns why expr may show a row's values before the policies have filtered it, or "".
// PostgreSQL may evaluate any part of a policy's expression on every row, other tenants'
// included; only LEAKPROOF functions and operators may look at row values there. A function
// users wrote can log, raise or count what it is given; a cast of a row value (an input
// function) raises an error that quotes it.
func (r *exprRules) leaks(expr *node) string {
	if expr == nil || !readsRow(expr) {
		return ""
	}
	switch expr.typ {
	case "FUNCEXPR", "OPEXPR", "DISTINCTEXPR", "NULLIFEXPR", "SCALARARRAYOPEXPR":
		fn := expr.str("funcid")
		if expr.typ != "FUNCEXPR" {
			fn = expr.str("opfuncid")
		}
		if !r.leakproof[fn] {
			if oid, _ := strconv.Atoi(fn); oid < firstNormalOID {
				return "builtin: function call (oid " + fn + ") on row values, which PostgreSQL does not mark LEAKPROOF (an error it raises can tell a value)"
			}
			return "function call (oid " + fn + ") on row values"
		}
	case "COERCEVIAIO":
		if t := expr.str("resulttype"); t != "25" && t != "1043" { // to text or varchar nothing fails
			return "a cast of a row value (its errors quote the value)"
		}
	case "ARRAYCOERCEEXPR", "COERCETODOMAIN":
		return "a cast of a row value (its errors quote the value)"
	case "SUBLINK":
		return "a subquery over row values"
	}
	for _, f := range expr.fields {
		kids := f.list
		if f.child != nil {
			kids = []any{f.child}
		}
		for _, k := range kids {
			if c, ok := k.(*node); ok {
				if why := r.leaks(c); why != "" {
					return why
				}
			}
		}
	}
	return ""
}

// readsRow reports whether n reads a column of the row (a Var of the policy's own query level).
func readsRow(n *node) bool {
	if n == nil {
		return false
	}
	if n.typ == "VAR" {
		return n.str("varlevelsup") == "0"
	}
	if n.typ == "QUERY" {
		return queryReadsOuter(n, 1)
	}
	for _, f := range n.fields {
		if f.child != nil && readsRow(f.child) {
			return true
		}
		for _, k := range f.list {
			if c, ok := k.(*node); ok && readsRow(c) {
				return true
			}
		}
	}
	return false
}

// queryReadsOuter reports whether a subquery reads the row of the query level above it.
func queryReadsOuter(n *node, level int) bool {
	if n == nil {
		return false
	}
	if n.typ == "VAR" {
		return n.str("varlevelsup") == strconv.Itoa(level)
	}
	for _, f := range n.fields {
		kids := f.list
		if f.child != nil {
			kids = []any{f.child}
		}
		for _, k := range kids {
			if c, ok := k.(*node); ok {
				l := level
				if c.typ == "QUERY" {
					l = level + 1
				}
				if queryReadsOuter(c, l) {
					return true
				}
			}
		}
	}
	return false
}

// isCurrentTenant reports whether n is tenancy.current_tenant(), through casts of PostgreSQL's
// own and scalar subqueries without FROM.
func (r *exprRules) isCurrentTenant(n *node) bool {
	n = stripCasts(n)
	if n == nil || r.currentTenant == "" {
		return false
	}
	switch n.typ {
	case "FUNCEXPR":
		return n.str("funcid") == r.currentTenant && n.isNull("args")
	case "SUBLINK":
		q := n.child("subselect")
		if n.str("subLinkType") != "4" || q == nil || q.typ != "QUERY" || q.str("commandType") != "1" ||
			!q.isNull("rtable") || !q.isNull("setOperations") || !q.isNull("cteList") {
			return false
		}
		if j := q.child("jointree"); j != nil && (!j.isNull("fromlist") || !j.isNull("quals")) {
			return false
		}
		tl := q.list("targetList")
		return len(tl) == 1 && tl[0] != nil && r.isCurrentTenant(tl[0].child("expr"))
	}
	return false
}

// readsSetting reports whether n reads a setting (current_setting), under casts and NULLIF.
func (r *exprRules) readsSetting(n *node) bool {
	n = stripCasts(n)
	if n == nil {
		return false
	}
	switch n.typ {
	case "FUNCEXPR":
		// current_setting(text) is 2077, current_setting(text, boolean) 3294.
		return n.str("funcid") == "2077" || n.str("funcid") == "3294"
	case "NULLIFEXPR", "COALESCEEXPR":
		for _, a := range n.list("args") {
			if r.readsSetting(a) {
				return true
			}
		}
	}
	return false
}

// stripCasts removes casts of PostgreSQL's own: relabellings, I/O conversions and cast functions.
func stripCasts(n *node) *node {
	for n != nil {
		switch n.typ {
		case "RELABELTYPE", "COERCEVIAIO":
			n = n.child("arg")
			continue
		case "FUNCEXPR":
			// funcformat 1 and 2 are explicit and implicit casts.
			if f := n.str("funcformat"); f == "1" || f == "2" {
				if oid, err := strconv.Atoi(n.str("funcid")); err == nil && oid < firstNormalOID {
					if args := n.list("args"); len(args) == 1 {
						n = args[0]
						continue
					}
				}
			}
		}
		return n
	}
	return nil
}

// pinnedTo reports whether a CHECK constraint's expression pins the tenant column to one constant
// (tenant = 'id'), so that every row of the table is one tenant's: the constraint tenancy.isolate
// puts on the tables of a schema tenant.
func (r *exprRules) pinnedTo(check *node, attnum string) bool {
	if check == nil || check.typ != "OPEXPR" || !r.equality[check.str("opno")] {
		return false
	}
	args := check.list("args")
	if len(args) != 2 {
		return false
	}
	for i := range 2 {
		if c := stripCasts(args[1-i]); r.isColumn(args[i], attnum) && c != nil && c.typ == "CONST" && c.str("constisnull") == "false" {
			return true
		}
	}
	return false
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "first"
	case 2:
		return "second"
	case 3:
		return "third"
	}
	return strconv.Itoa(n) + "th"
}
