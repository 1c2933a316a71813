package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"testing"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancyaudit"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// newEnv is a database of the test's own with the catalog, this application's shared line and its
// tenant line, ready to make tenants of the three models (dropped when the test ends).
func newEnv(t *testing.T) *tenancytest.Env {
	t.Helper()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: os.DirFS("migrations/tenant")})
	shared, err := os.ReadFile("migrations/shared/0001_colors.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Pool.Exec(context.Background(), string(shared)); err != nil {
		t.Fatal(err)
	}
	return env
}

// notesOf is the application seen by the isolation harness: a tenant creates a user and a note.
func notesOf(n *Notes) tenancytest.Isolated {
	return tenancytest.Isolated{
		Create: func(ctx context.Context, _ *tenancypgx.DB) ([]string, error) {
			u, err := n.AddUser(ctx, tenancytest.UniqueName("someone")+"@example.com")
			if err != nil {
				return nil, err
			}
			note, err := n.AddNote(ctx, u.ID, "meeting at noon", "blue")
			return []string{note.ID}, err
		},
		List: func(ctx context.Context, _ *tenancypgx.DB) ([]string, error) {
			notes, err := n.ListNotes(ctx)
			var ids []string
			for _, note := range notes {
				ids = append(ids, note.ID)
			}
			return ids, err
		},
		Get: func(ctx context.Context, _ *tenancypgx.DB, id string) (bool, error) {
			_, ok, err := n.GetNote(ctx, id)
			return ok, err
		},
	}
}

// The application's notes never cross tenants, in any model or between models.
func TestNotesAreIsolated(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	tenancytest.RequireIsolated(t, env, notesOf(&Notes{db: env.DB, shared: env.Runtime}))
}

// The same, through the HTTP API behind the tenant middleware.
func TestNotesAPIIsIsolated(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	mw, err := tenancyhttp.Middleware(env.Catalog, &tenancyhttp.Config{Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("localhost")}})
	if err != nil {
		t.Fatal(err)
	}
	api := mw((&Notes{db: env.DB, shared: env.Runtime}).Routes(slog.Default()))
	tenancytest.RequireIsolatedHTTP(t, env, tenancytest.HTTPIsolated{
		Handler: api,
		Create: func(c *tenancytest.Client) ([]string, error) {
			var u User
			if err := decode(c.Do("POST", "/users", `{"email":"`+tenancytest.UniqueName("x")+`@example.com"}`).Body.Bytes(), &u); err != nil {
				return nil, err
			}
			var note Note
			err := decode(c.Do("POST", "/notes", `{"author_id":"`+u.ID+`","body":"hello","color":"green"}`).Body.Bytes(), &note)
			return []string{note.ID}, err
		},
		List: func(c *tenancytest.Client) ([]string, error) {
			var notes []Note
			err := decode(c.Do("GET", "/notes", "").Body.Bytes(), &notes)
			var ids []string
			for _, n := range notes {
				ids = append(ids, n.ID)
			}
			return ids, err
		},
		Get: func(c *tenancytest.Client, id string) (bool, error) {
			return c.Do("GET", "/notes/"+id, "").Code == 200, nil
		},
	})
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return errors.New("unexpected response: " + string(body))
	}
	return nil
}

// A note cannot name another tenant's user as its author: the reference leads with tenant_id.
func TestNoteCannotPointAtAnotherTenantsUser(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	n := &Notes{db: env.DB, shared: env.Runtime}
	for _, model := range tenancytest.Models {
		a, b := env.Pair(t, model)
		ua, err := n.AddUser(tenancytest.Context(a), "a@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.AddNote(tenancytest.Context(a), ua.ID, "A's own", ""); err != nil {
			t.Fatalf("control (%s): A writes a note as its own user: %v", model, err)
		}
		_, err = n.AddNote(tenancytest.Context(b), ua.ID, "as A's user", "")
		if p := tenancyhttp.ProblemFor(err); err == nil || p.Status != 400 {
			t.Fatalf("%s: B wrote a note as A's user: %v", model, err)
		}
	}
}

// The schema passes the audit tenancy doctor runs, in the catalog's database and each database
// tenant's.
func TestSchemaPassesTheAudit(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	for _, m := range tenancytest.Models {
		env.NewTenant(t, m)
	}
	rep, err := tenancyaudit.Audit(context.Background(), env.Catalog, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Databases) != 2 {
		rep.WriteText(os.Stderr)
		t.Fatalf("audit: %d finding(s) over %d database(s)", len(rep.Findings), len(rep.Databases))
	}
	var _ = tenancy.IsolationShared
}
