package tenancypgx

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// schemaTx is the pgx.Tx a schema-model tenant's fn receives. PostgreSQL re-plans a prepared
// statement when search_path changes, and refuses ("cached plan must not change result type")
// when the re-planned statement returns other columns — which happens mid-rollout, when one
// tenant's schema has a migration another's has not. pgx caches prepared statements per
// connection by SQL text, so schemaTx gives each schema its own SQL text: it prefixes every
// statement with a comment naming the schema. A cached statement then only ever runs in the
// schema it was prepared in; rows always come from the tenant's own tables.
type schemaTx struct {
	pgx.Tx
	tag string // "/* tenant_… */ "
}

func schemaTag(schema string) string { return "/* " + schema + " */ " }

func (tx *schemaTx) Begin(ctx context.Context) (pgx.Tx, error) {
	nested, err := tx.Tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &schemaTx{Tx: nested, tag: tx.tag}, nil
}

func (tx *schemaTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return tx.Tx.Exec(ctx, tx.tag+sql, args...)
}

func (tx *schemaTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return tx.Tx.Query(ctx, tx.tag+sql, args...)
}

func (tx *schemaTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return tx.Tx.QueryRow(ctx, tx.tag+sql, args...)
}

func (tx *schemaTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return tx.Tx.Prepare(ctx, name, tx.tag+sql)
}

func (tx *schemaTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	for _, q := range b.QueuedQueries {
		q.SQL = tx.tag + q.SQL
	}
	return tx.Tx.SendBatch(ctx, b)
}
