package tenancypgx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// unitTx is the pgx.Tx a unit of work's fn receives.
//
// For a schema-model tenant it prefixes every statement with a comment naming the schema.
// PostgreSQL re-plans a prepared statement when search_path changes, and refuses ("cached plan
// must not change result type") when the re-planned statement returns other columns — which
// happens mid-rollout, when one tenant's schema has a migration another's has not. pgx caches
// prepared statements per connection by SQL text, so each schema gets its own SQL text: a cached
// statement then only ever runs in the schema it was prepared in.
//
// Statements fn prepares by name live for the unit of work: Tx deallocates them when it ends, so
// that a name never reaches the next tenant on the connection (and the next unit may prepare it
// again). A batch fn sends is not altered. CopyFrom runs as multi-row INSERTs, since PostgreSQL
// refuses COPY FROM into a table with row-level security.
type unitTx struct {
	pgx.Tx
	tag      string          // "/* tenant_… */ ", or "" outside the schema model
	prepared map[string]bool // names fn prepared
}

func schemaTag(schema string) string { return "/* " + schema + " */ " }

// text returns what to send for sql: a name fn prepared as it is, anything else tagged.
func (tx *unitTx) text(sql string) string {
	if tx.tag == "" || tx.prepared[sql] {
		return sql
	}
	return tx.tag + sql
}

func (tx *unitTx) Begin(ctx context.Context) (pgx.Tx, error) {
	nested, err := tx.Tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &unitTx{Tx: nested, tag: tx.tag, prepared: tx.prepared}, nil
}

func (tx *unitTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return tx.Tx.Exec(ctx, tx.text(sql), args...)
}

func (tx *unitTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return tx.Tx.Query(ctx, tx.text(sql), args...)
}

func (tx *unitTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return tx.Tx.QueryRow(ctx, tx.text(sql), args...)
}

func (tx *unitTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if name != "" {
		if tx.prepared == nil {
			tx.prepared = map[string]bool{}
		}
		tx.prepared[name] = true
	}
	return tx.Tx.Prepare(ctx, name, tx.tag+sql)
}

// SendBatch sends a copy of b with each statement's text as Exec would send it: b stays as the
// caller queued it, to be sent again — by another tenant, on another connection (pgx keeps in a
// sent batch the statements it prepared on the connection it was sent on).
func (tx *unitTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if b == nil {
		return tx.Tx.SendBatch(ctx, b)
	}
	sent := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries))}
	for _, q := range b.QueuedQueries {
		c := sent.Queue(tx.text(q.SQL), q.Arguments...)
		c.Fn = q.Fn
	}
	return tx.Tx.SendBatch(ctx, sent)
}

// copyChunk bounds the rows of one INSERT: PostgreSQL takes at most 65,535 parameters.
const copyChunk = 1000

// CopyFrom inserts the rows of src into table with multi-row INSERTs of up to copyChunk rows, in
// the unit's transaction: PostgreSQL refuses COPY FROM into tables with row-level security, and a
// tenant table has it. It returns the number of rows inserted.
func (tx *unitTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if len(columns) == 0 {
		return 0, fmt.Errorf("tenancypgx: CopyFrom into %s needs columns", table.Sanitize())
	}
	rowsPer := min(copyChunk, 65535/len(columns))
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	head := "INSERT INTO " + table.Sanitize() + " (" + strings.Join(quoted, ", ") + ") VALUES "
	var n int64
	var args []any
	rows := 0
	flush := func() error {
		if rows == 0 {
			return nil
		}
		var sb strings.Builder
		sb.WriteString(head)
		for r := range rows {
			if r > 0 {
				sb.WriteString(", ")
			}
			sb.WriteByte('(')
			for c := range columns {
				if c > 0 {
					sb.WriteString(", ")
				}
				fmt.Fprintf(&sb, "$%d", r*len(columns)+c+1)
			}
			sb.WriteByte(')')
		}
		tag, err := tx.Exec(ctx, sb.String(), args...)
		n += tag.RowsAffected()
		args, rows = args[:0], 0
		return err
	}
	for src.Next() {
		vals, err := src.Values()
		if err != nil {
			return n, err
		}
		if len(vals) != len(columns) {
			return n, fmt.Errorf("tenancypgx: CopyFrom into %s: a row has %d values for %d columns", table.Sanitize(), len(vals), len(columns))
		}
		args = append(args, vals...)
		if rows++; rows == rowsPer {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := src.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

// deallocate drops the statements fn prepared by name from conn (and from pgx's cache of them).
// It reports whether that worked; a connection where it did not must not be reused.
func (tx *unitTx) deallocate(ctx context.Context, conn *pgx.Conn) bool {
	for name := range tx.prepared {
		if err := conn.Deallocate(ctx, name); err != nil {
			return false
		}
	}
	return true
}

// schemaStatementsKey keeps, on each connection, the schema tenants' statements the
// single-statement helpers prepared on it (see schemaStatements).
const schemaStatementsKey = "tenancy.schema_statements"

// schemaStatementCap bounds the statements schemaStatements keeps on one connection: each is one
// more entry for the session reset to list at the end of every unit of work on it.
const schemaStatementCap = 64

// schemaStatements are the statements of schema tenants the single-statement helpers prepared on
// one connection, oldest first. pgx prepares a batch's new statements before running any of them,
// under the connection's search_path, not the tenant's; so the first time a schema tenant's
// statement runs on a connection it is prepared by name inside the scoped transaction, after the
// scoping (three round trips), and from then on it goes in the scoping's own batch: one round
// trip, like a shared tenant's. Its text is tagged with the schema (schemaTag), so it only ever
// runs where it was prepared. pgx keeps statements prepared by name until they are deallocated:
// the oldest goes when schemaStatementCap is reached, and one the server refuses to reuse (the
// schema's table changed shape) goes at once.
type schemaStatements struct {
	order []string
	has   map[string]bool
}

// schemaStatementsOf returns conn's registry.
func schemaStatementsOf(conn *pgx.Conn) *schemaStatements {
	data := conn.PgConn().CustomData()
	s, ok := data[schemaStatementsKey].(*schemaStatements)
	if !ok {
		s = &schemaStatements{has: map[string]bool{}}
		data[schemaStatementsKey] = s
	}
	return s
}

// prepare prepares tagged on conn, inside the scoped transaction, making room first.
func (s *schemaStatements) prepare(ctx context.Context, conn *pgx.Conn, tagged string) error {
	if len(s.order) >= schemaStatementCap {
		if err := s.drop(ctx, conn, s.order[0]); err != nil {
			return err
		}
	}
	if _, err := conn.Prepare(ctx, tagged, tagged); err != nil {
		return err
	}
	s.order = append(s.order, tagged)
	s.has[tagged] = true
	return nil
}

// drop deallocates tagged on conn and forgets it. The session reset counts the statements the
// driver prepared (see kept): the count to keep is one lower.
func (s *schemaStatements) drop(ctx context.Context, conn *pgx.Conn, tagged string) error {
	delete(s.has, tagged)
	if i := slices.Index(s.order, tagged); i >= 0 {
		s.order = slices.Delete(s.order, i, i+1)
	}
	data := conn.PgConn().CustomData()
	if n, ok := data[preparedKey].(int32); ok && n > 0 {
		data[preparedKey] = n - 1
	}
	return conn.Deallocate(ctx, tagged)
}

// stale reports whether err says a prepared statement can no longer run as prepared: its tables
// changed shape ("cached plan must not change result type") or it is gone.
func stale(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "0A000" || pgErr.Code == "26000")
}
