package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gotenancy/tenancy/tenancymigrate"
)

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "status" {
		return migrateStatus(ctx, args[1:], stdout, stderr)
	}
	fs := newFlags("migrate", stderr)
	dbf := databaseFlags(fs)
	migrations := migrationsFlag(fs)
	shared := fs.Bool("shared", false, "create or upgrade the catalog and apply the shared line")
	tenant := fs.Bool("tenant", false, "apply the tenant line to the shared schema, every schema tenant's schema and every database tenant's database")
	var slugs listFlag
	fs.Var(&slugs, "only", "with --tenant: only this schema or database tenant, by slug (repeatable)")
	fs.Var(&slugs, "schema", "the former name of --only")
	workers := fs.Int("workers", 0, "tenants migrated at once (default: twice the CPUs)")
	dryRun := fs.Bool("dry-run", false, "say what would be applied, change nothing")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usagef("migrate takes no arguments, got %q", pos)
	case !*shared && !*tenant && len(slugs) == 0:
		return usagef("migrate needs --shared, --tenant or both (or migrate status)")
	case len(slugs) > 0 && !*tenant:
		return usagef("--only goes with --tenant")
	case *workers < 0:
		return usagef("--workers must be positive")
	}
	if _, err := loadLines(*migrations); err != nil {
		return err
	}
	if *migrations == "" {
		fmt.Fprintln(stderr, noLinesNote)
	}
	pool, applied, err := prepareDatabase(ctx, *dbf.url)
	if err != nil {
		return err
	}
	defer pool.Close()
	m, err := newMigrator(pool, *migrations, dbf)
	if err != nil {
		return err
	}
	progress, done := progressPrinter(stderr)
	res, err := m.Migrate(ctx, &tenancymigrate.Opts{Shared: *shared, Tenant: *tenant, Slugs: slugs,
		DryRun: *dryRun, Workers: *workers, Progress: progress})
	done()
	var merr *tenancymigrate.MigrateError
	if err != nil && !errors.As(err, &merr) {
		return err
	}
	if *asJSON {
		if werr := writeJSON(stdout, res); werr != nil {
			return werr
		}
	} else {
		printMigrateResult(stdout, res, applied, *shared)
	}
	if merr != nil {
		return fmt.Errorf("%d tenant(s) failed to migrate; the others were migrated (tenancy migrate status shows each)", len(merr.Failed))
	}
	return nil
}

func printMigrateResult(w io.Writer, res *tenancymigrate.Result, catalogApplied []int, shared bool) {
	verb := "applied"
	if res.DryRun {
		verb = "would apply"
	}
	if shared {
		if len(catalogApplied) > 0 {
			fmt.Fprintf(w, "catalog: applied versions %v\n", catalogApplied)
		} else {
			fmt.Fprintln(w, "catalog: up to date")
		}
		if len(res.SharedApplied) > 0 {
			fmt.Fprintf(w, "shared line: %s versions %v\n", verb, res.SharedApplied)
		} else {
			fmt.Fprintln(w, "shared line: up to date")
		}
	}
	var migrated, failed, skipped int
	for _, t := range res.Targets {
		switch {
		case t.Err != nil:
			failed++
			fmt.Fprintf(w, "FAIL %s (stays at version %d): %v\n", t.Name, t.From, t.Err)
		case t.Skipped:
			skipped++
			fmt.Fprintf(w, "SKIP %s: another runner is migrating it\n", t.Name)
		default:
			migrated++
			if res.DryRun {
				fmt.Fprintf(w, "%s: %s %v (version %d → %d)\n", t.Name, verb, t.Applied, t.From, t.To)
			}
		}
	}
	if len(res.Targets) == 0 && !shared {
		fmt.Fprintln(w, "tenant line: nothing pending")
		return
	}
	if len(res.Targets) > 0 {
		fmt.Fprintf(w, "tenant line: %d target(s) %s, %d failed, %d skipped, in %v\n",
			migrated, map[bool]string{true: "to migrate", false: "migrated"}[res.DryRun], failed, skipped, res.Elapsed.Round(time.Millisecond))
	}
}

// progressPrinter reports progress on w: a bar redrawn in place on a terminal, a line every two
// seconds otherwise. done ends the report.
func progressPrinter(w io.Writer) (progress func(tenancymigrate.Progress), done func()) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	var mu sync.Mutex
	var last time.Time
	drawn := false
	interval := 2 * time.Second
	if tty {
		interval = 100 * time.Millisecond
	}
	progress = func(p tenancymigrate.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < interval && p.Done != p.Total {
			return
		}
		last = time.Now()
		if tty {
			const width = 30
			filled := width * p.Done / max(p.Total, 1)
			fmt.Fprintf(w, "\r[%s%s] %d/%d tenants, %d failed, %d skipped", strings.Repeat("#", filled),
				strings.Repeat(".", width-filled), p.Done, p.Total, p.Failed, p.Skipped)
			drawn = true
			return
		}
		fmt.Fprintf(w, "migrate: %d/%d tenants done, %d failed, %d skipped\n", p.Done, p.Total, p.Failed, p.Skipped)
	}
	done = func() {
		mu.Lock()
		defer mu.Unlock()
		if drawn {
			fmt.Fprintln(w)
		}
	}
	return progress, done
}

func migrateStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate status", stderr)
	dbf := databaseFlags(fs)
	migrations := migrationsFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("migrate status takes no arguments, got %q", pos)
	}
	cat, closeDB, err := openCatalog(ctx, dbf, false)
	if err != nil {
		return err
	}
	defer closeDB()
	m, err := newMigrator(cat.Pool(), *migrations, dbf)
	if err != nil {
		return err
	}
	if *migrations == "" {
		fmt.Fprintln(stderr, "tenancy: no --migrations given: versions are shown without what is pending (give --migrations DIR, or demo)")
	}
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	pending := func(n int) string {
		if *migrations == "" {
			return "?" // no line given: what is pending is unknown
		}
		return strconv.Itoa(n)
	}
	fmt.Fprintf(tw, "TARGET\tISOLATION\tVERSION\tPENDING\tLAST ERROR\n")
	behind := 0
	var ahead []string
	for _, t := range st {
		if t.Pending > 0 {
			behind++
		}
		if t.Version > m.Latest() {
			ahead = append(ahead, t.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.Name, t.Isolation, t.Version, pending(t.Pending), t.LastError)
	}
	if *migrations == "" {
		fmt.Fprintf(tw, "\n%d target(s); pending unknown without --migrations\n", len(st))
	} else {
		fmt.Fprintf(tw, "\n%d of %d target(s) behind version %d\n", behind, len(st), m.Latest())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ahead) > 0 && m.Latest() > 0 {
		// A newer release migrated them, or --migrations names the wrong directory.
		fmt.Fprintf(stderr, "tenancy: warning: %d target(s) ahead of the %d migration(s) known here (%s): is --migrations the line that migrated them?\n",
			len(ahead), m.Latest(), strings.Join(ahead, ", "))
	}
	return nil
}
