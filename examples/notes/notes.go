package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancypgx"
)

// Notes is the application. Nothing in it names a tenant: every query of tenant data runs
// through db, bound to the tenant the middleware put in the request's context, in whichever model
// the tenant lives. Shared reference data (the colors) lives in the catalog's database, which a
// database tenant's transactions do not reach: it is read with the runtime pool, outside db.
type Notes struct {
	db     *tenancypgx.DB
	shared *pgxpool.Pool
}

// User is someone of the tenant who writes notes.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// Note is a note of the tenant.
type Note struct {
	ID        string    `json:"id"`
	AuthorID  string    `json:"author_id"`
	Body      string    `json:"body"`
	Color     string    `json:"color"`
	CreatedAt time.Time `json:"created_at"`
}

// errNoSuchColor is a 400: the color is not one of the shared table's.
var errNoSuchColor = errors.New("no such color")

// AddUser adds a user to the tenant in ctx.
func (n *Notes) AddUser(ctx context.Context, email string) (User, error) {
	var u User
	err := n.db.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1) RETURNING id::text, email`, email).Scan(&u.ID, &u.Email)
	return u, err
}

// AddNote adds a note by one of the tenant's users. The color must be one of the shared table
// colors, which every tenant reads; the author must be the tenant's own (the foreign key leads
// with tenant_id, so another tenant's user id fails like a made-up one).
func (n *Notes) AddNote(ctx context.Context, authorID, body, color string) (Note, error) {
	if color == "" {
		color = "yellow"
	}
	var known bool
	if err := n.shared.QueryRow(ctx, `SELECT EXISTS (SELECT FROM public.colors WHERE name = $1)`, color).Scan(&known); err != nil {
		return Note{}, err
	}
	if !known {
		return Note{}, errNoSuchColor
	}
	var note Note
	err := n.db.QueryRow(ctx, `INSERT INTO notes (author_id, body, color) VALUES ($1, $2, $3)
		RETURNING id::text, author_id::text, body, color, created_at`, authorID, body, color).
		Scan(&note.ID, &note.AuthorID, &note.Body, &note.Color, &note.CreatedAt)
	return note, err
}

// ListNotes returns the tenant's notes, newest first.
func (n *Notes) ListNotes(ctx context.Context) ([]Note, error) {
	rows, err := n.db.Query(ctx, `SELECT id::text, author_id::text, body, color, created_at FROM notes ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (note Note, err error) {
		err = r.Scan(&note.ID, &note.AuthorID, &note.Body, &note.Color, &note.CreatedAt)
		return note, err
	})
}

// GetNote returns one of the tenant's notes; another tenant's id is not found.
func (n *Notes) GetNote(ctx context.Context, id string) (Note, bool, error) {
	var note Note
	err := n.db.QueryRow(ctx, `SELECT id::text, author_id::text, body, color, created_at FROM notes WHERE id = $1`, id).
		Scan(&note.ID, &note.AuthorID, &note.Body, &note.Color, &note.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Note{}, false, nil
	}
	return note, err == nil, err
}

// Routes is the HTTP API; put the tenant middleware in front of it.
func (n *Notes) Routes(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		p := tenancyhttp.ProblemFor(err)
		if errors.Is(err, errNoSuchColor) {
			p = tenancyhttp.Problem{Type: tenancyhttp.ProblemBadRequest, Title: "Bad request", Status: http.StatusBadRequest, Detail: "unknown color", Field: "color"}
		}
		if p.Status >= 500 {
			log.ErrorContext(r.Context(), "notes: request failed", "path", r.URL.Path, "err", err)
		}
		tenancyhttp.WriteProblem(w, &p)
	}
	decode := func(w http.ResponseWriter, r *http.Request, v any) bool {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
			tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemBadRequest, Title: "Bad request", Status: http.StatusBadRequest, Detail: "the body is not the JSON expected"})
			return false
		}
		return true
	}
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /users", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Email string }
		if !decode(w, r, &in) {
			return
		}
		u, err := n.AddUser(r.Context(), in.Email)
		if err != nil {
			fail(w, r, err)
			return
		}
		reply(w, http.StatusCreated, u)
	})
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			AuthorID string `json:"author_id"`
			Body     string `json:"body"`
			Color    string `json:"color"`
		}
		if !decode(w, r, &in) {
			return
		}
		note, err := n.AddNote(r.Context(), in.AuthorID, in.Body, in.Color)
		if err != nil {
			fail(w, r, err)
			return
		}
		reply(w, http.StatusCreated, note)
	})
	mux.HandleFunc("GET /notes", func(w http.ResponseWriter, r *http.Request) {
		notes, err := n.ListNotes(r.Context())
		if err != nil {
			fail(w, r, err)
			return
		}
		reply(w, http.StatusOK, notes)
	})
	mux.HandleFunc("GET /notes/{id}", func(w http.ResponseWriter, r *http.Request) {
		note, ok, err := n.GetNote(r.Context(), r.PathValue("id"))
		switch {
		case err != nil:
			fail(w, r, err)
		case !ok:
			tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemNotFound, Title: "Not found", Status: http.StatusNotFound})
		default:
			reply(w, http.StatusOK, note)
		}
	})
	return mux
}
