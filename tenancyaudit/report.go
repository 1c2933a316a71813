package tenancyaudit

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Severity says how bad a finding is. Every finding fails the audit; severity orders the report.
type Severity string

const (
	// Critical: one tenant can read or change another's rows, or can become someone who can.
	Critical Severity = "critical"
	// High: one tenant can learn of another's data (that a value exists, how many rows there are).
	High Severity = "high"
	// Medium: a weakness the toolkit's other defences cover today, or a table that cannot work.
	Medium Severity = "medium"
)

var severityRank = map[Severity]int{Critical: 0, High: 1, Medium: 2}

// Finding is one way isolation is at risk, in one database.
type Finding struct {
	// Kind is a stable name for the kind of hole (see the package documentation).
	Kind     string   `json:"kind"`
	Severity Severity `json:"severity"`
	// Object is what the finding is about: a role, a table, "table policy name", an index, a
	// function's signature, "table rule name", "table trigger name", "database name", "large object
	// oid". Kind and Object together are what --ignore names.
	Object string `json:"object"`
	// Server and Database say where the object is.
	Server   string `json:"server"`
	Database string `json:"database"`
	// Problem says what is wrong and how one tenant could use it.
	Problem string `json:"problem"`
	// Fix is SQL that removes the hole (to review, then run as the migration role).
	Fix string `json:"fix"`
	// Reason is why an operator accepted the finding (only in Report.Ignored).
	Reason string `json:"reason,omitempty"`
}

// Key is how --ignore names the finding: KIND:OBJECT.
func (f Finding) Key() string { return f.Kind + ":" + f.Object }

// DatabaseReport says what was audited in one database.
type DatabaseReport struct {
	Server   string `json:"server"`
	Database string `json:"database"`
	// Role is the runtime role audited; Reachable the roles it can become or act as (itself first).
	Role      string   `json:"role"`
	Reachable []string `json:"reachable_roles"`
	// TenantTables is how many tenant tables (tables with the tenant column) the database has.
	TenantTables int `json:"tenant_tables"`
	// Tenants names the database tenants whose database this is (none for the catalog's).
	Tenants []string `json:"tenants,omitempty"`
}

// Report is what Audit found: every database it audited, the findings, and the findings an
// operator accepted (with their reasons), which do not fail the audit.
type Report struct {
	Databases []DatabaseReport `json:"databases"`
	Findings  []Finding        `json:"findings"`
	Ignored   []Finding        `json:"ignored"`
	// Unclaimed lists databases on the configured servers named like a tenant's
	// (tenant_<32 hex digits>) that no tenant of this catalog has, and template databases of
	// tenant lines (tenancy_template_…, made again when missing). Listing only: the audit cannot
	// know whose they are, and they do not fail it.
	Unclaimed []UnclaimedDatabase `json:"unclaimed_databases"`
}

// UnclaimedDatabase is a database the catalog does not account for.
type UnclaimedDatabase struct {
	Server   string `json:"server"`
	Database string `json:"database"`
	// Kind is "tenant" (named like a tenant's database) or "template".
	Kind string `json:"kind"`
}

// OK reports whether nothing was found (accepted findings aside).
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// TenantTables is how many tenant tables the audited databases hold in all.
func (r *Report) TenantTables() int {
	n := 0
	for _, d := range r.Databases {
		n += d.TenantTables
	}
	return n
}

func (r *Report) sort() {
	less := func(s []Finding) func(i, j int) bool {
		return func(i, j int) bool {
			a, b := s[i], s[j]
			if severityRank[a.Severity] != severityRank[b.Severity] {
				return severityRank[a.Severity] < severityRank[b.Severity]
			}
			if a.Server+"/"+a.Database != b.Server+"/"+b.Database {
				return a.Server+"/"+a.Database < b.Server+"/"+b.Database
			}
			if a.Kind != b.Kind {
				return a.Kind < b.Kind
			}
			return a.Object < b.Object
		}
	}
	sort.SliceStable(r.Findings, less(r.Findings))
	sort.SliceStable(r.Ignored, less(r.Ignored))
	sort.SliceStable(r.Databases, func(i, j int) bool {
		return r.Databases[i].Server+"/"+r.Databases[i].Database < r.Databases[j].Server+"/"+r.Databases[j].Database
	})
}

// WriteText writes the report for people: the databases audited, then the findings grouped by
// severity, each with the SQL that fixes it, then the accepted ones.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, d := range r.Databases {
		fmt.Fprintf(&b, "audited  %s%s: runtime role %s", d.Database, onServer(d.Server), d.Role)
		if len(d.Reachable) > 1 {
			fmt.Fprintf(&b, " (and %s, which it can become)", strings.Join(d.Reachable[1:], ", "))
		}
		fmt.Fprintf(&b, ", %d tenant table(s)", d.TenantTables)
		if len(d.Tenants) > 0 {
			fmt.Fprintf(&b, ", database of %s", strings.Join(d.Tenants, ", "))
		}
		b.WriteString("\n")
	}
	current := Severity("")
	for _, f := range r.Findings {
		if f.Severity != current {
			current = f.Severity
			fmt.Fprintf(&b, "\n%s\n", strings.ToUpper(string(current)))
		}
		fmt.Fprintf(&b, "  %s %s  (%s%s)\n    %s\n", f.Kind, f.Object, f.Database, onServer(f.Server), f.Problem)
		for _, line := range strings.Split(f.Fix, "\n") {
			fmt.Fprintf(&b, "    fix: %s\n", line)
		}
	}
	if len(r.Ignored) > 0 {
		b.WriteString("\nACCEPTED (tenancy doctor --unignore KIND:OBJECT takes one back)\n")
		for _, f := range r.Ignored {
			fmt.Fprintf(&b, "  %s %s  (%s%s): %s\n", f.Kind, f.Object, f.Database, onServer(f.Server), f.Reason)
		}
	}
	if len(r.Unclaimed) > 0 {
		b.WriteString("\nUNCLAIMED DATABASES (listing only: no tenant of this catalog has them; whose they are, the audit cannot know)\n")
		for _, u := range r.Unclaimed {
			fmt.Fprintf(&b, "  %-8s %s on %s\n", u.Kind, u.Database, u.Server)
		}
	}
	if r.OK() {
		fmt.Fprintf(&b, "\nOK: isolation holds, no finding in %d database(s)\n", len(r.Databases))
	} else {
		fmt.Fprintf(&b, "\n%d finding(s) in %d database(s): isolation is at risk\n", len(r.Findings), len(r.Databases))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// onServer is " on ALIAS", or nothing when the server has no alias (AuditDatabase).
func onServer(alias string) string {
	if alias == "" {
		return ""
	}
	return " on " + alias
}
