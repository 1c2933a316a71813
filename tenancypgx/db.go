package tenancypgx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/pgsession"
	"github.com/gotenancy/tenancy/internal/spans"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// Config configures a DB.
type Config struct {
	// Key is the catalog's binding key (Catalog.BindingKey), with which every transaction proves
	// its tenant to the database. Required.
	Key *tenancycatalog.BindingKey
	// Router serves database-model tenants (each from its own database). Defaults to nil: their
	// transactions fail with ErrIsolationNotSupported.
	Router *tenancyrouter.Router
	// Store, when set, is asked for the tenant's current status at the start of every transaction
	// (use a tenancycache.Lookup: a hit costs no query), so that work holding an old context — a job, a
	// detached goroutine — stops when its tenant is suspended or deleted. Defaults to nil: the
	// tenant in the context is trusted as it is.
	//
	// With a Store, units of work follow a tenant that moves (tenancymove): one refused by the
	// old placement's fence looks the tenant up again and runs in its new placement.
	Store tenancy.Store
	// MoveWait bounds how long a unit of work waits for a moving tenant's switch (see Tx).
	// Defaults to 1s.
	MoveWait time.Duration
	// TagStatements prefixes every statement of a unit of work — through the pgx.Tx of Tx and
	// ReadTx (Exec, Query, QueryRow, SendBatch, Prepare) and the single-statement helpers — with a
	// comment naming the tenant, /* tenant=acme */, as slow-query logs and pg_stat_activity show
	// it (pg_stat_statements groups by the statement, not its comments). Each tenant's text is a
	// statement of its own to pgx's cache, prepared again per tenant and connection: see its cost
	// in BENCHMARKS.md. SQLTx's statements are not tagged. Defaults to false.
	TagStatements bool
}

// DB runs transactions bound to the tenant in the context. See Tx.
type DB struct {
	pool    *pgxpool.Pool
	key     *tenancycatalog.BindingKey
	store   tenancy.Store
	router  *tenancyrouter.Router
	sql     sqlDBs
	check   *tenancyrouter.Check // the login role and binding (pgsession.Check)
	checked pgsession.CheckOnce  // check passed on the shared pool
	janitor *pgsession.Janitor   // removes the role's session defaults for the shared pool's server
	wait    time.Duration        // Config.MoveWait
	tag     bool                 // Config.TagStatements
}

// SQLSTATEs tenancy.reset_session raises: the unit of work ended its transaction itself, or
// changed a role. Either way its transaction is rolled back and its connection closed.
const (
	codeTxEnded     = "TNCY1"
	codeRoleChanged = "TNCY2"
)

// New returns a DB on pool, which must log in as the runtime role (see NewRuntimePool): not a
// superuser, without BYPASSRLS or CREATEROLE, a member of no role; and must not use pgx's simple
// protocol (it would write the tenant's proof into statement text other sessions can read). The first transaction checks
// that, and that cfg.Key is the key of the pool's database, and fails with ErrUnsafeRuntimeRole or
// ErrBindingKeyMismatch otherwise: SQL inside a transaction can never become anyone else.
func New(pool *pgxpool.Pool, cfg *Config) (*DB, error) {
	if pool == nil {
		return nil, errors.New("tenancypgx: New needs a pool")
	}
	if cfg == nil || cfg.Key == nil {
		return nil, errors.New("tenancypgx: New needs Config.Key, the catalog's binding key (Catalog.BindingKey)")
	}
	if err := pgsession.RefuseSimpleProtocol(pool.Config().ConnConfig); err != nil {
		return nil, err
	}
	key := cfg.Key
	wait := cfg.MoveWait
	if wait <= 0 {
		wait = time.Second
	}
	return &DB{pool: pool, key: key, store: cfg.Store, router: cfg.Router, janitor: pgsession.NewJanitor(pool.Config().ConnConfig), wait: wait, tag: cfg.TagStatements,
		check: &tenancyrouter.Check{Run: func(ctx context.Context, conn *pgx.Conn) error { return pgsession.Check(ctx, conn, key) }}}, nil
}

// Pool returns the pool transactions run on.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Check runs now what the first transaction checks: that the pool logs in as a safe runtime role
// (ErrUnsafeRuntimeRole) and that its database accepts the binding key (ErrBindingKeyMismatch,
// ErrNoSupport). Call it at start to fail there rather than on the first request.
func (db *DB) Check(ctx context.Context) error { return db.checkPool(ctx, db.pool, &db.checked) }

// ErrIsolationNotSupported is tenancy.ErrIsolationNotSupported: the tenant's isolation model is
// not one this DB can serve (database tenants without Config.Router).
var ErrIsolationNotSupported = tenancy.ErrIsolationNotSupported

// scope is how a transaction is bound to one tenant.
type scope struct {
	tenant    *tenancy.Tenant
	schema    string // the quoted schema of a schema-model tenant, else ""
	placement string // the name fences of a move close its placement by (tenancycatalog.Placement.FenceName)
}

// own reports whether the connections s runs on serve only its tenant: a database tenant's come
// from its own pool, on its own database (see endOwn).
func (s scope) own() bool { return s.tenant.Isolation == tenancy.IsolationDatabase }

// tenant returns the scope of the tenant in ctx, fit to be served.
func (db *DB) tenant(ctx context.Context) (scope, error) {
	t, ok := tenancy.FromContext(ctx)
	if !ok {
		return scope{}, tenancy.ErrNoTenant
	}
	if !tenancy.IsID(t.ID) {
		return scope{}, fmt.Errorf("%w: the tenant in the context has no valid ID", tenancy.ErrNoTenant)
	}
	if db.store != nil {
		fresh, err := db.store.TenantByID(ctx, t.ID)
		if err != nil {
			return scope{}, err
		}
		t = fresh
	}
	if err := t.Err(); err != nil {
		return scope{}, err
	}
	switch t.Isolation {
	case tenancy.IsolationShared, "":
		return scope{tenant: t, placement: tenancycatalog.PlacementShared}, nil
	case tenancy.IsolationSchema:
		schema, err := tenancycatalog.QuotedSchema(t.ID)
		return scope{tenant: t, schema: schema, placement: tenancycatalog.SchemaName(t.ID)}, err
	case tenancy.IsolationDatabase:
		if db.router == nil {
			return scope{}, fmt.Errorf("%w: database (tenant %s): give tenancypgx.Config a Router", ErrIsolationNotSupported, t.Slug)
		}
		return scope{tenant: t, placement: tenancycatalog.PlacementDatabase}, nil
	}
	return scope{}, fmt.Errorf("%w: %s (tenant %s)", ErrIsolationNotSupported, t.Isolation, t.Slug)
}

// tenantTag is the comment that names s's tenant before each of its statements with
// Config.TagStatements, else "": its slug, a DNS label, or — for a tenant in the context whose
// slug is not one (made by hand) — its ID, checked already: neither can end the comment.
func (db *DB) tenantTag(s scope) string {
	if !db.tag {
		return ""
	}
	if tenancy.ValidateSlug(s.tenant.Slug) != nil {
		return "/* tenant=" + s.tenant.ID + " */ "
	}
	return "/* tenant=" + s.tenant.Slug + " */ "
}

// scopeArgs returns the statement that binds a transaction to s, with its arguments.
func (db *DB) scopeArgs(s scope) (string, []any) {
	proof := db.key.Proof(s.tenant.ID)
	if s.schema == "" {
		return pgsession.ScopeShared, []any{s.tenant.ID, proof, s.placement, tenancycatalog.ProofUnitKey(proof)}
	}
	return pgsession.ScopeSchema, []any{s.tenant.ID, proof, s.schema, s.placement, tenancycatalog.ProofUnitKey(proof)}
}

// queueScope queues the statement that binds the transaction to s.
func (db *DB) queueScope(b *pgx.Batch, s scope) {
	sql, args := db.scopeArgs(s)
	b.Queue(sql, args...)
}

// Tx runs fn in a transaction bound to the tenant in ctx and commits it when fn returns nil.
//
// Inside, the transaction runs as the runtime role with app.tenant_id set to the tenant's ID and
// proven with the binding key, so row-level security on tenant tables (tenancy.isolate) shows and
// accepts only that tenant's rows; an INSERT need not name the tenant. Setting app.tenant_id to
// another tenant from inside is refused by the database (the proof does not verify). BEGIN and
// the scoping go to the server in one round trip, so a scoped transaction takes the round trips
// of a plain one.
//
// The connection goes back to the pool as it came, whatever fn did: in the round trip of the
// COMMIT (or after the ROLLBACK) tenancy.reset_session() closes held cursors, drops LISTEN
// registrations and session advisory locks, resets session settings and sequence state, and
// drops temporary objects and SQL-prepared statements; a connection that cannot be reset is
// closed, never reused. If fn ends the transaction itself (a COMMIT inside it: what follows runs
// without a tenant) or changes a role, Tx returns the database's refusal (SQLSTATE TNCY1, TNCY2),
// rolls back what it can and closes the connection.
//
// Tx rolls back when fn returns an error, when fn panics (the panic goes on), and when ctx ends.
// Without a tenant in ctx it returns tenancy.ErrNoTenant before any SQL is sent; for a suspended
// tenant tenancy.ErrTenantSuspended, for a deleted one tenancy.ErrTenantNotFound.
//
// While the tenant is being moved (tenancymove), the move's switch refuses units that may write,
// before fn runs; Tx waits and tries again, at most Config.MoveWait, then runs fn in the tenant's
// new placement (with a Config.Store, which it asks again), or returns tenancy.ErrTenantMoving.
// fn runs at most once.
func (db *DB) Tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return spans.Traced(ctx, "tenancy.Tx", func(ctx context.Context) error {
		return db.follow(ctx, func() error { return db.tx(ctx, fn, pgx.TxOptions{}) })
	})
}

// ReadTx is Tx in a read-only transaction (a write in fn fails with SQLSTATE 25006): it is served
// from the tenant's placement throughout a move, even while the move's switch holds writes back.
func (db *DB) ReadTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return spans.Traced(ctx, "tenancy.ReadTx", func(ctx context.Context) error {
		return db.follow(ctx, func() error { return db.tx(ctx, fn, pgx.TxOptions{AccessMode: pgx.ReadOnly}) })
	})
}

func (db *DB) tx(ctx context.Context, fn func(pgx.Tx) error, opts pgx.TxOptions) (err error) {
	s, err := db.tenant(ctx)
	if err != nil {
		return err
	}
	pc, release, j, err := db.acquire(ctx, s)
	if err != nil {
		return err
	}
	conn := pc.Conn()
	b := &pgx.Batch{}
	b.BeginTx(opts)
	queueUnitSavepoint(b, conn)
	db.queueScope(b, s)
	br := conn.SendBatch(ctx, b)
	tx := br.Tx()
	start, err := readScope(br, s, conn)
	if err != nil {
		end(ctx, conn, db.key, false, start, j, err)
		release(err)
		return fenced(fmt.Errorf("tenancypgx: begin tenant transaction: %w", err))
	}
	defer func() {
		if p := recover(); p != nil {
			end(ctx, conn, db.key, false, start, j, fmt.Errorf("panic: %v", p))
			release(nil)
			panic(p)
		}
		release(err)
	}()
	inner := &unitTx{Tx: tx, tag: db.tenantTag(s)}
	if s.schema != "" {
		inner.tag += schemaTag(s.schema)
	}
	if err := fn(inner); err != nil {
		if len(inner.prepared) > 0 && !inner.deallocate(context.WithoutCancel(ctx), conn) {
			pgsession.Discard(ctx, conn)
		}
		end(ctx, conn, db.key, false, start, j, err)
		return err
	}
	if len(inner.prepared) > 0 && !inner.deallocate(ctx, conn) {
		end(ctx, conn, db.key, false, start, j, errPreparedKept)
		pgsession.Discard(ctx, conn)
		return errPreparedKept
	}
	if s.own() {
		return endOwn(ctx, conn, db.key, start, j)
	}
	return end(ctx, conn, db.key, true, start, j, nil)
}

// errPreparedKept means a statement the unit of work prepared by name could not be dropped at its
// end: the unit is rolled back and the connection closed, so the name never reaches another
// tenant.
var errPreparedKept = errors.New("tenancypgx: a statement prepared in the unit of work could not be deallocated")

// unitSavepoint marks, behind a pooler, where the unit of work began inside its transaction (see
// end): a savepoint the unit's own work can be rolled back to while the transaction — and with it
// the server session the pooler gave it — stays.
const (
	unitSavepointName = "tenancy_unit_start"
	unitSavepoint     = "SAVEPOINT " + unitSavepointName
	rollbackToUnit    = "ROLLBACK TO " + unitSavepointName
)

// pooledKey keeps, on each connection, whether behindPooler holds for it: pgx's Config copies
// the whole configuration, too much for every unit of work.
const pooledKey = "tenancy.pooled"

// behindPooler reports whether conn may reach PostgreSQL through a pooler in transaction mode,
// which hands each transaction to any server session: its statements are not prepared by name
// (NewRuntimePool turns that off when it finds a pooler, and a URL that chooses another mode is
// taken at its word).
func behindPooler(conn *pgx.Conn) bool {
	data := conn.PgConn().CustomData()
	pooled, ok := data[pooledKey].(bool)
	if !ok {
		pooled = conn.Config().DefaultQueryExecMode != pgx.QueryExecModeCacheStatement
		data[pooledKey] = pooled
	}
	return pooled
}

// queueUnitSavepoint queues the unit's savepoint after BEGIN when conn is behind a pooler.
func queueUnitSavepoint(b *pgx.Batch, conn *pgx.Conn) {
	if behindPooler(conn) {
		b.Queue(unitSavepoint)
	}
}

// readScope reads the results of a batch of BEGIN, the savepoint (behind a pooler) and the
// scoping statement, and closes it. It returns the transaction's start.
func readScope(br pgx.BatchResults, s scope, conn *pgx.Conn) (time.Time, error) {
	var start time.Time
	_, err := br.Exec() // BEGIN
	if err == nil && behindPooler(conn) {
		_, err = br.Exec() // the savepoint
	}
	if err == nil {
		if s.schema == "" {
			err = br.QueryRow().Scan(nil, nil, &start, nil)
		} else {
			err = br.QueryRow().Scan(nil, nil, nil, &start, nil)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return start, err
}

// end ends the unit of work on conn and leaves its session as the unit found it: with commit, the
// reset (checking that the transaction is still the one that began at start) and the COMMIT in one
// round trip; otherwise (or when that fails) ROLLBACK, then the reset, even after ctx has ended. A
// connection that cannot be reset, whose unit of work ended its transaction itself or changed a
// role, or whose driver cache it tampered with (see kept), is closed, so the pool discards it; the
// role's session defaults are then removed through j, as they are when the session died under
// the unit. cause is why a unit that does not commit ends. It returns the error of the commit.
func end(ctx context.Context, conn *pgx.Conn, key *tenancycatalog.BindingKey, commit bool, start time.Time, j sweeper, cause error) error {
	err := cause
	if commit {
		nonce := pgsession.NewNonce()
		var answer string
		answer, err = commitAfter(ctx, conn, pgsession.ResetTxSQL, start, nonce)
		protocol := pgsession.ResetCount(key, nonce, answer)
		if err == nil {
			if !kept(conn, protocol) {
				pgsession.Discard(ctx, conn)
			}
			return nil
		}
	}
	if conn.IsClosed() {
		// The session ended under the unit of work, which can end its own (exit_on_error,
		// idle_session_timeout…) after giving the role session defaults outside its transaction.
		_ = j.Sweep(ctx, conn.Config().Database)
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if behindPooler(conn) && conn.PgConn().TxStatus() != 'I' && !tampered(err) {
		// Behind a pooler the ROLLBACK ends the transaction, and with it the pooler's hold on the
		// server session the unit ran on: a reset after it could run on another session, leaving
		// what a failed unit cannot roll back (session advisory locks, the random seed, prepared
		// statements, sequence state) to whoever gets this one next. So the unit's work is rolled
		// back to its savepoint and the session reset inside the same transaction, then rolled
		// back: all on the session it ran on.
		protocol := resetPinned(rctx, conn, key)
		if protocol < 0 || lostStatement(err) || !keptAfterRollback(conn, protocol, err) {
			_ = j.Sweep(rctx, conn.Config().Database)
			pgsession.Discard(rctx, conn)
		}
		return err
	}
	_, rerr := conn.PgConn().Exec(rctx, "ROLLBACK").ReadAll()
	protocol := int32(-1)
	if rerr == nil && !tampered(err) {
		// Through pgx: it first drops the statements it invalidated when one failed, so the
		// count the reset returns is what it keeps.
		nonce, answer := pgsession.NewNonce(), ""
		if rerr = conn.QueryRow(rctx, pgsession.ResetSQL, nonce).Scan(&answer); rerr == nil {
			protocol = pgsession.ResetCount(key, nonce, answer)
		}
	}
	if rerr != nil || lostStatement(err) || !keptAfterRollback(conn, protocol, err) {
		// The unit may also have given the role session defaults outside its transaction: they
		// are removed from the janitor's connection, whose session the unit never touched.
		_ = j.Sweep(rctx, conn.Config().Database)
		pgsession.Discard(rctx, conn)
	}
	return err
}

// endOwn commits a unit of work of a database tenant: tenancy.end_unit (the unit's checks, and the
// session cleared for the tenant's next unit) and the COMMIT in one round trip. Its connection
// serves no other tenant — the tenant's pool is on the tenant's own database — so what end's
// reset does for the next tenant (reseeding random(), counting the driver's statements) is not
// needed. A connection whose end_unit answers -1 (SQL prepared statements on the session) or
// does not prove its answer is closed. When the commit fails, end rolls back and resets as for
// any unit.
func endOwn(ctx context.Context, conn *pgx.Conn, key *tenancycatalog.BindingKey, start time.Time, j sweeper) error {
	nonce := pgsession.NewNonce()
	answer, err := commitAfter(ctx, conn, pgsession.EndUnitSQL, start, nonce)
	if err != nil {
		return end(ctx, conn, key, false, start, j, err)
	}
	if pgsession.EndCount(key, nonce, answer) < 0 {
		pgsession.Discard(ctx, conn)
	}
	return nil
}

// commitAfter runs the statement that ends a unit of work (the proven reset or end_unit, with the
// transaction's start and a nonce) and COMMIT, in one round trip, and returns the end's answer.
// Both go as unnamed statements: SQL in the unit can DEALLOCATE any statement the driver prepared
// by name and PREPARE a stand-in under its name, but it cannot touch the unnamed statement, so
// the end that runs is the one sent — its refusals (TNCY1, TNCY2) always reach the COMMIT behind
// it, which the server then skips.
func commitAfter(ctx context.Context, conn *pgx.Conn, endSQL string, start time.Time, nonce string) (string, error) {
	b := &pgconn.Batch{}
	b.ExecParams(endSQL, [][]byte{[]byte(start.Format("2006-01-02 15:04:05.999999-07:00")), []byte(nonce)}, nil, nil, nil)
	b.ExecParams("COMMIT", nil, nil, nil, nil)
	results, err := conn.PgConn().ExecBatch(ctx, b).ReadAll()
	switch {
	case err != nil:
		return "", err
	case len(results) != 2 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1:
		return "", errors.New("tenancypgx: the end of the unit of work answered unexpectedly")
	case results[1].CommandTag.String() == "ROLLBACK":
		return "", pgx.ErrTxCommitRollback
	}
	return string(results[0].Rows[0][0]), nil
}

// resetPinned rolls the unit back to its savepoint, resets the session and rolls the transaction
// back, in one round trip that stays on the unit's server session, and returns the reset's count
// (-1 when anything failed: the savepoint gone — the unit released it or ended its transaction —,
// or the proof not verified).
func resetPinned(ctx context.Context, conn *pgx.Conn, key *tenancycatalog.BindingKey) int32 {
	nonce, answer := pgsession.NewNonce(), ""
	b := &pgx.Batch{}
	b.Queue(rollbackToUnit)
	b.Queue(pgsession.ResetSQL, nonce)
	b.Queue("ROLLBACK")
	br := conn.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&answer)
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if conn.PgConn().TxStatus() != 'I' {
			_, _ = conn.PgConn().Exec(ctx, "ROLLBACK").ReadAll()
		}
		return -1
	}
	return pgsession.ResetCount(key, nonce, answer)
}

// tampered reports whether err is the reset refusing a unit of work that ended its transaction
// itself or changed a role: its connection is closed.
func tampered(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == codeTxEnded || pgErr.Code == codeRoleChanged)
}

// kept reports whether conn may go back to the pool after a unit of work that committed and a
// reset that returned protocol, the number of the driver's cached statements prepared on it (see
// tenancy.reset_session): -1 means the unit of work prepared statements with SQL's PREPARE, which
// the reset dropped — one may have taken the name of a statement the driver prepared, so the
// driver's cache no longer says what runs on this connection — or changed a role, or the role
// has session defaults; fewer than after the last unit means it DEALLOCATEd some, and the next
// user's queries would fail. (The driver deallocates statements itself when one fails — which in
// a committed unit only a savepoint allows — and when its cache is full, where a new statement
// takes an old one's place.)
func kept(conn *pgx.Conn, protocol int32) bool {
	if protocol < 0 {
		return false
	}
	data := conn.PgConn().CustomData()
	if last, ok := data[preparedKey].(int32); ok && protocol < last {
		return false
	}
	data[preparedKey] = protocol
	return true
}

// keptAfterRollback is kept after a unit of work that failed with cause. When a statement failed
// (cause holds the server's error), the driver has deallocated the statements that did: all of a
// failed batch's (the single-statement helpers' pipeline is five) or, in Tx, the one that failed
// and any run after it in the aborted transaction. Up to failedSlack fewer is taken for that; more
// — or any fewer when no statement failed — means the unit DEALLOCATEd some. (So a unit that
// fails on a statement after deallocating a few of the driver's statements, sparing the reset's,
// is not seen: the next user of one of them on this connection gets one error (lostStatement:
// the connection is then closed). pgx does not show its cache, which would tell exactly.)
func keptAfterRollback(conn *pgx.Conn, protocol int32, cause error) bool {
	if protocol < 0 {
		return false
	}
	slack := int32(0)
	var pgErr *pgconn.PgError
	if errors.As(cause, &pgErr) {
		slack = failedSlack
	}
	data := conn.PgConn().CustomData()
	if last, ok := data[preparedKey].(int32); ok && protocol < last-slack {
		return false
	}
	data[preparedKey] = protocol
	return true
}

// lostStatement reports whether err says a statement the driver prepared is gone from the
// server (SQLSTATE 26000): SQL in this or an earlier unit of work DEALLOCATEd it, so the driver's
// cache no longer says what this connection has.
func lostStatement(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "26000"
}

// failedSlack is how many fewer cached statements a unit of work whose statement failed may leave:
// the single-statement pipeline's five, and one more.
const failedSlack = 6

// preparedKey keeps, on each connection, how many statements the driver had cached on it at the
// end of its last unit of work.
const preparedKey = "tenancy.prepared"

// acquire takes a connection for s, whose login role and binding have been checked: from the
// tenant's own pool for the database model, else from the shared pool. release gives it back with
// the outcome of the work.
func (db *DB) acquire(ctx context.Context, s scope) (*pgxpool.Conn, func(error), sweeper, error) {
	if s.tenant.Isolation == tenancy.IsolationDatabase {
		conn, release, err := db.router.Acquire(ctx, s.tenant, db.check)
		if err != nil {
			return nil, nil, nil, err
		}
		return conn, release, db.router.Janitor(s.tenant.Server), nil
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil && pgsession.StartupRefused(err) {
		// Session defaults a unit of work gave the role may stop every new connection from
		// starting (local_preload_libraries): removed, and the connection tried again.
		if db.janitor.Sweep(ctx, db.pool.Config().ConnConfig.Database) == nil {
			conn, err = db.pool.Acquire(ctx)
		}
	}
	if err != nil {
		return nil, nil, nil, err
	}
	release := func(error) { conn.Release() }
	if err := db.checked.Do(ctx, conn.Conn(), db.check.Run); err != nil {
		release(nil)
		return nil, nil, nil, err
	}
	db.janitor.Ready(ctx)
	return conn, release, db.janitor, nil
}

// sweeper removes the runtime role's session defaults on one server: the shared pool's janitor, or
// the router's for a tenant database's server.
type sweeper interface {
	Sweep(ctx context.Context, database string) error
}

// Exec runs one statement as the tenant in ctx. BEGIN, the scoping, the statement, the session
// reset and COMMIT go to the server in one round trip, so the scope ends with the statement: it
// commits when the statement succeeds and rolls back when it fails (then the reset takes a round
// trip of its own). The transaction block is explicit, so a DO block or procedure in the statement
// cannot COMMIT and go on unbound. A schema-model tenant's statement takes three round trips the
// first time it runs on a connection, one after (see schemaStatements); behind a pooler, two. It
// fails like Tx without a tenant.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	st, err := db.single(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := st.br.Exec()
	if err = st.finish(err); err != nil {
		return pgconn.CommandTag{}, err
	}
	return tag, nil
}

// QueryRow runs one query as the tenant in ctx in one round trip and one transaction, like Exec. As with pgx, the
// connection is held until Scan is called: always call it.
func (db *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	st, err := db.single(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return &singleRow{st: st}
}

// Query runs one query as the tenant in ctx in one round trip and one transaction, like Exec. The
// connection is released when the rows are closed (pgx.CollectRows and friends close them): always close them.
func (db *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	st, err := db.single(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := st.br.Query()
	if err != nil {
		return nil, st.finish(err)
	}
	return &singleRows{Rows: rows, st: st}, nil
}

// single is a one-statement transaction in flight: its batch has been sent and the scoping's
// result read; the statement's result is next.
type single struct {
	span    trace.Span // nil unless traced (internal/spans)
	ctx     context.Context
	conn    *pgxpool.Conn
	release func(error)
	janitor sweeper
	key     *tenancycatalog.BindingKey
	nonce   string // of the reset queued after the statement
	own     bool   // the tenant's own connection: end_unit, not the reset, follows the statement
	tagged  string // a schema tenant's statement, prepared by name (see schemaStatements)
	br      pgx.BatchResults
	done    bool
	err     error
}

func (db *DB) single(ctx context.Context, sql string, args []any) (st *single, err error) {
	ctx, span := spans.Start(ctx, "tenancy.Query")
	err = db.follow(ctx, func() error {
		st, err = db.startSingle(ctx, sql, args)
		return err
	})
	if err != nil {
		spans.End(span, err)
		return nil, err
	}
	st.span = span // ended by finish
	return st, nil
}

// ReadOnly, as the first of the arguments of Exec, Query or QueryRow (as pgx takes a
// QueryExecMode there), runs the statement in a read-only transaction: a write fails (SQLSTATE
// 25006), and a moving tenant's read is served while the move's switch holds writes back
// (see ReadTx).
const ReadOnly = readOnlyArg(1)

type readOnlyArg int

func (db *DB) startSingle(ctx context.Context, sql string, args []any) (*single, error) {
	begin := "BEGIN"
	if len(args) > 0 && args[0] == ReadOnly {
		begin, args = "BEGIN READ ONLY", args[1:]
	}
	s, err := db.tenant(ctx)
	if err != nil {
		return nil, err
	}
	conn, release, j, err := db.acquire(ctx, s)
	if err != nil {
		return nil, err
	}
	st := &single{ctx: ctx, conn: conn, release: release, janitor: j, key: db.key, nonce: pgsession.NewNonce(), own: s.own()}
	b := &pgx.Batch{}
	if db.tag && s.schema == "" {
		sql = db.tenantTag(s) + sql
	}
	if s.schema != "" {
		sql = db.tenantTag(s) + schemaTag(s.schema) + sql
		if pooled, stmts := behindPooler(conn.Conn()), schemaStatementsOf(conn.Conn()); pooled || !stmts.has[sql] {
			// Not yet prepared on this connection (see schemaStatements), or behind a pooler,
			// where nothing is prepared by name: the scoping first, then the statement.
			b.Queue(begin)
			queueUnitSavepoint(b, conn.Conn())
			db.queueScope(b, s)
			if err := conn.SendBatch(ctx, b).Close(); err != nil {
				return nil, fenced(st.finish(err))
			}
			if !pooled {
				if err := stmts.prepare(ctx, conn.Conn(), sql); err != nil {
					return nil, st.finish(err)
				}
			}
			b = &pgx.Batch{}
			b.Queue(sql, args...)
			st.queueEnd(b)
			b.Queue("COMMIT")
			st.br, st.tagged = conn.SendBatch(ctx, b), sql
			return st, nil
		}
		st.tagged = sql
	}
	// An explicit transaction block, not the pipeline's implicit transaction: in one, a DO block
	// or a procedure cannot COMMIT and go on unbound.
	b.Queue(begin)
	queueUnitSavepoint(b, conn.Conn())
	db.queueScope(b, s)
	b.Queue(sql, args...)
	st.queueEnd(b)
	b.Queue("COMMIT")
	st.br = conn.SendBatch(ctx, b)
	if _, err := st.br.Exec(); err != nil { // BEGIN
		return nil, st.finish(err)
	}
	if behindPooler(conn.Conn()) {
		if _, err := st.br.Exec(); err != nil { // the savepoint
			return nil, st.finish(err)
		}
	}
	if _, err := st.br.Exec(); err != nil { // the scoping
		return nil, fenced(st.finish(err))
	}
	return st, nil
}

// queueEnd queues what ends the unit before its COMMIT: the proven reset, or on the tenant's own
// connection end_unit (see endOwn).
func (st *single) queueEnd(b *pgx.Batch) {
	if st.own {
		b.Queue(pgsession.EndUnitSQL, nil, st.nonce)
		return
	}
	b.Queue(pgsession.ResetUnitSQL, st.nonce)
}

// finish ends the batch (its Sync commits, or rolls back after an error) and releases the
// connection. When anything failed, the reset queued after the statement may not have run: the
// connection is rolled back and reset in a round trip of its own, or closed. It returns the
// statement's error (stmtErr), else the batch's.
func (st *single) finish(stmtErr error) error {
	if st.done {
		return st.err
	}
	st.done = true
	err := stmtErr
	protocol := int32(-1)
	if st.br != nil {
		if err == nil {
			count := pgsession.ResetCount
			if st.own {
				count = pgsession.EndCount // end_unit's answer, not the reset's
			}
			var answer string
			if err = st.br.QueryRow().Scan(&answer); err == nil {
				protocol = count(st.key, st.nonce, answer)
			}
		}
		if cerr := st.br.Close(); err == nil && cerr != nil { // reads COMMIT's result too
			err = cerr
		}
	}
	conn := st.conn.Conn()
	switch pc := conn.PgConn(); {
	case err != nil || pc.TxStatus() != 'I': // the session may have died: end sweeps then
		end(st.ctx, conn, st.key, false, time.Time{}, st.janitor, err)
	case st.own && protocol < 0, !st.own && !kept(conn, protocol):
		pgsession.Discard(st.ctx, conn)
	}
	if stale(err) && st.tagged != "" && !conn.IsClosed() {
		if derr := schemaStatementsOf(conn).drop(context.WithoutCancel(st.ctx), conn, st.tagged); derr != nil {
			pgsession.Discard(st.ctx, conn)
		}
	}
	st.release(err)
	st.err = err
	spans.End(st.span, err)
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type singleRow struct{ st *single }

func (r *singleRow) Scan(dest ...any) error {
	err := r.st.br.QueryRow().Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		if ferr := r.st.finish(nil); ferr != nil {
			return ferr
		}
		return err
	}
	return r.st.finish(err)
}

type singleRows struct {
	pgx.Rows
	st *single
}

// Next closes the rows (and so ends the transaction) when they are exhausted, as pgx does, so a
// loop that stops at the last row leaks nothing.
func (r *singleRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *singleRows) Close() {
	r.Rows.Close()
	_ = r.st.finish(r.Rows.Err())
}

func (r *singleRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	if r.st.done {
		return r.st.err
	}
	return nil
}
