package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrate"
)

// tenantUsage lists every tenant subcommand.
const tenantUsage = `usage: tenancy tenant SUBCOMMAND [arguments] [flags]

  create SLUG [--isolation shared|schema|database] [--name N] [--plan P] [--server ALIAS] [--domain D]... [--migrations DIR|demo]
  list [--json] [--status S] [--all]
  show SLUG [--json]
  update SLUG [--name N] [--plan P]
  suspend SLUG
  resume SLUG
  delete SLUG [--purge --yes]
  provision SLUG [--server ALIAS] [--migrations DIR|demo]
  set-limit SLUG LIMIT|plan
  domain add|remove SLUG DOMAIN
  move SLUG --to shared|schema|database [--server ALIAS] [--migrations DIR|demo] [--json]
  move SLUG --resume|--abort|--finalize [--migrations DIR|demo] [--json]

Run "tenancy tenant SUBCOMMAND -h" for its flags.
`

func tenant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tenantUsage)
		return usagef("tenant needs a subcommand")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, tenantUsage)
		return nil
	}
	fs := newFlags("tenant "+sub, stderr)
	dbf := databaseFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var (
		name, plan, isolation, status, migrations, server, planLimits *string
		domains                                                       listFlag
		all, purge, yes                                               *bool
		mf                                                            moveFlags
	)
	switch sub {
	case "create":
		name = fs.String("name", "", "display name (defaults to the slug)")
		plan = fs.String("plan", "free", "plan, one of those --plan-limits names")
		planLimits = fs.String("plan-limits", env("TENANCY_PLAN_LIMITS", ""), "the plans, plan=limit;… as serve takes them (env TENANCY_PLAN_LIMITS); default: free, pro, enterprise")
		isolation = fs.String("isolation", "shared", "shared, schema or database")
		fs.Var(&domains, "domain", "custom domain (repeatable)")
		migrations = migrationsFlag(fs)
		server = fs.String("server", tenancycatalog.DefaultServer, "with --isolation database: the alias of the server to make its database on")
	case "update":
		name = fs.String("name", "", "new display name")
		plan = fs.String("plan", "", "new plan (its rate limit applies unless the tenant has its own)")
		planLimits = fs.String("plan-limits", env("TENANCY_PLAN_LIMITS", ""), "the plans, plan=limit;… as serve takes them (env TENANCY_PLAN_LIMITS); default: free, pro, enterprise")
	case "provision":
		migrations = migrationsFlag(fs)
		server = fs.String("server", tenancycatalog.DefaultServer, "for a database tenant: the alias of the server to make its database on")
	case "list":
		status = fs.String("status", "", "only tenants with this status (active, suspended, deleted, provisioning)")
		all = fs.Bool("all", false, "include deleted tenants")
	case "delete":
		purge = fs.Bool("purge", false, "remove a deleted tenant's schema or rows and its catalog entry, for good")
		yes = fs.Bool("yes", false, "confirm --purge")
	case "move":
		migrations = migrationsFlag(fs)
		mf = moveFlags{
			to:       fs.String("to", "", "the new placement: shared, schema or database"),
			server:   fs.String("server", "", "with --to database: the alias of the server to move to (default \"default\")"),
			resume:   fs.Bool("resume", false, "finish the tenant's move that stopped"),
			abort:    fs.Bool("abort", false, "undo the tenant's move that has not switched (its copy is removed)"),
			finalize: fs.Bool("finalize", false, "remove the old placement's data of the tenant's switched move"),
			grace:    fs.Duration("grace", 24*time.Hour, "how long a switched move keeps the old placement's data"),
			maxPause: fs.Duration("max-pause", 800*time.Millisecond, "the longest the switch may hold the tenant's writes back"),
		}
	case "show", "suspend", "resume", "domain", "set-limit":
	default:
		return usagef("unknown tenant subcommand %q", sub)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"create": 1, "list": 0, "show": 1, "suspend": 1, "resume": 1, "delete": 1, "domain": 3, "provision": 1, "set-limit": 2, "update": 1, "move": 1}[sub]
	if len(pos) != want {
		return usagef("tenant %s takes %d argument(s), got %d", sub, want, len(pos))
	}
	// What the call says is checked before the database is: a wrong value is a wrong call (2).
	var iso tenancy.Isolation
	if planLimits != nil {
		policy, err := parsePlanLimits(*planLimits)
		if err != nil {
			return usagef("%s", oneLine(err))
		}
		if err := service.CheckPlan(policy, *plan); err != nil {
			return usagef("%s", oneLine(err))
		}
	}
	switch sub {
	case "create":
		if err := tenancy.ValidateSlug(pos[0]); err != nil {
			return usagef("%s", oneLine(err))
		}
		if iso, err = tenancy.ParseIsolation(*isolation); err != nil {
			return usagef("%s", oneLine(err))
		}
	case "list":
		if *status != "" {
			if _, err := tenancy.ParseStatus(*status); err != nil {
				return usagef("%s", oneLine(err))
			}
		}
	case "set-limit":
		if pos[1] != "plan" {
			if _, err := tenancyrate.ParseLimit(pos[1]); err != nil {
				return usagef("%s", oneLine(err))
			}
		}
	case "domain":
		if pos[0] != "add" && pos[0] != "remove" {
			return usagef("tenant domain takes add or remove, got %q", pos[0])
		}
	case "move":
		if _, err := mf.action(); err != nil {
			return err
		}
	}
	cat, closeDB, err := openCatalog(ctx, dbf, sub == "create")
	if err != nil {
		return err
	}
	defer closeDB()
	if migrations != nil && *migrations == "" && (sub == "provision" || sub == "move" || iso != tenancy.IsolationShared) {
		if err := refuseWithoutLines(ctx, cat, dbf); err != nil {
			return err
		}
	}

	switch sub {
	case "create":
		norm, err := service.NormalizeDomains(domains)
		if err != nil {
			return usagef("%s", err)
		}
		servers, err := dbf.serverMap()
		if err != nil {
			return err
		}
		if *server != tenancycatalog.DefaultServer || iso == tenancy.IsolationDatabase {
			if err := service.CheckServer(servers, iso, *server); err != nil {
				return usagef("%s", err.Error())
			}
		}
		t, err := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: pos[0], Name: *name, Plan: *plan, Isolation: iso, Domains: norm})
		if err != nil {
			return err
		}
		if t.Status == tenancy.StatusProvisioning {
			if *migrations == "" {
				fmt.Fprintln(stderr, noLinesNote)
			}
			if t, err = provision(ctx, cat, t, *migrations, *server, dbf); err != nil {
				return err
			}
		}
		return printTenant(stdout, t, *asJSON)
	case "list":
		opts := &tenancycatalog.ListOpts{Status: tenancy.Status(*status), IncludeDeleted: *all}
		return listTenants(ctx, cat, opts, stdout, *asJSON)
	case "domain":
		op, slug := pos[0], pos[1]
		d, err := tenancyhttp.NormalizeHost(pos[2])
		if err != nil {
			return usagef("%q is not a domain name", pos[2])
		}
		t, err := cat.TenantBySlug(ctx, slug)
		if err != nil {
			return tenantErr(ctx, cat, err, slug, sub)
		}
		switch op {
		case "add":
			t, err = cat.AddDomain(ctx, t.ID, d)
		case "remove":
			t, err = cat.RemoveDomain(ctx, t.ID, d)
		default:
			return usagef("tenant domain takes add or remove, got %q", op)
		}
		if err != nil {
			return err
		}
		return printTenant(stdout, t, *asJSON)
	}
	t, err := cat.TenantBySlug(ctx, pos[0])
	if err != nil {
		return tenantErr(ctx, cat, err, pos[0], sub)
	}
	switch sub {
	case "move":
		return moveTenant(ctx, cat, t, mf, *migrations, dbf, stdout, stderr, *asJSON)
	case "show":
		return showTenant(ctx, cat, t, stdout, *asJSON)
	case "suspend":
		t, err = cat.Suspend(ctx, t.ID)
	case "resume":
		t, err = cat.Resume(ctx, t.ID)
	case "delete":
		if *purge {
			if !*yes {
				return usagef("--purge destroys %s's data for good: add --yes to confirm", t.Slug)
			}
			if err := tenancyprovision.Purge(ctx, cat, t.ID); err != nil {
				if errors.Is(err, tenancyprovision.ErrNotDeleted) {
					return fmt.Errorf("%w: tenancy tenant delete %s, then purge", err, t.Slug)
				}
				return err
			}
			fmt.Fprintf(stdout, "purged %s (%s)\n", t.Slug, t.ID)
			return nil
		}
		if *yes {
			return usagef("--yes confirms --purge; a plain delete needs none")
		}
		t, err = cat.Delete(ctx, t.ID)
	case "provision":
		if *migrations == "" {
			fmt.Fprintln(stderr, noLinesNote)
		}
		t, err = provision(ctx, cat, t, *migrations, *server, dbf)
	case "update":
		t, err = cat.Update(ctx, t.ID, &tenancycatalog.UpdateOpts{Name: *name, Plan: *plan})
	case "set-limit":
		limit := pos[1]
		if limit == "plan" {
			limit = ""
		}
		t, err = cat.SetRateLimit(ctx, t.ID, limit)
	}
	if err != nil {
		return tenantErr(ctx, cat, err, pos[0], sub)
	}
	return printTenant(stdout, t, *asJSON)
}

// showTenant prints t and, when it has one, its last move.
func showTenant(ctx context.Context, cat *tenancycatalog.Catalog, t *tenancy.Tenant, w io.Writer, asJSON bool) error {
	m, err := cat.LastMove(ctx, t.ID)
	if err != nil && !errors.Is(err, tenancycatalog.ErrNoMove) {
		return err
	}
	if asJSON {
		return writeJSON(w, struct {
			*tenancy.Tenant
			Move *tenancycatalog.Move `json:"move,omitempty"`
		}{t, m})
	}
	if err := printTenant(w, t, false); err != nil {
		return err
	}
	if m != nil {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		printMove(tw, m)
		return tw.Flush()
	}
	return nil
}

// provision makes and migrates a provisioning tenant's schema or database with the tenant line
// of migrations.
func provision(ctx context.Context, cat *tenancycatalog.Catalog, t *tenancy.Tenant, migrations, server string, dbf dbFlags) (*tenancy.Tenant, error) {
	m, err := newMigrator(cat.Pool(), migrations, dbf)
	if err != nil {
		return nil, err
	}
	p, err := tenancyprovision.Provision(ctx, cat, t.ID, m, &tenancyprovision.ProvisionOpts{Server: server})
	if err != nil {
		return nil, fmt.Errorf("%w; %s stays provisioning (refused): fix the cause and run tenancy tenant provision %s", err, t.Slug, t.Slug)
	}
	return p, nil
}

// tenantErr says a lookup by slug failed as a person would: by slug, and whether the tenant is
// deleted (the catalog keeps deleted tenants until they are purged).
func tenantErr(ctx context.Context, cat *tenancycatalog.Catalog, err error, slug, sub string) error {
	if err != tenancy.ErrTenantNotFound {
		return err
	}
	if deleted, lerr := cat.List(ctx, &tenancycatalog.ListOpts{Status: tenancy.StatusDeleted}); lerr == nil {
		for _, t := range deleted {
			if t.Slug != slug {
				continue
			}
			if sub == "delete" {
				return &cliRefusal{fmt.Sprintf("tenant %s is already deleted (tenancy tenant delete %s --purge --yes removes its data for good)", slug, slug), err}
			}
			return &cliRefusal{fmt.Sprintf("tenant %s is deleted", slug), err}
		}
	}
	return &cliRefusal{fmt.Sprintf("no tenant %s (tenancy tenant list shows the tenants)", slug), err}
}

// cliRefusal is a message for people that errors.Is still matches with its sentinel.
type cliRefusal struct {
	msg string
	err error
}

func (r *cliRefusal) Error() string { return r.msg }
func (r *cliRefusal) Unwrap() error { return r.err }

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func printTenant(w io.Writer, t *tenancy.Tenant, asJSON bool) error {
	if asJSON {
		return writeJSON(w, t)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nslug:\t%s\nname:\t%s\nplan:\t%s\nstatus:\t%s\nisolation:\t%s\n",
		t.ID, t.Slug, t.Name, t.Plan, t.Status, t.Isolation)
	if t.Schema != "" {
		fmt.Fprintf(tw, "schema:\t%s\n", t.Schema)
	}
	if t.Database != "" {
		fmt.Fprintf(tw, "database:\t%s on server %s\n", t.Database, t.Server)
	}
	if t.ProvisionError != "" {
		fmt.Fprintf(tw, "provisioning failed:\t%s (tenancy tenant provision %s resumes it)\n", t.ProvisionError, t.Slug)
	}
	if t.RateLimit != "" {
		fmt.Fprintf(tw, "rate limit:\t%s (the tenant's own)\n", t.RateLimit)
	}
	domains := strings.Join(t.Domains, ", ")
	if domains == "" {
		domains = "(none)"
	}
	fmt.Fprintf(tw, "domains:\t%s\ncreated:\t%s\nupdated:\t%s\n", domains,
		t.CreatedAt.UTC().Format(time.RFC3339), t.UpdatedAt.UTC().Format(time.RFC3339))
	return tw.Flush()
}

// listTenants prints the tenants a page at a time (tenancycatalog.Catalog.Each), as a table or
// a JSON array, so a catalog of a million tenants is never held in memory.
func listTenants(ctx context.Context, cat *tenancycatalog.Catalog, opts *tenancycatalog.ListOpts, w io.Writer, asJSON bool) error {
	if asJSON {
		bw := bufio.NewWriter(w)
		bw.WriteString("[")
		n := 0
		err := cat.Each(ctx, opts, func(t *tenancy.Tenant) error {
			b, err := json.MarshalIndent(t, "  ", "  ")
			if err != nil {
				return err
			}
			if n > 0 {
				bw.WriteString(",")
			}
			n++
			bw.WriteString("\n  ")
			_, err = bw.Write(b)
			return err
		})
		if err != nil {
			return err
		}
		if n > 0 {
			bw.WriteString("\n")
		}
		bw.WriteString("]\n")
		return bw.Flush()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLUG\tSTATUS\tISOLATION\tPLACEMENT\tPLAN\tNAME\tID")
	rows := 0
	err := cat.Each(ctx, opts, func(t *tenancy.Tenant) error {
		place := "shared tables"
		switch {
		case t.Schema != "":
			place = t.Schema
		case t.Database != "":
			place = t.Server + "/" + t.Database
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Slug, t.Status, t.Isolation, place, t.Plan, t.Name, t.ID)
		if rows++; rows%500 == 0 { // the columns are aligned a page at a time
			return tw.Flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// refuseWithoutLines refuses to provision a schema or database tenant with no migration lines
// when the catalog's tenants already carry a tenant line: the new tenant would be active with
// none of their tables.
func refuseWithoutLines(ctx context.Context, cat *tenancycatalog.Catalog, dbf dbFlags) error {
	m, err := newMigrator(cat.Pool(), "", dbf)
	if err != nil {
		return err
	}
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	latest := 0
	for _, t := range st {
		latest = max(latest, t.Version)
	}
	if latest > 0 {
		return usagef("this catalog's tenants carry a tenant line (version %d): give --migrations DIR, the lines that migrated them (or --migrations demo), so the new tenant gets its tables", latest)
	}
	return nil
}
