package tenancycli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenancy/tenancypgx"
)

// errAuditFailed is returned when the doctor found something; the report says what.
var errAuditFailed = errors.New("isolation is at risk: see the findings above")

func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("doctor", stderr)
	dbURL := databaseFlags(fs).url
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
	if *asJSON {
		err = writeJSON(stdout, rep)
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
