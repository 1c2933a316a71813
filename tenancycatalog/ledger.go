package tenancycatalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/lockkey"
)

// Querier runs SQL on the catalog's database: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx — a
// transaction when a ledger write must commit with other work.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Beginner is what a migration line is applied on: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// SharedTarget is the ledger's target for the shared line's progress in the tenant line ledger.
const SharedTarget = "shared"

// LineEntry is one target's row in the ledger of the tenant line: "shared", or a schema or
// database tenant (Target is then the tenant's ID).
type LineEntry struct {
	Target   string
	TenantID string // "" for shared
	Version  int    // the last migration of the tenant line applied there
	// Support is the isolation support version installed in a database tenant's database;
	// 0 leaves what is recorded.
	Support int
}

// LineVersion returns the version the ledger records for target, 0 when it records none.
func LineVersion(ctx context.Context, q Querier, target string) (int, error) {
	var version int
	err := q.QueryRow(ctx, `SELECT version FROM tenancy.tenant_line WHERE target = $1`, target).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return version, err
}

// RecordLine records e in the ledger and clears the target's last error.
func RecordLine(ctx context.Context, q Querier, e LineEntry) error {
	_, err := q.Exec(ctx, `INSERT INTO tenancy.tenant_line (target, tenant_id, version, support, last_error, updated_at)
		VALUES ($1, $2, $3, $4, NULL, now())
		ON CONFLICT (target) DO UPDATE SET version = EXCLUDED.version,
			support = CASE WHEN $4 = 0 THEN tenancy.tenant_line.support ELSE EXCLUDED.support END,
			last_error = NULL, updated_at = now()`,
		e.Target, nullIfEmpty(e.TenantID), e.Version, e.Support)
	return err
}

// RecordLineError records why the last run failed on target (shown by tenancy migrate status),
// keeping its version.
func RecordLineError(ctx context.Context, q Querier, target, tenantID string, cause error) error {
	_, err := q.Exec(ctx, `INSERT INTO tenancy.tenant_line (target, tenant_id, version, last_error, updated_at)
		VALUES ($1, $2, 0, $3, now())
		ON CONFLICT (target) DO UPDATE SET last_error = EXCLUDED.last_error, updated_at = now()`,
		target, nullIfEmpty(tenantID), cause.Error())
	return err
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// LineTarget is a target of the tenant line with what the ledger says of it.
type LineTarget struct {
	Name      string // "shared" or the tenant's slug
	TenantID  string // "" for shared
	Isolation tenancy.Isolation
	Status    tenancy.Status
	Server    string // database tenants: the server alias
	Database  string // database tenants: the database
	Version   int
	Support   int // database tenants: the isolation support version installed
	LastError string
}

const lineStatusSQL = `
SELECT * FROM (
SELECT 'shared' AS name, '' AS tenant_id, 'shared' AS isolation, '' AS status, '' AS server, '' AS database,
       coalesce(l.version, 0) AS version, 0 AS support, coalesce(l.last_error, '') AS last_error
  FROM (SELECT 1) one LEFT JOIN tenancy.tenant_line l ON l.target = 'shared'
UNION ALL
SELECT t.slug, t.id::text, t.isolation, t.status, coalesce(t.server, ''), coalesce(t.database_name, ''),
       coalesce(l.version, 0), CASE WHEN t.isolation = 'database' THEN coalesce(l.support, 0) ELSE 0 END,
       coalesce(l.last_error, '')
  FROM tenancy.tenants t LEFT JOIN tenancy.tenant_line l ON l.tenant_id = t.id
 WHERE t.isolation <> 'shared' AND t.status NOT IN ('deleted', 'provisioning')) s
 WHERE NOT $3::bool OR s.version < $1 OR (s.isolation = 'database' AND s.support < $2)
 ORDER BY 1`

// LineStatus returns the tenant line's targets ("shared", and every schema and database tenant
// that is neither deleted nor provisioning) by name, in one query.
func LineStatus(ctx context.Context, q Querier) ([]LineTarget, error) {
	return lineStatus(ctx, q, 0, false)
}

// LineBehind returns the targets LineStatus returns whose version is below latest or (database
// tenants) whose isolation support is below SupportVersion, in one query: a no-op deploy over
// thousands of tenants reads only the ledger.
func LineBehind(ctx context.Context, q Querier, latest int) ([]LineTarget, error) {
	return lineStatus(ctx, q, latest, true)
}

func lineStatus(ctx context.Context, q Querier, latest int, behind bool) ([]LineTarget, error) {
	rows, err := q.Query(ctx, lineStatusSQL, latest, SupportVersion, behind)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (LineTarget, error) {
		var t LineTarget
		err := r.Scan(&t.Name, &t.TenantID, &t.Isolation, &t.Status, &t.Server, &t.Database, &t.Version, &t.Support, &t.LastError)
		return t, err
	})
}

// sharedLedger records the shared line's applied versions (the catalog's database).
var sharedLedger = pgx.Identifier{"tenancy", "shared_line"}

// ApplySharedLine applies the pending migrations of the shared line with search_path set to
// schema (quoted), once, under its lock: concurrent runners wait and find nothing left.
func ApplySharedLine(ctx context.Context, db Beginner, line []Migration, schema string) ([]int, error) {
	return apply(ctx, db, migrationLine{Migrations: line, Ledger: sharedLedger,
		Lock: lockkey.SharedLine, SearchPath: schema})
}

// SharedLineApplied returns the versions of the shared line applied so far.
func SharedLineApplied(ctx context.Context, q Querier) ([]int, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, sharedLedger.Sanitize()).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT version FROM `+sharedLedger.Sanitize())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// tenantDatabaseLedger records the tenant line's applied versions inside a database tenant's own
// database, where its truth is kept (the catalog's ledger mirrors it).
var tenantDatabaseLedger = pgx.Identifier{"tenancy", "tenant_migrations"}

// ApplyTenantDatabaseLine applies the pending tenant line in the database behind conn (a
// database tenant's, or a template), in its public schema, and returns what it applied and the
// version reached. With tryLock it returns ErrLineLocked at once when another runner holds the
// line's lock there.
func ApplyTenantDatabaseLine(ctx context.Context, conn *pgx.Conn, line []Migration, tryLock bool) ([]int, int, error) {
	applied, err := apply(ctx, conn, migrationLine{Migrations: line, Ledger: tenantDatabaseLedger,
		Lock: lockkey.TenantDatabase, SearchPath: pgx.Identifier{"public"}.Sanitize(), TryLock: tryLock})
	if err != nil {
		return nil, 0, err
	}
	var version int
	err = conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+tenantDatabaseLedger.Sanitize()).Scan(&version)
	return applied, version, err
}

// Tag is a digest of the catalog's database name and its binding key's fingerprint: what
// the names of things a catalog makes outside its database (template databases) carry, so that
// another catalog on the same server never takes them for its own.
func (c *Catalog) Tag(ctx context.Context) (string, error) {
	key, err := c.BindingKey(ctx)
	if err != nil {
		return "", err
	}
	return tag(c.pool.Config().ConnConfig.Database, key), nil
}

// tag is Tag of the catalog in database whose key is key.
func tag(database string, key *BindingKey) string {
	h := sha256.Sum256([]byte(database + "\x00" + key.fingerprint()))
	return hex.EncodeToString(h[:6])
}

// TenantLine is what the ledger says of one schema or database tenant's line.
type TenantLine struct {
	Version   int       `json:"version"`
	Support   int       `json:"support,omitempty"` // database tenants: the isolation support version installed
	LastError string    `json:"last_error,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// LineOf returns the ledger's record of the tenant's line; ok is false when nothing was ever
// applied to it (a shared tenant's tables are the shared line's).
func LineOf(ctx context.Context, q Querier, tenantID string) (line TenantLine, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT coalesce(version, 0), coalesce(support, 0), coalesce(last_error, ''), updated_at
		FROM tenancy.tenant_line WHERE tenant_id = $1`, tenantID).Scan(&line.Version, &line.Support, &line.LastError, &line.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return TenantLine{}, false, nil
	}
	return line, err == nil, err
}
