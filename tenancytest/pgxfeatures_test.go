package tenancytest_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancytest"
)

// The pgx features an application reaches for work unchanged in every model, bound to the tenant:
// named prepared statements, batches (a batch reused by the caller is not altered), CopyFrom and
// database/sql through SQLTx; large objects are refused with a clear error. Each tenant sees its
// own rows and none of the other's, in each model.
func TestPgxFeaturesInEveryModel(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: notesLine})
	for _, model := range tenancytest.Models {
		t.Run(string(model), func(t *testing.T) {
			a, b := env.Pair(t, model)
			ctxA, ctxB := tenancytest.Context(a), tenancytest.Context(b)
			bodies := func(ctx context.Context) []string {
				var out []string
				err := env.DB.Tx(ctx, func(tx pgx.Tx) error {
					rows, _ := tx.Query(ctx, `SELECT body FROM notes ORDER BY body`)
					var err error
					out, err = pgx.CollectRows(rows, pgx.RowTo[string])
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return out
			}

			// A named prepared statement, prepared by A and by B (same name, same text).
			for _, c := range []struct {
				ctx  context.Context
				body string
			}{{ctxA, "a-prepared"}, {ctxB, "b-prepared"}} {
				err := env.DB.Tx(c.ctx, func(tx pgx.Tx) error {
					if _, err := tx.Prepare(c.ctx, "add_note", `INSERT INTO notes (body) VALUES ($1)`); err != nil {
						return err
					}
					_, err := tx.Exec(c.ctx, "add_note", c.body)
					return err
				})
				if err != nil {
					t.Fatalf("prepared statement: %v", err)
				}
			}

			// A name prepared in a unit of work ends with it: the next unit cannot run it unprepared.
			err := env.DB.Tx(ctxB, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctxB, "add_note", "b-unprepared")
				return err
			})
			if err == nil {
				t.Fatal("a statement prepared by name in an earlier unit of work ran in a later one")
			}

			// One batch, sent by A then reused by B.
			batch := &pgx.Batch{}
			batch.Queue(`INSERT INTO notes (body) VALUES ('batched')`)
			batch.Queue(`SELECT count(*) FROM notes`)
			before := []string{batch.QueuedQueries[0].SQL, batch.QueuedQueries[1].SQL}
			for _, ctx := range []context.Context{ctxA, ctxB} {
				var n int
				err := env.DB.Tx(ctx, func(tx pgx.Tx) error {
					br := tx.SendBatch(ctx, batch)
					if _, err := br.Exec(); err != nil {
						br.Close()
						return err
					}
					if err := br.QueryRow().Scan(&n); err != nil {
						br.Close()
						return err
					}
					return br.Close()
				})
				if err != nil || n != 2 { // its prepared note and its batched one
					t.Fatalf("batch: %v, counted %d, want the tenant's 2", err, n)
				}
			}
			if batch.Len() != 2 || batch.QueuedQueries[0].SQL != before[0] || batch.QueuedQueries[1].SQL != before[1] {
				t.Fatalf("the caller's batch was altered: %d queries, %q", batch.Len(), []string{batch.QueuedQueries[0].SQL, batch.QueuedQueries[1].SQL})
			}

			// CopyFrom.
			err = env.DB.Tx(ctxA, func(tx pgx.Tx) error {
				n, err := tx.CopyFrom(ctxA, pgx.Identifier{"notes"}, []string{"body"}, pgx.CopyFromRows([][]any{{"a-copied-1"}, {"a-copied-2"}}))
				if err == nil && n != 2 {
					err = errors.New("copied the wrong number of rows")
				}
				return err
			})
			if err != nil {
				t.Fatalf("CopyFrom: %v", err)
			}

			// database/sql.
			err = env.DB.SQLTx(ctxB, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctxB, `INSERT INTO notes (body) VALUES ($1)`, "b-sql")
				return err
			})
			if err != nil {
				t.Fatalf("SQLTx: %v", err)
			}

			wantA := []string{"a-copied-1", "a-copied-2", "a-prepared", "batched"}
			wantB := []string{"b-prepared", "b-sql", "batched"}
			if got := bodies(ctxA); !slices.Equal(got, wantA) {
				t.Fatalf("A sees %q, want its own %q", got, wantA)
			}
			if got := bodies(ctxB); !slices.Equal(got, wantB) {
				t.Fatalf("B sees %q, want its own %q", got, wantB)
			}

			// Large objects have no tenant: refused, with PostgreSQL's permission error.
			err = env.DB.Tx(ctxA, func(tx pgx.Tx) error {
				lo := tx.LargeObjects()
				_, err := lo.Create(ctxA, 0)
				return err
			})
			if err == nil || !isPermissionDenied(err) {
				t.Fatalf("large object created, or refused unclearly: %v", err)
			}
		})
	}
	_ = tenancy.IsolationShared
}

func isPermissionDenied(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "42501"
}
