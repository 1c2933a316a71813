package tenancycatalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
)

// Placement is where a tenant's rows live: its isolation model and, for the database model, the
// alias of its server (the schema's and the database's names follow from the tenant's ID).
type Placement struct {
	Isolation tenancy.Isolation `json:"isolation"`
	Server    string            `json:"server,omitempty"`
}

// PlacementOf returns where t lives.
func PlacementOf(t *tenancy.Tenant) Placement {
	if t.Isolation == tenancy.IsolationDatabase {
		return Placement{Isolation: t.Isolation, Server: t.Server}
	}
	if t.Isolation == "" {
		return Placement{Isolation: tenancy.IsolationShared}
	}
	return Placement{Isolation: t.Isolation}
}

// String names p as a person would: "shared", "schema", "database on main".
func (p Placement) String() string {
	if p.Isolation == tenancy.IsolationDatabase {
		return "database on " + p.Server
	}
	return string(p.Isolation)
}

// Names under which a fence closes a placement (see FenceName).
const (
	PlacementShared   = "shared"
	PlacementDatabase = "database"
)

// FenceName is the name under which a fence closes placement p to tenant id in p's database:
// PlacementShared, the tenant's schema, or PlacementDatabase (a tenant's own database).
func (p Placement) FenceName(id string) string {
	switch p.Isolation {
	case tenancy.IsolationSchema:
		return SchemaName(id)
	case tenancy.IsolationDatabase:
		return PlacementDatabase
	}
	return PlacementShared
}

// InCatalogDatabase reports whether p's rows live in the catalog's own database (the shared
// tables and tenant schemas do; a tenant's database does not).
func (p Placement) InCatalogDatabase() bool { return p.Isolation != tenancy.IsolationDatabase }

// MoveState is how far a move is.
type MoveState string

const (
	// MoveCopying moves copy the tenant's rows to the new placement; the tenant is served from
	// the old one.
	MoveCopying MoveState = "copying"
	// MoveSwitched moves have switched the tenant to its new placement; the old placement's data
	// is kept until the move is finalized.
	MoveSwitched MoveState = "switched"
	// MoveFinalized moves are over: the old placement's data is removed.
	MoveFinalized MoveState = "finalized"
	// MoveAborted moves were undone before the switch: the new placement's copy is removed.
	MoveAborted MoveState = "aborted"
)

// Move is one move of a tenant between placements (tenancymove).
type Move struct {
	ID       int64     `json:"id"`
	TenantID string    `json:"tenant_id"`
	From     Placement `json:"from"`
	To       Placement `json:"to"`
	State    MoveState `json:"state"`
	// Step is the move's current or last step ("copy", "catch up", "switch", ...).
	Step string `json:"step"`
	// Progress is what the mover last recorded: rows copied per table, pauses.
	Progress      json.RawMessage `json:"progress"`
	LastError     string          `json:"last_error,omitempty"`
	StartedAt     time.Time       `json:"started_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	SwitchedAt    *time.Time      `json:"switched_at,omitempty"`
	FinalizeAfter *time.Time      `json:"finalize_after,omitempty"`
	FinishedAt    *time.Time      `json:"finished_at,omitempty"`
}

// Open reports whether the move is not over: copying, or switched and keeping the old data.
func (m *Move) Open() bool { return m.State == MoveCopying || m.State == MoveSwitched }

// ErrMoveInProgress means a tenant already has a move that is not over.
var ErrMoveInProgress = errors.New("tenancycatalog: the tenant has a move in progress")

// ErrNoMove means a tenant has no move of the kind asked for.
var ErrNoMove = errors.New("tenancycatalog: no such move")

const selectMove = `SELECT id, tenant_id::text, from_isolation, coalesce(from_server, ''), to_isolation, coalesce(to_server, ''),
	state, step, progress, coalesce(last_error, ''), started_at, updated_at, switched_at, finalize_after, finished_at
	FROM tenancy.moves `

func scanMove(row pgx.Row) (*Move, error) {
	var m Move
	err := row.Scan(&m.ID, &m.TenantID, &m.From.Isolation, &m.From.Server, &m.To.Isolation, &m.To.Server,
		&m.State, &m.Step, &m.Progress, &m.LastError, &m.StartedAt, &m.UpdatedAt, &m.SwitchedAt, &m.FinalizeAfter, &m.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoMove
	}
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: moves: %w", err)
	}
	return &m, nil
}

// StartMove records a new move of the tenant from one placement to another, in state copying.
// It returns ErrMoveInProgress when the tenant has a move that is not over.
func (c *Catalog) StartMove(ctx context.Context, id string, from, to Placement) (*Move, error) {
	m, err := scanMove(c.pool.QueryRow(ctx, `INSERT INTO tenancy.moves (tenant_id, from_isolation, from_server, to_isolation, to_server, state, step)
		VALUES ($1, $2, NULLIF($3, ''), $4, NULLIF($5, ''), 'copying', 'prepare')
		RETURNING id, tenant_id::text, from_isolation, coalesce(from_server, ''), to_isolation, coalesce(to_server, ''),
			state, step, progress, coalesce(last_error, ''), started_at, updated_at, switched_at, finalize_after, finished_at`,
		id, from.Isolation, from.Server, to.Isolation, to.Server))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return nil, ErrMoveInProgress
	}
	return m, err
}

// OpenMove returns the tenant's move that is not over, or ErrNoMove.
func (c *Catalog) OpenMove(ctx context.Context, id string) (*Move, error) {
	if !tenancy.IsID(id) {
		return nil, ErrNoMove
	}
	return scanMove(c.pool.QueryRow(ctx, selectMove+`WHERE tenant_id = $1 AND state IN ('copying', 'switched')`, id))
}

// LastMove returns the tenant's latest move, or ErrNoMove.
func (c *Catalog) LastMove(ctx context.Context, id string) (*Move, error) {
	if !tenancy.IsID(id) {
		return nil, ErrNoMove
	}
	return scanMove(c.pool.QueryRow(ctx, selectMove+`WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1`, id))
}

// MovesDue returns the switched moves whose grace period has passed at now: their old
// placement's data may be removed (finalized).
func (c *Catalog) MovesDue(ctx context.Context, now time.Time) ([]*Move, error) {
	rows, err := c.pool.Query(ctx, selectMove+`WHERE state = 'switched' AND finalize_after <= $1 ORDER BY id`, now)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Move, error) { return scanMove(r) })
}

// RecordMove records an open move's step and progress (any value that marshals to JSON) and
// clears its last error.
func (c *Catalog) RecordMove(ctx context.Context, moveID int64, step string, progress any) error {
	p, err := json.Marshal(progress)
	if err != nil {
		return err
	}
	_, err = c.pool.Exec(ctx, `UPDATE tenancy.moves SET step = $2, progress = $3, last_error = NULL, updated_at = now()
		WHERE id = $1`, moveID, step, p)
	return err
}

// RecordMoveError records why an open move stopped, for `tenancy tenant show`.
func (c *Catalog) RecordMoveError(ctx context.Context, moveID int64, cause error) error {
	_, err := c.pool.Exec(ctx, `UPDATE tenancy.moves SET last_error = $2, updated_at = now() WHERE id = $1`, moveID, cause.Error())
	return err
}

// EndMove marks a move aborted (from copying) or finalized (from switched).
func (c *Catalog) EndMove(ctx context.Context, moveID int64, state MoveState) error {
	from := MoveCopying
	if state == MoveFinalized {
		from = MoveSwitched
	} else if state != MoveAborted {
		return fmt.Errorf("tenancycatalog: a move ends aborted or finalized, not %s", state)
	}
	tag, err := c.pool.Exec(ctx, `UPDATE tenancy.moves SET state = $2, finished_at = now(), updated_at = now(), last_error = NULL
		WHERE id = $1 AND state = $3`, moveID, state, from)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: move %d is not %s", ErrNoMove, moveID, from)
	}
	return nil
}

// SwitchMove is a move's switch, in one catalog transaction: the tenant's placement becomes the
// move's target (every instance hears of it, as of any change to a tenant), the migration ledger
// follows it (version: the tenant line's version in the new placement), the move becomes
// switched, keeping the old placement's data until finalizeAfter; inTx runs in the same
// transaction (the fences of placements in the catalog's database). The tenant must still be
// where the move started; otherwise nothing changes and ErrNoMove is returned.
func (c *Catalog) SwitchMove(ctx context.Context, m *Move, version int, finalizeAfter time.Time, inTx func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		server, database := any(nil), any(nil)
		if m.To.Isolation == tenancy.IsolationDatabase {
			server, database = m.To.Server, DatabaseName(m.TenantID)
		}
		tag, err := tx.Exec(ctx, `UPDATE tenancy.tenants SET isolation = $2, server = $3, database_name = $4
			WHERE id = $1 AND isolation = $5 AND coalesce(server, '') = $6`,
			m.TenantID, m.To.Isolation, server, database, m.From.Isolation, m.From.Server)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: tenant %s is no longer in %s", ErrNoMove, m.TenantID, m.From)
		}
		if tag, err = tx.Exec(ctx, `UPDATE tenancy.moves SET state = 'switched', step = 'switched', switched_at = now(),
			finalize_after = $2, updated_at = now(), last_error = NULL WHERE id = $1 AND state = 'copying'`, m.ID, finalizeAfter); err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: move %d is not copying", ErrNoMove, m.ID)
		}
		if m.To.Isolation == tenancy.IsolationShared {
			_, err = tx.Exec(ctx, `DELETE FROM tenancy.tenant_line WHERE target = $1`, m.TenantID)
		} else {
			support := 0
			if m.To.Isolation == tenancy.IsolationDatabase {
				support = SupportVersion
			}
			err = RecordLine(ctx, tx, LineEntry{Target: m.TenantID, TenantID: m.TenantID, Version: version, Support: support})
		}
		if err != nil {
			return err
		}
		if inTx != nil {
			return inTx(tx)
		}
		return nil
	})
}

// FencesTable is the table of the fences (regclass text), for the audit.
const FencesTable = "tenancy.fences"

// FenceCheckSQL is the scoping statement's column that refuses a tenant held back or fenced out
// by a move (SQLSTATE TNCY3, from tenancy.fenced) before the unit runs. proof, placement and
// unitKey name the statement's parameters: the tenant's proof (which the statement's earlier
// columns set as app.tenant_proof, which the fences' policy reads), the placement's fence name,
// and the tenant's unit key (UnitKey). A fence saying moved refuses every unit; a unit that may
// write takes the move's barrier shared, without waiting, and is refused while a switch holds
// it. An uncorrelated subquery and a CASE: PostgreSQL evaluates them when their column is, after
// the earlier ones. Names and operators are qualified: the statement runs under a schema
// tenant's search_path.
func FenceCheckSQL(proof, placement, unitKey string) string {
	return "COALESCE((SELECT tenancy.fenced(f.state) FROM tenancy.fences f WHERE f.proof OPERATOR(pg_catalog.=) " + proof +
		"::text AND f.placement OPERATOR(pg_catalog.=) " + placement + "::text AND f.state OPERATOR(pg_catalog.=) 'moved'), " +
		"CASE WHEN NOT pg_catalog.current_setting('transaction_read_only')::pg_catalog.bool AND NOT pg_catalog.pg_try_advisory_xact_lock_shared(" +
		unitKey + "::pg_catalog.int8) THEN tenancy.fenced('switching') END)"
}

// UnitKey is the key of tenant id's move barrier (an advisory lock): 64 bits of its proof under
// key, which links it to no tenant in pg_locks.
func UnitKey(key *BindingKey, id string) int64 { return ProofUnitKey(key.Proof(id)) }

// ProofUnitKey is UnitKey of the tenant whose proof (BindingKey.Proof) this is.
func ProofUnitKey(proof string) int64 {
	v, _ := strconv.ParseUint(proof[:16], 16, 64)
	return int64(v)
}

// fencesPolicy is the one policy of tenancy.fences, as pg_get_expr shows it.
const fencesPolicy = `(proof = current_setting('app.tenant_proof'::text, true))`

// FencesAsMade reports whether tenancy.fences (oid table) is as the catalog's migration made it:
// row-level security on, and every policy a permissive SELECT one that reads the fences of the
// transaction's own proof, which only the tenant's binding can make.
func FencesAsMade(ctx context.Context, q Querier, table uint32) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT c.relrowsecurity
		   AND EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid)
		   AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid
		         AND NOT (p.polcmd = 'r' AND p.polpermissive AND pg_get_expr(p.polqual, p.polrelid) = $2))
		  FROM pg_class c WHERE c.oid = $1`, table, fencesPolicy).Scan(&ok)
	return ok, err
}

// FencesRepair returns the SQL that makes tenancy.fences (oid table) as the migration made it
// again: the other policies dropped, row-level security on, the catalog's policy there, writes
// revoked from PUBLIC and role.
func FencesRepair(ctx context.Context, q Querier, table uint32, role string) (string, error) {
	rows, err := q.Query(ctx, `SELECT p.polname FROM pg_policy p WHERE p.polrelid = $1
		AND NOT (p.polcmd = 'r' AND p.polpermissive AND pg_get_expr(p.polqual, p.polrelid) = $2) ORDER BY 1`, table, fencesPolicy)
	if err != nil {
		return "", err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	var fix []string
	for _, n := range names {
		fix = append(fix, "DROP POLICY "+pgx.Identifier{n}.Sanitize()+" ON tenancy.fences;")
	}
	fix = append(fix, "ALTER TABLE tenancy.fences ENABLE ROW LEVEL SECURITY;",
		"DROP POLICY IF EXISTS own_fences ON tenancy.fences;",
		"CREATE POLICY own_fences ON tenancy.fences FOR SELECT USING (proof OPERATOR(pg_catalog.=) pg_catalog.current_setting('app.tenant_proof', true));",
		"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tenancy.fences FROM PUBLIC, "+pgx.Identifier{role}.Sanitize()+";")
	return strings.Join(fix, "\n"), nil
}

// FenceState is what a fence lets through (see the catalog's sql/catalog/0014_move_fence.sql).
type FenceState string

const (
	// FenceOpen lets the tenant's units through: a move is under way from this placement.
	FenceOpen FenceState = "open"
	// FenceMoved refuses all of the tenant's units of work: it lives elsewhere now.
	FenceMoved FenceState = "moved"
)

// Fence closes placement (a FenceName) to the tenant's units of work in the database behind q,
// or changes the state of its fence there. key is the binding key: a fence is found by the
// tenant's proof, which no other tenant can make.
func Fence(ctx context.Context, q Querier, key *BindingKey, id, placement string, state FenceState, moveID int64) error {
	_, err := q.Exec(ctx, `INSERT INTO tenancy.fences (proof, placement, tenant_id, state, move_id) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (proof, placement) DO UPDATE SET state = EXCLUDED.state, move_id = EXCLUDED.move_id, since = now()`,
		key.Proof(id), placement, id, state, moveID)
	return err
}

// Unfence opens placement to the tenant again in the database behind q.
func Unfence(ctx context.Context, q Querier, key *BindingKey, id, placement string) error {
	_, err := q.Exec(ctx, `DELETE FROM tenancy.fences WHERE proof = $1 AND placement = $2`, key.Proof(id), placement)
	return err
}

// FenceOf returns the state of the tenant's fence on placement in the database behind q, "" when
// there is none.
func FenceOf(ctx context.Context, q Querier, key *BindingKey, id, placement string) (FenceState, error) {
	var st FenceState
	err := q.QueryRow(ctx, `SELECT state FROM tenancy.fences WHERE proof = $1 AND placement = $2`, key.Proof(id), placement).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return st, err
}

// captureTrigger names a move's capture triggers.
func captureTrigger(moveID int64) string { return "tenancy_move_" + strconv.FormatInt(moveID, 10) }

// Capture adds to table (in the database behind q) the trigger that records, under label, the
// primary key (the columns pk) of every row of the tenant id that changes, for move moveID (see
// TakeChanges); it also holds every such write to the move's barrier (unitKey, UnitKey) and to
// the tenant's fence on placement (a fence name). Adding it waits for the table's writers in
// flight, at most lockTimeout (writers queued behind it wait too), then fails with SQLSTATE
// 55P03.
func Capture(ctx context.Context, q Beginner, moveID int64, table pgx.Identifier, label, placement, id string, unitKey int64, pk []string, lockTimeout time.Duration) error {
	if !tenancy.IsID(id) {
		return fmt.Errorf("tenancycatalog: capture: %q is not a tenant ID", id)
	}
	args := []string{quoteLiteral(strconv.FormatInt(moveID, 10)), quoteLiteral(label), quoteLiteral(placement),
		quoteLiteral(strconv.FormatInt(unitKey, 10))}
	for _, c := range pk {
		args = append(args, quoteLiteral(c))
	}
	argList := strings.Join(args, ", ")
	name := pgx.Identifier{captureTrigger(moveID)}.Sanitize()
	tbl := table.Sanitize()
	lit := quoteLiteral(id)
	return pgx.BeginFunc(ctx, q, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", strconv.FormatInt(lockTimeout.Milliseconds(), 10)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`DROP TRIGGER IF EXISTS %[1]s ON %[2]s; DROP TRIGGER IF EXISTS %[5]s ON %[2]s; DROP TRIGGER IF EXISTS %[6]s ON %[2]s;
			CREATE TRIGGER %[1]s AFTER INSERT ON %[2]s FOR EACH ROW WHEN (NEW.tenant_id = %[3]s)
				EXECUTE FUNCTION tenancy.capture_change(%[4]s);
			CREATE TRIGGER %[5]s AFTER UPDATE ON %[2]s FOR EACH ROW WHEN (OLD.tenant_id = %[3]s OR NEW.tenant_id = %[3]s)
				EXECUTE FUNCTION tenancy.capture_change(%[4]s);
			CREATE TRIGGER %[6]s AFTER DELETE ON %[2]s FOR EACH ROW WHEN (OLD.tenant_id = %[3]s)
				EXECUTE FUNCTION tenancy.capture_change(%[4]s)`,
			name, tbl, lit, argList,
			pgx.Identifier{captureTrigger(moveID) + "_u"}.Sanitize(), pgx.Identifier{captureTrigger(moveID) + "_d"}.Sanitize()))
		return err
	})
}

// StopCapture drops move moveID's capture triggers from table, if it has them. Dropping a trigger
// locks the table against every reader until it is done; it waits at most lockTimeout for the
// transactions in flight on the table (queued readers wait behind it), then fails with SQLSTATE
// 55P03, the triggers left in place.
func StopCapture(ctx context.Context, q Beginner, moveID int64, table pgx.Identifier, lockTimeout time.Duration) error {
	tbl := table.Sanitize()
	return pgx.BeginFunc(ctx, q, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", strconv.FormatInt(lockTimeout.Milliseconds(), 10)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s; DROP TRIGGER IF EXISTS %s ON %s; DROP TRIGGER IF EXISTS %s ON %s",
			pgx.Identifier{captureTrigger(moveID)}.Sanitize(), tbl,
			pgx.Identifier{captureTrigger(moveID) + "_u"}.Sanitize(), tbl,
			pgx.Identifier{captureTrigger(moveID) + "_d"}.Sanitize(), tbl))
		return err
	})
}

// Change is the key of a row a moving tenant changed, under its table's label.
type Change struct {
	Table string
	Key   json.RawMessage
}

// TakeChanges removes and returns up to limit of move moveID's recorded changes, oldest first,
// in q's transaction: roll it back and they are recorded still. A change recorded by a
// transaction that commits later is left for the next call.
func TakeChanges(ctx context.Context, q Querier, moveID int64, limit int) ([]Change, error) {
	rows, err := q.Query(ctx, `DELETE FROM tenancy.move_changes WHERE seq IN (
			SELECT seq FROM tenancy.move_changes WHERE move_id = $1 ORDER BY seq LIMIT $2)
		RETURNING tbl, key`, moveID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Change, error) {
		var c Change
		err := r.Scan(&c.Table, &c.Key)
		return c, err
	})
}

// ClearChanges forgets move moveID's recorded changes.
func ClearChanges(ctx context.Context, q Querier, moveID int64) error {
	_, err := q.Exec(ctx, `DELETE FROM tenancy.move_changes WHERE move_id = $1`, moveID)
	return err
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
