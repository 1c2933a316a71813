package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/tenancyaudit"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// errAuditFailed is returned when the doctor found something; the report says what.
var errAuditFailed = errors.New("isolation is at risk: see the findings above")

func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("doctor", stderr)
	dbf := databaseFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	role := fs.String("role", tenancycatalog.DefaultRole, "the runtime role tenant transactions run as")
	loginRole := fs.String("login-role", "", "the role the runtime pool logs in as, when it is not --role (checked that it cannot become a privileged role)")
	column := fs.String("tenant-column", "tenant_id", "the column that says whose a row is: a table with it is a tenant table")
	workers := fs.Int("workers", 4, "databases audited at once")
	var ignore, unignore listFlag
	fs.Var(&ignore, "ignore", "accept the finding KIND:OBJECT, with --reason; kept in the catalog, so serve accepts it too (repeatable)")
	reason := fs.String("reason", "", "why the findings named by --ignore are accepted (required with --ignore)")
	fs.Var(&unignore, "unignore", "take back an accepted finding KIND:OBJECT (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("doctor takes no arguments, got %q", pos)
	}
	if *workers < 1 {
		return usagef("--workers must be at least 1")
	}
	if len(ignore) > 0 && *reason == "" {
		return usagef("--ignore needs --reason: say why the finding is accepted")
	}
	if *reason != "" && len(ignore) == 0 {
		return usagef("--reason goes with --ignore KIND:OBJECT")
	}
	type key struct{ kind, object string }
	var toIgnore, toUnignore []key
	for _, list := range []struct {
		in  listFlag
		out *[]key
	}{{ignore, &toIgnore}, {unignore, &toUnignore}} {
		for _, s := range list.in {
			k, o, err := tenancycatalog.ParseAuditKey(s)
			if err != nil {
				return usagef("%v", err)
			}
			*list.out = append(*list.out, key{k, o})
		}
	}
	pool, err := pgxpool.New(ctx, *dbf.url)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	defer pool.Close()
	opts := &tenancyaudit.Options{Role: *role, LoginRole: *loginRole, TenantColumn: *column, Workers: *workers}

	in, err := tenancycatalog.Installed(ctx, pool)
	if missing := noDatabase(err, *dbf.url); missing != nil {
		return fmt.Errorf("%w: %s", missing, "nothing to audit")
	}
	if err != nil {
		return err
	}
	hasCatalog, hasSchema := in.Catalog && in.AuditIgnores, in.Schema
	if !hasSchema {
		return errors.New("this database has no tenancy catalog: nothing to audit (tenancy migrate --shared installs it)")
	}
	var rep *tenancyaudit.Report
	if !hasCatalog {
		if len(toIgnore)+len(toUnignore) > 0 {
			return errors.New("--ignore and --unignore keep accepted findings in the catalog, and this database has none (or an old one): run `tenancy migrate --shared` first")
		}
		if rep, err = tenancyaudit.AuditDatabase(ctx, pool, opts); err != nil {
			return err
		}
	} else {
		servers, err := dbf.serverMap()
		if err != nil {
			return err
		}
		cat, err := tenancycatalog.NewCatalog(pool, &tenancycatalog.CatalogConfig{Servers: servers})
		if err != nil {
			return err
		}
		for _, k := range toIgnore {
			if err := cat.IgnoreFinding(ctx, k.kind, k.object, *reason); err != nil {
				return err
			}
		}
		for _, k := range toUnignore {
			ok, err := cat.UnignoreFinding(ctx, k.kind, k.object)
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintf(stderr, "tenancy doctor: %s:%s was not accepted\n", k.kind, k.object)
			}
		}
		if rep, err = tenancyaudit.Audit(ctx, cat, opts); err != nil {
			return err
		}
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return errAuditFailed
	}
	return nil
}

// auditOrRefuse runs the doctor's audit — the catalog's database and every database tenant's,
// accepted findings respected — before serving, and refuses to serve when it finds anything (it
// logs that it passed otherwise).
func auditOrRefuse(ctx context.Context, cat *tenancycatalog.Catalog, loginRole string, log *slog.Logger, stderr io.Writer) error {
	rep, err := tenancyaudit.Audit(ctx, cat, &tenancyaudit.Options{LoginRole: loginRole})
	if err != nil {
		return err
	}
	if rep.OK() {
		log.Info("tenancy: isolation audit passed (tenancy doctor repeats it)", "databases", len(rep.Databases), "accepted_findings", len(rep.Ignored))
		return nil
	}
	_ = rep.WriteText(stderr)
	return fmt.Errorf("refusing to serve: %w (tenancy doctor repeats this audit)", errAuditFailed)
}
