package tenancypgx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy/tenancycatalog"
)

// GuardOpts tunes GuardRuntimeRole. A nil *GuardOpts means the defaults.
type GuardOpts struct {
	// Role is the runtime role to watch. Defaults to tenancycatalog.DefaultRole.
	Role string
	// Interval is how often the role is looked at. Defaults to 2 seconds.
	Interval time.Duration
	// Logger receives what the guard removes and what it finds changed. Defaults to slog.Default().
	Logger *slog.Logger
	// OnPasswordChange is called when the role's password changed since the guard started (only a
	// superuser can see it). Defaults to nil: logged at error level.
	OnPasswordChange func()
}

// GuardResult is what one look at the runtime role found.
type GuardResult struct {
	// DefaultsRemoved counts the session defaults (ALTER ROLE … SET) of the role, in any
	// database, that were removed.
	DefaultsRemoved int
	// PasswordChanged says the role's password is not what it was when the guard started.
	PasswordChanged bool
}

// GuardRuntimeRole watches the runtime role from c's pool (the migration role) until ctx
// ends. PostgreSQL lets any role change its own password and session defaults (ALTER ROLE
// CURRENT_USER …); tenancypgx refuses and rolls back a unit of work that does so, and removes
// defaults it made outside its transaction — unless the unit's connection is cut first. Defaults
// left that way reach every new connection of every tenant, and some (local_preload_libraries)
// stop connections from starting at all, so only a privileged role can remove them: the guard
// does, every Interval. A changed password cannot be told from an operator's rotation: the guard
// reports it (OnPasswordChange, or the log); only a superuser can see it. It returns nil when ctx
// ends, and an error when the role cannot be looked at.
func GuardRuntimeRole(ctx context.Context, c *tenancycatalog.Catalog, opts *GuardOpts) error {
	o := GuardOpts{Role: tenancycatalog.DefaultRole, Interval: 2 * time.Second, Logger: slog.Default()}
	if opts != nil {
		if opts.Role != "" {
			o.Role = opts.Role
		}
		if opts.Interval > 0 {
			o.Interval = opts.Interval
		}
		if opts.Logger != nil {
			o.Logger = opts.Logger
		}
		o.OnPasswordChange = opts.OnPasswordChange
	}
	g := &guard{c: c, o: o}
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		if _, err := g.look(ctx); err != nil && ctx.Err() == nil {
			o.Logger.Warn("tenancy: cannot look at the runtime role", "role", o.Role, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// GuardRuntimeRoleOnce looks at the runtime role once, as GuardRuntimeRole does every interval,
// without a password baseline.
func GuardRuntimeRoleOnce(ctx context.Context, c *tenancycatalog.Catalog, opts *GuardOpts) (*GuardResult, error) {
	o := GuardOpts{Role: tenancycatalog.DefaultRole, Logger: slog.Default()}
	if opts != nil {
		if opts.Role != "" {
			o.Role = opts.Role
		}
		if opts.Logger != nil {
			o.Logger = opts.Logger
		}
	}
	return (&guard{c: c, o: o}).look(ctx)
}

// querierExecer is a pool or a connection.
type querierExecer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// removeDefaultsOn removes the role's session defaults on the server alias, through the catalog's
// pool for the default server and a maintenance connection for another.
func (g *guard) removeDefaultsOn(ctx context.Context, alias string, dbs []string) (int, error) {
	if alias == tenancycatalog.DefaultServer {
		return g.removeDefaults(ctx, g.c.Pool(), alias, dbs)
	}
	conn, err := g.c.Maintenance(ctx, alias)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return g.removeDefaults(ctx, conn, alias, dbs)
}

// removeDefaults removes the role's session defaults on one server: for all databases, and for dbs.
func (g *guard) removeDefaults(ctx context.Context, q querierExecer, server string, dbs []string) (int, error) {
	role := pgx.Identifier{g.o.Role}.Sanitize()
	rows, err := q.Query(ctx, roleDefaultsOfSQL, g.o.Role, dbs)
	if err != nil {
		return 0, err
	}
	type place struct {
		OID  uint32
		Name string
	}
	places, err := pgx.CollectRows(rows, pgx.RowToStructByPos[place])
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, p := range places {
		stmt := "ALTER ROLE " + role + " RESET ALL"
		if p.OID != 0 {
			stmt = "ALTER ROLE " + role + " IN DATABASE " + pgx.Identifier{p.Name}.Sanitize() + " RESET ALL"
		}
		if err := execRetryingConflicts(ctx, q, stmt); err != nil {
			return removed, fmt.Errorf("remove the session defaults of %s on %s: %w", role, server, err)
		}
		removed++
		where := p.Name
		if p.OID == 0 {
			where = "(all databases)"
		}
		g.o.Logger.Warn("tenancy: removed session defaults of the runtime role, which must have none: SQL in a unit of work can set them, and every new connection would start with them",
			"role", g.o.Role, "server", server, "database", where)
	}
	return removed, nil
}

type guard struct {
	c        *tenancycatalog.Catalog
	o        GuardOpts
	password *string // the role's password verifier when the guard started (nil: none, or unseen)
	seen     bool    // the baseline was read
	reported bool    // the change was reported
}

// roleDefaultsOfSQL lists where a role has session defaults: for all databases (oid 0), or for one
// of the given databases.
const roleDefaultsOfSQL = `SELECT s.setdatabase, coalesce(d.datname, '') FROM pg_db_role_setting s
	JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
	WHERE r.rolname = $1 AND (s.setdatabase = 0 OR d.datname = ANY($2))`

// look removes the role's session defaults, for all databases and for this deployment's (the
// catalog's and its database tenants', on every server), and compares its password with the
// baseline. Other deployments' databases on a shared server are theirs to guard.
func (g *guard) look(ctx context.Context) (*GuardResult, error) {
	res := &GuardResult{}
	byServer, err := g.c.TenantDatabases(ctx)
	if err != nil {
		return nil, err
	}
	byServer[tenancycatalog.DefaultServer] = append(byServer[tenancycatalog.DefaultServer], g.c.Pool().Config().ConnConfig.Database)
	for alias := range byServer {
		// Where a Router's janitor connects (see janitor).
		byServer[alias] = append(byServer[alias], "postgres")
	}
	for alias, dbs := range byServer {
		n, err := g.removeDefaultsOn(ctx, alias, dbs)
		res.DefaultsRemoved += n
		if err != nil {
			return res, err
		}
	}
	var password *string
	err = g.c.Pool().QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, g.o.Role).Scan(&password)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // not a superuser: the password cannot be seen
		return res, nil
	case errors.Is(err, pgx.ErrNoRows):
		return res, fmt.Errorf("the runtime role %s does not exist", g.o.Role)
	case err != nil:
		return res, err
	}
	if !g.seen {
		g.password, g.seen = password, true
		return res, nil
	}
	if (password == nil) != (g.password == nil) || (password != nil && *password != *g.password) {
		res.PasswordChanged = true
		if !g.reported {
			g.reported = true
			if g.o.OnPasswordChange != nil {
				g.o.OnPasswordChange()
			} else {
				g.o.Logger.Error("tenancy: the runtime role's password changed: any role can change its own, so SQL in a unit of work may have; if it was not a rotation, set it again (ALTER ROLE … PASSWORD) or new runtime connections will fail to log in",
					"role", g.o.Role)
			}
		}
	}
	return res, nil
}

// execRetryingConflicts runs stmt, again when it fails because a transaction that changed the
// same row committed meanwhile ("tuple concurrently updated"): a unit of work can hold the row of
// the role's defaults and commit just as the guard removes them.
func execRetryingConflicts(ctx context.Context, q querierExecer, stmt string) error {
	for attempt := 1; ; attempt++ {
		_, err := q.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if err == nil || attempt == 5 || !errors.As(err, &pgErr) || pgErr.Code != "XX000" || ctx.Err() != nil {
			return err
		}
	}
}
