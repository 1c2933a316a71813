// Command notes is an example application on the tenancy toolkit: a notes service whose tenants
// live in any of the three isolation models — shared tables, a schema of their own, a database of
// their own — with the same code. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/tenancyaudit"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

func main() {
	dbURL := flag.String("database-url", envOr("NOTES_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notes?sslmode=disable"),
		"the catalog's database, as the migration role (env NOTES_DATABASE_URL)")
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dbURL, *addr, log); err != nil {
		fmt.Fprintln(os.Stderr, "notes:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// run wires the toolkit: the catalog (as the migration role), the audit, the runtime pool (as
// tenancy_app) and the router for database tenants, the cached tenant lookup kept current by the
// catalog's notifications, and the tenant middleware in front of the application.
func run(ctx context.Context, dbURL, addr string, log *slog.Logger) error {
	admin, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer admin.Close()
	catalog, err := tenancycatalog.NewCatalog(admin, nil)
	if err != nil {
		return err
	}
	// Refuse to serve on an isolation hole, as `tenancy doctor` would report it.
	rep, err := tenancyaudit.Audit(ctx, catalog, nil)
	if err != nil {
		return fmt.Errorf("audit (run `tenancy migrate --shared --tenant --migrations ./migrations` first): %w", err)
	}
	if !rep.OK() {
		rep.WriteText(os.Stderr)
		return errors.New("refusing to serve: isolation is at risk")
	}
	key, err := catalog.BindingKey(ctx)
	if err != nil {
		return err
	}
	runtimeURL, err := tenancypgx.RuntimeURL(dbURL)
	if err != nil {
		return err
	}
	runtime, err := tenancypgx.NewRuntimePool(ctx, runtimeURL, &tenancypgx.RuntimePoolOpts{Logger: log})
	if err != nil {
		return err
	}
	defer runtime.Close()
	router, err := tenancyrouter.New(&tenancyrouter.Config{Servers: tenancycatalog.Servers{tenancycatalog.DefaultServer: runtimeURL}, Logger: log})
	if err != nil {
		return err
	}
	defer router.Close()
	lookups, err := tenancycache.NewLookup(catalog, nil)
	if err != nil {
		return err
	}
	go catalog.Watch(ctx, lookups, nil) // suspensions and deletions reach this instance at once
	// Session defaults SQL inside a transaction could give tenancy_app are removed; a changed
	// password is reported. Run it in one instance, on the migration role's pool.
	go func() {
		if err := tenancypgx.GuardRuntimeRole(ctx, catalog, &tenancypgx.GuardOpts{Logger: log}); err != nil {
			log.Error("notes: the runtime role's guard stopped", "err", err)
		}
	}()
	db, err := tenancypgx.New(runtime, &tenancypgx.Config{Key: key, Router: router, Store: lookups})
	if err != nil {
		return err
	}
	middleware, err := tenancyhttp.Middleware(lookups, &tenancyhttp.Config{
		Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("localhost")}, // acme.localhost:8081
		Logger:    log,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: middleware((&Notes{db: db, shared: runtime}).Routes(log)), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Info("notes: serving", "addr", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
