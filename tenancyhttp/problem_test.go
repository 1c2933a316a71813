package tenancyhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancytest"
)

// What PostgreSQL refuses because of a request's values is the request's fault: 4xx, never a
// 500. The errors are the real server's.
func TestProblemForDatabaseErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, tenancytest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL CHECK (length(name) < 5));
		INSERT INTO t VALUES (1, 'a')`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sql    string
		args   []any
		status int
		typ    string
	}{
		{`SELECT $1::text`, []any{"x\x00y"}, 400, tenancyhttp.ProblemBadRequest},     // NUL in text
		{`SELECT $1::uuid`, []any{"not-a-uuid"}, 400, tenancyhttp.ProblemBadRequest}, // invalid text representation
		{`SELECT 1/0`, nil, 400, tenancyhttp.ProblemBadRequest},
		{`SELECT $1::int2`, []any{"99999"}, 400, tenancyhttp.ProblemBadRequest}, // out of range
		{`INSERT INTO t VALUES (2, 'toolong')`, nil, 400, tenancyhttp.ProblemBadRequest},
		{`INSERT INTO t VALUES (3, NULL)`, nil, 400, tenancyhttp.ProblemBadRequest},
		{`INSERT INTO t VALUES (1, 'b')`, nil, 409, tenancyhttp.ProblemConflict},
		{`SELECT * FROM no_such_table`, nil, 500, tenancyhttp.ProblemInternal}, // the application's bug, not the request's
	}
	for _, tt := range tests {
		_, err := conn.Exec(ctx, tt.sql, tt.args...)
		if err == nil {
			t.Fatalf("%s: no error", tt.sql)
		}
		p := tenancyhttp.ProblemFor(fmt.Errorf("wrapped: %w", err))
		if p.Status != tt.status || p.Type != tt.typ {
			t.Errorf("%s (%v): %d %s, want %d %s", tt.sql, err, p.Status, p.Type, tt.status, tt.typ)
		}
	}
	if p := tenancyhttp.ProblemFor(errors.New("something else")); p.Status != http.StatusInternalServerError {
		t.Errorf("an unknown error: %d", p.Status)
	}
}
