package pgsession

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy/tenancycatalog"
)

// ErrUnsafeRuntimeRole means a pool that runs tenant transactions logs in as a role that SQL inside
// a transaction could use to leave its tenant: a superuser, a role with BYPASSRLS or CREATEROLE, or
// a member of another role (SET ROLE would reach it).
var ErrUnsafeRuntimeRole = errors.New("tenancypgx: the pool's login role is not a safe runtime role")

// ErrBindingKeyMismatch means the database does not accept the binding key a DB was given: it is
// not the key of the catalog this database belongs to.
var ErrBindingKeyMismatch = errors.New("tenancypgx: the database does not accept the binding key")

// ErrNoSupport means the database lacks the isolation support (tenancy.current_tenant and
// tenancy.reset_session): its catalog migrations, or for a tenant database InstallSupport, have
// not run.
var ErrNoSupport = errors.New("tenancypgx: the database lacks the isolation support: run tenancy migrate")

// Scoping statements: the tenant, its proof and (schema tenants) the search_path exist only inside
// the transaction (is_local = true). Schema-model tenants get search_path set to their schema
// alone: no fall-through to public.
const (
	// ResetSQL leaves the session as the unit of work found it (see the catalog's
	// sql/catalog/0006_binding.sql); ResetUnitSQL also refuses, inside the unit's transaction, a
	// role change, and ResetTxSQL a transaction other than the one that began at $1. Each
	// answers "count:proof" for the nonce in its last parameter (see ResetCount): the statement
	// is one the driver prepared by name, which SQL in a unit of work can swap for a stand-in.
	ResetSQL     = "SELECT tenancy.reset_session_proven(false, NULL, $1)"
	ResetUnitSQL = "SELECT tenancy.reset_session_proven(true, NULL, $1)"
	ResetTxSQL   = "SELECT tenancy.reset_session_proven(true, $1, $2)"
	// EndUnitSQL ends a unit of work on a connection that serves only its tenant (a database
	// tenant's): inside the unit's transaction it refuses a transaction other than the one that
	// began at $1 (NULL: not checked) and a role change, then clears the session for the tenant's
	// own next unit, and answers "count:proof" for the nonce $2 (see EndCount): 0, or -1 when the
	// connection must be closed. See the catalog's sql/catalog/0013_unit_end.sql.
	EndUnitSQL = "SELECT tenancy.end_unit($1, $2)"
)

// The scoping statements. The last column but one is the transaction's start (now()), which the
// reset at its end checks: a unit of work that ended its transaction itself is refused. The last
// refuses (SQLSTATE TNCY3) a tenant whose move holds its writes back or has taken it out of this
// placement — the last parameters are the placement's fence name (PlacementShared,
// PlacementDatabase or the schema's name) and the tenant's unit key — before the unit runs; units
// that only read pass a switch (tenancycatalog.FenceCheckSQL).
var (
	ScopeShared = "SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true), now(), " +
		tenancycatalog.FenceCheckSQL("$2", "$3", "$4")
	ScopeSchema = "SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true), set_config('search_path', $3, true), now(), " +
		tenancycatalog.FenceCheckSQL("$2", "$4", "$5")
)

// NewNonce returns a nonce for one proven reset: 16 random bytes in hex.
func NewNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ResetCount returns the count a proven reset answered for nonce — how many statements the
// driver's cache holds on the connection, or -1 when it must not be reused — or -1 when the
// answer's proof does not verify under key: the reset that ran was not the toolkit's (SQL in the
// unit of work swapped the driver's statement for a stand-in), so nothing is known of the
// session and the connection is closed.
func ResetCount(key *tenancycatalog.BindingKey, nonce, answer string) int32 {
	return provenCount(key, "reset", nonce, answer)
}

// EndCount is ResetCount for tenancy.end_unit (EndUnitSQL), whose proofs carry their own label.
func EndCount(key *tenancycatalog.BindingKey, nonce, answer string) int32 {
	return provenCount(key, "end", nonce, answer)
}

func provenCount(key *tenancycatalog.BindingKey, label, nonce, answer string) int32 {
	count, proof, ok := strings.Cut(answer, ":")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(count, 10, 32)
	if err != nil || !hmac.Equal([]byte(proof), []byte(key.Proof("\x00tenancy "+label+":"+nonce+":"+count))) {
		return -1
	}
	return int32(n)
}

// Discard closes conn: a pool never hands out a closed connection.
func Discard(ctx context.Context, conn *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = conn.Close(cctx)
}

// roleDefaultsSQL counts the session defaults (ALTER ROLE … SET) of the login role that a
// connection to this database would start with (for this database and for all), and the
// settings this session did start with from such defaults — which may since have been removed:
// the session keeps them all its life, every RESET goes back to them.
const roleDefaultsSQL = `SELECT (SELECT count(*) FROM pg_catalog.pg_db_role_setting s
	JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole
	WHERE r.rolname OPERATOR(pg_catalog.=) SESSION_USER
	  AND s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())]))
	OPERATOR(pg_catalog.+) (SELECT count(*) FROM pg_catalog.pg_settings s
	WHERE s.source OPERATOR(pg_catalog.=) ANY (ARRAY['user', 'database user']::pg_catalog.text[]))`

// ErrRoleDefaults means a new connection of the runtime role started with session defaults that
// SQL inside some unit of work gave the role (PostgreSQL lets a role ALTER ROLE itself … SET):
// search_path, read-only transactions, timeouts, which every connection of every tenant would
// start with. They are removed, and that connection is refused; the next one starts clean.
var ErrRoleDefaults = errors.New("tenancypgx: the runtime role had session defaults (ALTER ROLE … SET)")

// RefuseRoleDefaults is the runtime pools' AfterConnect: a connection that started with role
// defaults, or would have, is refused, after removing them.
func RefuseRoleDefaults(ctx context.Context, conn *pgx.Conn) error {
	// Read without the statement timeout the defaults themselves may set.
	results, err := conn.PgConn().Exec(ctx, "BEGIN; SET LOCAL statement_timeout = 0; "+roleDefaultsSQL+"; COMMIT").ReadAll()
	if err == nil && (len(results) != 4 || len(results[2].Rows) != 1) {
		err = errors.New("unexpected result")
	}
	if err != nil {
		return fmt.Errorf("tenancypgx: check the runtime role's session defaults: %w", err)
	}
	n, _ := strconv.Atoi(string(results[2].Rows[0][0]))
	if n == 0 {
		return nil
	}
	if err := sweep(ctx, conn, ""); err != nil {
		return fmt.Errorf("%w: %d, which could not be removed (%v): as a superuser, ALTER ROLE %s IN DATABASE %s RESET ALL (and ALTER ROLE %[3]s RESET ALL)",
			ErrRoleDefaults, n, err, pgx.Identifier{conn.Config().User}.Sanitize(), pgx.Identifier{conn.Config().Database}.Sanitize())
	}
	return fmt.Errorf("%w: %d removed; this connection, which started with them, is refused", ErrRoleDefaults, n)
}

// startupGuard are settings a runtime connection asks for when it starts. Settings sent at
// start-up take precedence over the role's session defaults (ALTER ROLE … SET), which SQL in a
// unit of work can give the role: a library to load that does not exist
// (local_preload_libraries) would stop every new connection from starting, so no connection
// could remove it; a statement timeout of a millisecond would cancel the check that finds and
// removes them (RefuseRoleDefaults) whenever the machine is busy. A setting the URL names is
// left as the URL says.
var startupGuard = map[string]string{"local_preload_libraries": "", "statement_timeout": "0"}

// connectGuarded connects with cfg, asking for the guard settings at start-up too; when the
// server refuses the connection so (a pooler such as PgBouncer refuses start-up settings it does
// not know, and does not pass them on) and accepts it without, cfg stays without. With them,
// cfg's RuntimeParams keep them, for every later connection.
func connectGuarded(ctx context.Context, cfg *pgx.ConnConfig, guard map[string]string) (*pgx.Conn, error) {
	guarded := cfg.Copy()
	for k, v := range guard {
		if _, set := guarded.RuntimeParams[k]; !set {
			guarded.RuntimeParams[k] = v
		}
	}
	conn, err := pgx.ConnectConfig(ctx, guarded)
	if err == nil {
		cfg.RuntimeParams = guarded.RuntimeParams
		return conn, nil
	}
	plain, perr := pgx.ConnectConfig(ctx, cfg)
	if perr != nil {
		return nil, err
	}
	return plain, nil
}

// ChainAfterConnect runs first, then next when there is one.
func ChainAfterConnect(first, next func(context.Context, *pgx.Conn) error) func(context.Context, *pgx.Conn) error {
	if next == nil {
		return first
	}
	return func(ctx context.Context, conn *pgx.Conn) error {
		if err := first(ctx, conn); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// explicitExecMode matches a connection string that chooses pgx's query exec mode itself.
var explicitExecMode = regexp.MustCompile(`(^|[?&\s])default_query_exec_mode=`)

// PrepareRuntimeConfig checks the login role of cfg with one connection and, when it reaches
// PostgreSQL through an intermediary, turns pgx's named prepared statements off unless the
// connection string chose a mode.
func PrepareRuntimeConfig(ctx context.Context, cfg *pgx.ConnConfig, connString string, log *slog.Logger) error {
	conn, err := connectGuarded(ctx, cfg, startupGuard)
	if err != nil {
		return fmt.Errorf("tenancypgx: runtime pool: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := checkRuntimeRole(ctx, conn); err != nil {
		return err
	}
	if err := RefuseRoleDefaults(ctx, conn); err != nil {
		if !errors.Is(err, ErrRoleDefaults) || strings.Contains(err.Error(), "could not be removed") {
			return err
		}
		// They were removed: look again on a connection that starts without them.
		conn.Close(ctx)
		if conn, err = connectGuarded(ctx, cfg, startupGuard); err != nil {
			return fmt.Errorf("tenancypgx: runtime pool: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := RefuseRoleDefaults(ctx, conn); err != nil {
			return err
		}
	}
	pooled, err := throughIntermediary(ctx, conn)
	if err != nil {
		return err
	}
	if pooled && !explicitExecMode.MatchString(connString) {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
		log.Info("tenancy: the runtime URL reaches PostgreSQL through a pooler or proxy: statements are not prepared by name (default_query_exec_mode=cache_describe); set default_query_exec_mode (exec, cache_describe) in the URL to choose",
			"host", cfg.Host, "port", cfg.Port)
	}
	return nil
}

// throughIntermediary reports whether the server sees the connection come from another address
// than the one this process connects from: a pooler (PgBouncer) or proxy is in between. A Unix
// socket (no client address on either side) is direct. Like checkRuntimeRole it runs unprepared
// (exec mode): before the pooler is detected, a statement prepared by name would stay on the
// pooler's server connection, and the next instance's check would fail with "already exists".
func throughIntermediary(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var addr *string
	var port *int
	if err := conn.QueryRow(ctx, `SELECT host(inet_client_addr()), inet_client_port()`, pgx.QueryExecModeExec).Scan(&addr, &port); err != nil {
		return false, fmt.Errorf("tenancypgx: runtime pool: %w", err)
	}
	local, ok := conn.PgConn().Conn().LocalAddr().(*net.TCPAddr)
	if !ok || addr == nil || port == nil {
		return ok != (addr != nil), nil // a TCP client the server sees as a socket, or the reverse
	}
	seen := net.ParseIP(*addr)
	return seen == nil || !seen.Equal(local.IP) || *port != local.Port, nil
}

// runtimeRoleSQL describes the session's login role: its attributes and the roles it is a member of.
const runtimeRoleSQL = `
SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole, session_user = current_user,
       coalesce((SELECT array_agg(m.roleid::regrole::text ORDER BY 1) FROM pg_auth_members m WHERE m.member = r.oid), '{}')
  FROM pg_roles r
 WHERE r.rolname = session_user`

// checkRuntimeRole fails with ErrUnsafeRuntimeRole when conn's login role could let SQL inside a
// tenant transaction become anyone with more rights.
func checkRuntimeRole(ctx context.Context, conn *pgx.Conn) error {
	var name string
	var super, bypass, createRole, same bool
	var memberOf []string
	if err := conn.QueryRow(ctx, runtimeRoleSQL, pgx.QueryExecModeExec).Scan(&name, &super, &bypass, &createRole, &same, &memberOf); err != nil {
		return fmt.Errorf("tenancypgx: check the runtime role: %w", err)
	}
	var why []string
	if super {
		why = append(why, "a superuser (row-level security does not apply to it)")
	}
	if bypass {
		why = append(why, "BYPASSRLS")
	}
	if createRole {
		why = append(why, "CREATEROLE (it could grant itself other roles)")
	}
	if len(memberOf) > 0 {
		why = append(why, "a member of "+strings.Join(memberOf, ", ")+" (SET ROLE reaches them)")
	}
	if !same {
		why = append(why, "switched to another role after logging in")
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s is %s: log the runtime pool in as %s (tenancypgx.RuntimeURL, tenancy serve --runtime-url) and keep this role for migrations",
		ErrUnsafeRuntimeRole, pgx.Identifier{name}.Sanitize(), strings.Join(why, "; "), tenancycatalog.DefaultRole)
}

// probeTenant is the id the binding check binds to: a valid id no tenant has.
const probeTenant = "00000000-0000-0000-0000-000000000000"

// checkBinding fails with ErrBindingKeyMismatch when the database behind conn does not accept key,
// and with ErrNoSupport when it lacks the isolation support. It leaves the session clean.
func checkBinding(ctx context.Context, conn *pgx.Conn, key *tenancycatalog.BindingKey) error {
	b := &pgx.Batch{}
	b.Queue(ScopeShared, probeTenant, key.Proof(probeTenant), tenancycatalog.PlacementShared, tenancycatalog.UnitKey(key, probeTenant))
	b.Queue(`SELECT tenancy.current_tenant()`)
	b.Queue(EndUnitSQL, nil, NewNonce()) // the support is as recent as this code
	b.Queue(ResetSQL, NewNonce())
	br := conn.SendBatch(ctx, b)
	_, err := br.Exec()
	var bound *string
	if err == nil {
		err = br.QueryRow().Scan(&bound)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var pgErr *pgconn.PgError
	where := conn.Config().Database
	switch {
	case errors.As(err, &pgErr) && (pgErr.Code == "42883" || pgErr.Code == "3F000"): // no such function, schema
		Discard(ctx, conn)
		return fmt.Errorf("%w: database %s lacks the isolation support's functions (%s): check that the runtime URL names the catalog's database, and run tenancy migrate on it",
			ErrNoSupport, where, pgErr.Message)
	case errors.As(err, &pgErr) && pgErr.Code == "42501" && strings.HasPrefix(pgErr.Message, "tenancy:"):
		Discard(ctx, conn)
		return fmt.Errorf("%w: database %s: %s: give tenancypgx.Config the Key of the catalog this database belongs to (Catalog.BindingKey)",
			ErrBindingKeyMismatch, where, pgErr.Message)
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // permission denied: not a role tenancy.isolate granted
		Discard(ctx, conn)
		return fmt.Errorf("%w: %s may not use the isolation support of database %s (%s): log the runtime pool in as %s, or grant your role with tenancy.isolate(table, role)",
			ErrUnsafeRuntimeRole, conn.Config().User, where, pgErr.Message, tenancycatalog.DefaultRole)
	case err != nil:
		Discard(ctx, conn)
		return fmt.Errorf("tenancypgx: check the binding: %w", err)
	case bound == nil || *bound != probeTenant:
		return fmt.Errorf("%w: tenancy.current_tenant() did not return the bound tenant", ErrBindingKeyMismatch)
	}
	return nil
}

// CheckOnce runs the checks of a pool's first connection (Check: role, binding) until they pass once.
type CheckOnce struct {
	done atomic.Bool
	mu   sync.Mutex
}

// Passed reports whether the check passed.
func (c *CheckOnce) Passed() bool { return c.done.Load() }

// Do runs check on conn, unless it passed before.
func (c *CheckOnce) Do(ctx context.Context, conn *pgx.Conn, check func(context.Context, *pgx.Conn) error) error {
	if c.done.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done.Load() {
		return nil
	}
	if err := check(ctx, conn); err != nil {
		return err
	}
	c.done.Store(true)
	return nil
}

// Check fails with ErrUnsafeRuntimeRole when conn's login role could let SQL inside a tenant
// transaction become anyone with more rights, and with ErrBindingKeyMismatch or ErrNoSupport when
// conn's database does not accept key.
func Check(ctx context.Context, conn *pgx.Conn, key *tenancycatalog.BindingKey) error {
	if err := checkRuntimeRole(ctx, conn); err != nil {
		return err
	}
	return checkBinding(ctx, conn, key)
}

// RefuseSimpleProtocol refuses pgx's simple protocol for tenant work: it writes arguments into
// the statement's text, and the text of a statement in flight is visible to every session of the
// same role (pg_stat_activity) — the tenant's proof included.
func RefuseSimpleProtocol(cfg *pgx.ConnConfig) error {
	if cfg.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		return errors.New("tenancypgx: default_query_exec_mode=simple_protocol would put each transaction's tenant proof in the statement text, which other tenants' sessions can read in pg_stat_activity: use exec, cache_describe (behind a pooler) or the default")
	}
	return nil
}
