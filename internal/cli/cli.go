package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyriver"
)

// DefaultDatabaseURL is the local PostgreSQL as postgres, database tenancy (created if missing).
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/tenancy?sslmode=disable"

const usage = `tenancy — multi-tenant toolkit: reference service and tenant administration

Usage:
  tenancy serve [--demo] [flags]          run the reference service
  tenancy tenant create SLUG [flags]      register a tenant
  tenancy tenant list [--json]            list tenants
  tenancy tenant show SLUG [--json]       show one tenant
  tenancy tenant update SLUG [--name N] [--plan P]
  tenancy tenant suspend|resume|delete SLUG
  tenancy tenant delete SLUG --purge --yes   remove a deleted tenant's data for good
  tenancy tenant provision SLUG           resume a provisioning that failed
  tenancy tenant set-limit SLUG 500/min   the tenant's own request rate ("plan" for its plan's)
  tenancy tenant domain add|remove SLUG DOMAIN
  tenancy tenant move SLUG --to shared|schema|database [--server ALIAS]   move a live tenant
  tenancy tenant move SLUG --resume|--abort|--finalize                     go on with its move
  tenancy migrate --shared                the catalog and the shared line
  tenancy migrate --tenant [--only SLUG]... [--workers N] [--dry-run] [--json]   the tenant line: shared, schema and database tenants
  tenancy migrate status [--json]         per tenant: version, pending, last error
  tenancy doctor [--json] [--ignore K:O --reason R]   audit the catalog's and tenant databases for isolation holes
  tenancy uninstall --yes                 remove every schema, database and template this catalog made, then the catalog
  tenancy help                            this text

Every command reads --database-url (or TENANCY_DATABASE_URL); the default is the local
PostgreSQL: ` + DefaultDatabaseURL + `
Run "tenancy COMMAND -h" for a command's flags.
`

// Run runs the command line args (without the program name) and returns the exit code: 0 on
// success, 1 when the command failed, 2 when it was called wrongly. Output goes to stdout, errors
// (one line each) to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := checkEnv()
	if err == nil {
		err = run(ctx, args, stdout, stderr)
	}
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(helpText)):
		var h helpText
		errors.As(err, &h)
		fmt.Fprint(stdout, string(h))
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "tenancy: %s\n", oneLine(err))
		return 2
	default:
		fmt.Fprintf(stderr, "tenancy: %s\n", oneLine(err))
		return 1
	}
}

// envVars are the environment variables the commands read. One that is set but empty is a
// mistake to name, never a reason to fall back to the default (an empty TENANCY_DATABASE_URL must
// not mean the local database).
var envVars = []string{"TENANCY_ADDR", "TENANCY_ADMIN_TOKEN", "TENANCY_BASE_DOMAIN", "TENANCY_CONCURRENCY",
	"TENANCY_DATABASE_URL", "TENANCY_INSTANCES", "TENANCY_MIGRATIONS", "TENANCY_PLAN_LIMITS", "TENANCY_PPROF_ADDR", "TENANCY_REDIS_PREFIX",
	"TENANCY_REDIS_URL", "TENANCY_RUNTIME_SERVERS", "TENANCY_RUNTIME_URL", "TENANCY_SERVERS"}

func checkEnv() error {
	for _, name := range envVars {
		if v, ok := os.LookupEnv(name); ok && strings.TrimSpace(v) == "" {
			return usagef("%s is set but empty: unset it for the default, or give it a value", name)
		}
	}
	return nil
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + " (see tenancy help)" }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// oneLine is err on one line, without the prefixes of the toolkit's packages (the line already
// starts with "tenancy: ").
func oneLine(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	for {
		trimmed := msg
		for _, p := range []string{"tenancy: ", "tenancypgx: ", "tenancymigrate: ", "tenancyaudit: ", "tenancyhttp: ", "tenancyrate: "} {
			trimmed = strings.TrimPrefix(trimmed, p)
		}
		if trimmed == msg {
			return msg
		}
		msg = trimmed
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "tenant", "tenants":
		return tenant(ctx, args[1:], stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr)
	case "doctor":
		return doctor(ctx, args[1:], stdout, stderr)
	case "uninstall":
		return uninstall(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usagef("unknown command %q", args[0])
}

// synopses are each command's arguments, for its -h.
var synopses = map[string]string{
	"serve":            "[--demo] [flags]",
	"tenant create":    "SLUG [--name N] [--plan P] [--isolation shared|schema|database] [--server ALIAS] [--domain D]... [--migrations DIR|demo]",
	"tenant list":      "[--json] [--status S] [--all]",
	"tenant show":      "SLUG [--json]",
	"tenant update":    "SLUG [--name N] [--plan P]",
	"tenant suspend":   "SLUG",
	"tenant resume":    "SLUG",
	"tenant delete":    "SLUG [--purge --yes]",
	"tenant provision": "SLUG [--server ALIAS] [--migrations DIR|demo]",
	"tenant set-limit": "SLUG LIMIT (500/min, 20/s, 10000/h, or \"plan\" for the plan's)",
	"tenant domain":    "add|remove SLUG DOMAIN",
	"tenant move":      "SLUG --to shared|schema|database [--server ALIAS] [--grace D] [--max-pause D] [--migrations DIR|demo] [--json]\n       tenancy tenant move SLUG --resume|--abort|--finalize [--migrations DIR|demo] [--json]",
	"migrate":          "--shared | --tenant [--only SLUG]... [--workers N] [--dry-run] [--json] [--migrations DIR|demo]",
	"migrate status":   "[--json] [--migrations DIR|demo]",
	"uninstall":        "--yes [--json]",
	"doctor":           "[--json] [--role R] [--login-role R] [--tenant-column C] [--workers N] [--ignore KIND:OBJECT... --reason TEXT] [--unignore KIND:OBJECT]...",
}

// newFlags returns a flag set that writes its usage — the command's arguments, then its flags —
// to stderr and reports errors as usage errors.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tenancy "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a wrong flag is one line, said by Run; -h is printed by Run to stdout
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: tenancy %s %s\n\nflags:\n", name, synopses[name])
		fs.PrintDefaults()
	}
	return fs
}

// helpText is a command's usage, asked for with -h: Run prints it to stdout and exits 0.
type helpText string

func (h helpText) Error() string        { return "help requested" }
func (h helpText) Is(target error) bool { return target == flag.ErrHelp }

// parse parses args, allowing flags after positional arguments (tenancy tenant show acme --json).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				var b strings.Builder
				fs.SetOutput(&b)
				fs.Usage()
				return nil, helpText(b.String())
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// dbFlags are the database settings every command reads.
type dbFlags struct {
	url, servers *string
}

func databaseFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		url: fs.String("database-url", env("TENANCY_DATABASE_URL", DefaultDatabaseURL),
			"PostgreSQL URL of the catalog (env TENANCY_DATABASE_URL)"),
		servers: fs.String("servers", env("TENANCY_SERVERS", ""),
			"servers of database tenants, alias=url,… (env TENANCY_SERVERS); default: \"default\", the catalog's server"),
	}
}

// serverMap returns the configured servers, or the catalog's server as "default".
func (f dbFlags) serverMap() (tenancycatalog.Servers, error) {
	if *f.servers == "" {
		return tenancycatalog.Servers{tenancycatalog.DefaultServer: *f.url}, nil
	}
	return tenancycatalog.ParseServers(*f.servers)
}

// openCatalog opens the catalog of the database setting, applying the catalog migrations it
// lacks. With create (tenant create, as migrate and serve) it makes the database and the catalog
// when they are missing; every other command refuses a database without a catalog, so that a
// mistyped --database-url creates nothing.
func openCatalog(ctx context.Context, f dbFlags, create bool) (*tenancycatalog.Catalog, func(), error) {
	servers, err := f.serverMap()
	if err != nil {
		return nil, nil, err
	}
	if !create {
		if err := requireCatalog(ctx, *f.url); err != nil {
			return nil, nil, err
		}
	}
	pool, _, err := prepareDatabase(ctx, *f.url)
	if err != nil {
		return nil, nil, err
	}
	cat, err := tenancycatalog.NewCatalog(pool, &tenancycatalog.CatalogConfig{Servers: servers})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return cat, pool.Close, nil
}

// requireCatalog fails unless the database at url exists and holds a tenant catalog.
func requireCatalog(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if missing := noDatabase(err, url); missing != nil {
		return fmt.Errorf("%w: `tenancy migrate --shared` or `tenancy serve` creates it with its catalog", missing)
	}
	if err != nil {
		return fmt.Errorf("cannot reach the catalog's database (--database-url, TENANCY_DATABASE_URL): %w", err)
	}
	defer conn.Close(ctx)
	in, err := tenancycatalog.Installed(ctx, conn)
	if err != nil {
		return err
	}
	if !in.Catalog {
		return fmt.Errorf("the database %q on %s holds no tenant catalog (--database-url, TENANCY_DATABASE_URL): `tenancy migrate --shared` or `tenancy serve` makes one", cfg.Database, cfg.Host)
	}
	return nil
}

// noDatabase returns, when err says the database of url does not exist, an error that names it
// and the setting; nil otherwise.
func noDatabase(err error, url string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name: no such database
		return nil
	}
	database, host := "", ""
	if cfg, err := pgx.ParseConfig(url); err == nil {
		database, host = cfg.Database, cfg.Host
	}
	return fmt.Errorf("there is no database %q on %s (--database-url, TENANCY_DATABASE_URL)", database, host)
}

// prepareDatabase creates the database if missing and applies the catalog migrations.
func prepareDatabase(ctx context.Context, url string) (*pgxpool.Pool, []int, error) {
	if _, err := tenancyprovision.EnsureDatabase(ctx, url); err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("database URL: %w", err)
	}
	applied, err := tenancycatalog.MigrateCatalog(ctx, pool)
	if err == nil { // River's tables, for the jobs (tenancyriver)
		_, err = tenancyriver.Migrate(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, applied, nil
}
