package tenancycli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tenancy/tenancypgx"
)

// errAuditFailed is returned when the doctor found something; the report says what.
var errAuditFailed = errors.New("isolation is at risk: see the findings above")

func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("doctor", stderr)
	dbf := databaseFlags(fs)
	dbURL := dbf.url
	asJSON := fs.Bool("json", false, "print the report as JSON")
	role := fs.String("role", tenancypgx.DefaultRole, "the runtime role tenant transactions run as")
	poolRole := fs.Bool("login-role-is-runtime", false, "audit the login role of --database-url as the runtime role")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("doctor takes no arguments, got %q", pos)
	}
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	defer pool.Close()
	opts := &tenancypgx.AuditOpts{Role: *role, PoolRoleIsRuntime: *poolRole}
	if *poolRole {
		opts.Role = ""
	}
	rep, err := tenancypgx.Audit(ctx, pool, opts)
	if err != nil {
		return err
	}
	out := doctorReport{AuditReport: rep}
	if out.TenantDatabases, err = auditTenantDatabases(ctx, pool, dbf, opts); err != nil {
		return err
	}
	if *asJSON {
		err = writeJSON(stdout, out)
	} else {
		err = rep.WriteText(stdout)
		for _, r := range out.TenantDatabases {
			if err == nil {
				err = r.WriteText(stdout)
			}
		}
	}
	if err != nil {
		return err
	}
	if !out.ok() {
		return errAuditFailed
	}
	return nil
}

// doctorReport is the catalog database's audit and, below it, each tenant database's.
type doctorReport struct {
	*tenancypgx.AuditReport
	TenantDatabases []*tenancypgx.AuditReport `json:"tenant_databases,omitempty"`
}

func (d doctorReport) ok() bool {
	for _, r := range d.TenantDatabases {
		if !r.OK() {
			return false
		}
	}
	return d.OK()
}

// auditTenantDatabases audits the database of every database-model tenant in the catalog (none
// when the database has no catalog).
func auditTenantDatabases(ctx context.Context, pool *pgxpool.Pool, dbf dbFlags, opts *tenancypgx.AuditOpts) ([]*tenancypgx.AuditReport, error) {
	var hasCatalog bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('tenancy.tenants') IS NOT NULL`).Scan(&hasCatalog); err != nil || !hasCatalog {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT server, database_name FROM tenancy.tenants
		WHERE database_name IS NOT NULL AND status NOT IN ('deleted', 'provisioning') ORDER BY slug`)
	if err != nil {
		return nil, err
	}
	places, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (p [2]string, err error) {
		err = r.Scan(&p[0], &p[1])
		return p, err
	})
	if err != nil || len(places) == 0 {
		return nil, err
	}
	servers, err := dbf.serverMap()
	if err != nil {
		return nil, err
	}
	var reports []*tenancypgx.AuditReport
	for _, p := range places {
		cfg, err := servers.PoolConfig(p[0], p[1])
		if err != nil {
			return nil, err
		}
		cfg.MaxConns = 1
		tp, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		rep, err := tenancypgx.Audit(ctx, tp, opts)
		tp.Close()
		if err != nil {
			return nil, fmt.Errorf("tenant database %s on %s: %w", p[1], p[0], err)
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// auditOrRefuse runs the doctor's audit before serving and refuses to serve when it finds anything.
func auditOrRefuse(ctx context.Context, pool *pgxpool.Pool, stderr io.Writer) error {
	rep, err := tenancypgx.Audit(ctx, pool, nil)
	if err != nil {
		return err
	}
	if rep.OK() {
		return nil
	}
	_ = rep.WriteText(stderr)
	return fmt.Errorf("refusing to serve: %w (tenancy doctor repeats this audit)", errAuditFailed)
}
