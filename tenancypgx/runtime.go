package tenancypgx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/internal/pgsession"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// The errors of the runtime checks (see internal/pgsession, which runs them for the shared pool and
// the router's tenant pools alike).
var (
	// ErrUnsafeRuntimeRole means a pool that runs tenant transactions logs in as a role that SQL
	// inside a transaction could use to leave its tenant: a superuser, a role with BYPASSRLS or
	// CREATEROLE, or a member of another role (SET ROLE would reach it).
	ErrUnsafeRuntimeRole = pgsession.ErrUnsafeRuntimeRole
	// ErrBindingKeyMismatch means the database does not accept the binding key a DB was given: it
	// is not the key of the catalog this database belongs to.
	ErrBindingKeyMismatch = pgsession.ErrBindingKeyMismatch
	// ErrNoSupport means the database lacks the isolation support (tenancy.current_tenant and
	// tenancy.reset_session): its catalog migrations, or for a tenant database InstallSupport,
	// have not run.
	ErrNoSupport = pgsession.ErrNoSupport
	// ErrRoleDefaults means a new connection of the runtime role started with session defaults
	// that SQL inside some unit of work gave the role (ALTER ROLE … SET); they are removed and
	// that connection is refused.
	ErrRoleDefaults = pgsession.ErrRoleDefaults
)

// RuntimeURL returns connString with its user replaced by the runtime role (DefaultRole) and its
// password removed: where the runtime pool logs in when no runtime URL is configured. With
// password authentication, give tenancy_app a password and configure its URL instead.
func RuntimeURL(connString string) (string, error) {
	if !strings.Contains(connString, "://") {
		return "", errors.New("tenancypgx: RuntimeURL needs a postgres:// URL")
	}
	u, err := url.Parse(connString)
	if err != nil {
		return "", fmt.Errorf("tenancypgx: database URL: %w", err)
	}
	u.User = url.User(tenancycatalog.DefaultRole)
	return u.String(), nil
}

// RuntimePoolOpts tunes NewRuntimePool. A nil *RuntimePoolOpts means the defaults.
type RuntimePoolOpts struct {
	// Configure, when set, adjusts the pool's configuration before it opens (size, tracing, TLS).
	// Defaults to nil.
	Configure func(*pgxpool.Config)
	// Logger says when a connection pooler was detected. Defaults to slog.Default().
	Logger *slog.Logger
}

// NewRuntimePool opens the pool tenant transactions run on (tenancypgx.New) at connString, which
// must log in as the runtime role (RuntimeURL). It connects once to check that role (see
// ErrUnsafeRuntimeRole) and to see whether the URL reaches PostgreSQL through a connection pooler
// such as PgBouncer in transaction mode; if so, and the URL does not choose
// default_query_exec_mode itself, statements are not prepared by name (cache_describe), since the
// pooler hands each transaction to any server connection.
func NewRuntimePool(ctx context.Context, connString string, opts *RuntimePoolOpts) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("tenancypgx: runtime URL: %w", err)
	}
	log := slog.Default()
	if opts != nil && opts.Logger != nil {
		log = opts.Logger
	}
	if err := pgsession.RefuseSimpleProtocol(cfg.ConnConfig); err != nil {
		return nil, err
	}
	if err := pgsession.PrepareRuntimeConfig(ctx, cfg.ConnConfig, connString, log); err != nil {
		return nil, err
	}
	if opts != nil && opts.Configure != nil {
		opts.Configure(cfg)
	}
	cfg.AfterConnect = pgsession.ChainAfterConnect(pgsession.RefuseRoleDefaults, cfg.AfterConnect)
	return pgxpool.NewWithConfig(ctx, cfg)
}
