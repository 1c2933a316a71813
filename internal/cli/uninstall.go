package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyriver"
)

func uninstall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("uninstall", stderr)
	dbf := databaseFlags(fs)
	yes := fs.Bool("yes", false, "confirm: remove every tenant's schema and database, the templates and the catalog, for good")
	asJSON := fs.Bool("json", false, "print what was removed as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("uninstall takes no arguments, got %q", pos)
	}
	if !*yes {
		return usagef("uninstall removes every schema, database and template database this catalog made, then the catalog, and cannot be undone: add --yes")
	}
	servers, err := dbf.serverMap()
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, *dbf.url)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	defer pool.Close()
	in, err := tenancycatalog.Installed(ctx, pool)
	if missing := noDatabase(err, *dbf.url); missing != nil {
		return fmt.Errorf("%w: %s", missing, "nothing to uninstall")
	}
	if err != nil {
		return err
	}
	if !in.Catalog {
		return errors.New("this database has no catalog: nothing to uninstall")
	}
	cat, err := tenancycatalog.NewCatalog(pool, &tenancycatalog.CatalogConfig{Servers: servers})
	if err != nil {
		return err
	}
	rep, err := tenancyprovision.Uninstall(ctx, cat)
	if err == nil {
		err = tenancyriver.Uninstall(ctx, pool) // River's schema and its jobs
	}
	if rep != nil && *asJSON {
		if werr := writeJSON(stdout, rep); err == nil {
			err = werr
		}
	} else if rep != nil {
		fmt.Fprintf(stdout, "removed %d schema(s), %d tenant database(s), %d template database(s)", len(rep.Schemas), len(rep.Databases), len(rep.Templates))
		if err == nil {
			fmt.Fprint(stdout, ", and the catalog")
		}
		fmt.Fprintln(stdout)
	}
	return err
}
