package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The hand-written service the e2e scenario compares the reference service with: the same routes
// and tables, the tenant found in a map by Host, every query filtering by tenant_id by hand (in
// the tenant's schema for a schema tenant, on the tenant's own database for a database tenant),
// plain pgxpool as the tables' owner. No middleware, no rate limit, no bulkhead, no binding, no
// session reset: what a team writes before it needs any of them. The bench starts it as a process
// of its own, as the reference service runs in one: this binary, re-run with baselineEnv set.

// baselineEnv names the file of the baseline's configuration; set, the binary serves the baseline.
const baselineEnv = "TENANCY_BENCH_E2E_BASELINE"

type baselineTenant struct {
	Slug      string `json:"slug"`
	ID        string `json:"id"`
	Isolation string `json:"isolation"`
	Schema    string `json:"schema,omitempty"`   // schema tenants
	Database  string `json:"database,omitempty"` // database tenants: the URL of its database
}

type baselineConfig struct {
	Database string           `json:"database"` // the catalog's database (shared and schema tenants)
	Tenants  []baselineTenant `json:"tenants"`
}

func init() {
	if path := os.Getenv(baselineEnv); path != "" {
		if err := serveBaseline(path); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// baselineRoute is where one tenant's projects are.
type baselineRoute struct {
	id     string
	pool   *pgxpool.Pool
	get    string
	insert string
}

func serveBaseline(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg baselineConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	ctx := context.Background()
	shared, err := pgxpool.New(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer shared.Close()
	routes := map[string]*baselineRoute{}
	for _, t := range cfg.Tenants {
		r := &baselineRoute{id: t.ID, pool: shared}
		table := "projects"
		switch t.Isolation {
		case "schema":
			table = pgx.Identifier{t.Schema, "projects"}.Sanitize()
		case "database":
			pc, err := pgxpool.ParseConfig(t.Database)
			if err != nil {
				return err
			}
			pc.MaxConns = 2 // as the reference service's router gives each tenant
			if r.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
				return err
			}
			defer r.pool.Close()
		}
		r.get = `SELECT id::text, name, created_at FROM ` + table + ` WHERE tenant_id = $1 AND id = $2`
		r.insert = `INSERT INTO ` + table + ` (tenant_id, name) VALUES ($1, $2) RETURNING id::text, name, created_at`
		routes[t.Slug] = r
	}
	tenantOf := func(r *http.Request) *baselineRoute {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		slug, _, _ := strings.Cut(host, ".")
		return routes[slug]
	}
	type project struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"created_at"`
	}
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /projects/{id}", func(w http.ResponseWriter, r *http.Request) {
		t := tenantOf(r)
		if t == nil {
			http.NotFound(w, r)
			return
		}
		var p project
		err := t.pool.QueryRow(r.Context(), t.get, t.id, r.PathValue("id")).Scan(&p.ID, &p.Name, &p.CreatedAt)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			http.NotFound(w, r)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			reply(w, http.StatusOK, p)
		}
	})
	mux.HandleFunc("POST /projects", func(w http.ResponseWriter, r *http.Request) {
		t := tenantOf(r)
		if t == nil {
			http.NotFound(w, r)
			return
		}
		var in struct{ Name string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Name == "" {
			http.Error(w, "name is required", http.StatusBadRequest)
			return
		}
		var p project
		if err := t.pool.QueryRow(r.Context(), t.insert, t.id, in.Name).Scan(&p.ID, &p.Name, &p.CreatedAt); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Location", "/projects/"+p.ID)
		reply(w, http.StatusCreated, p)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("baseline: serving on %s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt)
		<-stop
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
