package tenancyaudit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyprovision"
)

// place is one database to audit.
type place struct {
	server, database string
	tenants          []string
}

// Audit audits the catalog's database and the own database of every database-model tenant in
// it, several at once (Options.Workers), and reports every finding with the server and database
// it is in. Findings the catalog records as accepted (Catalog.IgnoreFinding), or named in
// opts.Ignore, are reported apart and do not fail the audit. The catalog's pool and the servers'
// URLs must log in as the migration role. An error means the audit could not run, not that it
// found something.
func Audit(ctx context.Context, cat *tenancycatalog.Catalog, opts *Options) (*Report, error) {
	if cat == nil {
		return nil, errors.New("tenancyaudit: Audit needs a catalog")
	}
	o := opts.withDefaults()
	ignores, err := cat.AuditIgnores(ctx)
	if err != nil {
		return nil, err
	}
	o.Ignore = append(append([]tenancycatalog.AuditIgnore{}, o.Ignore...), ignores...)
	// Only database tenants have a database of their own to audit (and to claim): a catalog of a
	// million shared tenants reads none of them.
	tenants, err := cat.List(ctx, &tenancycatalog.ListOpts{IncludeDeleted: true, Isolation: tenancy.IsolationDatabase})
	if err != nil {
		return nil, err
	}
	claimed := map[[2]string]bool{}
	for _, t := range tenants {
		if t.Database != "" {
			claimed[[2]string{t.Server, t.Database}] = true
		}
	}
	live := tenants[:0:0]
	for _, t := range tenants {
		if t.Status != tenancy.StatusDeleted {
			live = append(live, t)
		}
	}
	tenants = live
	byPlace := map[[2]string]*place{}
	var places []*place
	for _, t := range tenants {
		if t.Isolation != tenancy.IsolationDatabase || t.Database == "" || t.Status == tenancy.StatusProvisioning {
			continue
		}
		k := [2]string{t.Server, t.Database}
		if byPlace[k] == nil {
			byPlace[k] = &place{server: t.Server, database: t.Database}
			places = append(places, byPlace[k])
		}
		byPlace[k].tenants = append(byPlace[k].tenants, t.Slug)
	}
	servers := cat.Servers()
	catalogServer := tenancycatalog.DefaultServer
	reports := make([]DatabaseReport, len(places)+1)
	found := make([][]Finding, len(places)+1)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Workers)
	g.Go(func() error {
		d, fs, err := auditOne(gctx, cat.Pool(), catalogServer, o)
		reports[0], found[0] = d, fs
		return err
	})
	for i, p := range places {
		g.Go(func() error {
			cfg, err := servers.ConnConfig(p.server, p.database)
			if err != nil {
				return fmt.Errorf("tenancyaudit: database %s of %v: %w", p.database, p.tenants, err)
			}
			conn, err := pgx.ConnectConfig(gctx, cfg)
			if err != nil {
				return fmt.Errorf("tenancyaudit: database %s on %s (tenant %v): %w", p.database, p.server, p.tenants, err)
			}
			defer conn.Close(context.WithoutCancel(gctx))
			d, fs, err := auditOne(gctx, conn, p.server, o)
			d.Tenants = p.tenants
			sort.Strings(d.Tenants)
			reports[i+1], found[i+1] = d, fs
			return err
		})
	}
	ownTemplates, err := tenancyprovision.TemplatePrefix(ctx, cat)
	if err != nil {
		return nil, err
	}
	unclaimed := make([][]UnclaimedDatabase, len(servers.Aliases()))
	for i, alias := range servers.Aliases() {
		g.Go(func() error {
			u, err := unclaimedOn(gctx, servers, alias, claimed, ownTemplates)
			unclaimed[i] = u
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	rep := &Report{Databases: reports, Findings: []Finding{}, Ignored: []Finding{}, Unclaimed: []UnclaimedDatabase{}}
	for _, u := range unclaimed {
		rep.Unclaimed = append(rep.Unclaimed, u...)
	}
	for _, fs := range found {
		rep.add(fs, o.Ignore)
	}
	rep.sort()
	return rep, nil
}

// unclaimedOn lists the databases on the server alias named like a tenant's that no tenant in
// claimed has, and the template databases there that are not this catalog's (own is the prefix of
// its templates' names; it drops its superseded ones itself).
func unclaimedOn(ctx context.Context, servers tenancycatalog.Servers, alias string, claimed map[[2]string]bool, own string) ([]UnclaimedDatabase, error) {
	cfg, err := servers.ConnConfig(alias, "postgres")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tenancyaudit: server %s: %w", alias, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT datname::text, datname ~ '^tenancy_template_' FROM pg_database
		WHERE datname ~ '^tenant_[0-9a-f]{32}$' OR datname ~ '^tenancy_template_[0-9a-f_]+$' ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	var out []UnclaimedDatabase
	for rows.Next() {
		var name string
		var template bool
		if err := rows.Scan(&name, &template); err != nil {
			rows.Close()
			return nil, err
		}
		switch {
		case template && strings.HasPrefix(name, own):
		case template:
			out = append(out, UnclaimedDatabase{Server: alias, Database: name, Kind: "template"})
		case !claimed[[2]string{alias, name}]:
			out = append(out, UnclaimedDatabase{Server: alias, Database: name, Kind: "tenant"})
		}
	}
	return out, rows.Err()
}
