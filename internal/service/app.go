package service

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancypgx"
)

type project struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

type task struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	Title     string    `json:"title"`
	Done      bool      `json:"done"`
	CreatedAt time.Time `json:"created_at"`
}

// appRoutes registers the reference API: the article's projects and tasks, every query through
// db.Tx or its single-statement helpers, so every row read or written is the request's tenant's.
func (s *Server) appRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /whoami", s.whoami)
	mux.HandleFunc("POST /projects", s.createProject)
	mux.HandleFunc("GET /projects", s.listProjects)
	mux.HandleFunc("GET /projects/{id}", s.getProject)
	mux.HandleFunc("PATCH /projects/{id}", s.updateProject)
	mux.HandleFunc("DELETE /projects/{id}", s.deleteProject)
	mux.HandleFunc("POST /projects/{id}/tasks", s.createTask)
	mux.HandleFunc("GET /projects/{id}/tasks", s.listTasks)
	mux.HandleFunc("PATCH /tasks/{id}", s.updateTask)
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("POST /projects/{id}/export", s.createExport)
	mux.HandleFunc("GET /exports/{id}", s.getExport)
}

const (
	selectProject = `SELECT id::text, name, created_at FROM projects`
	selectTask    = `SELECT id::text, project_id::text, title, done, created_at FROM tasks`
)

func scanProject(row pgx.CollectableRow) (project, error) {
	var p project
	err := row.Scan(&p.ID, &p.Name, &p.CreatedAt)
	return p, err
}

func scanTask(row pgx.CollectableRow) (task, error) {
	var t task
	err := row.Scan(&t.ID, &t.ProjectID, &t.Title, &t.Done, &t.CreatedAt)
	return t, err
}

func (s *Server) createProject(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name *string `json:"name"`
	}
	if !s.decode(w, r, &in) || !requireText(w, "name", in.Name) {
		return
	}
	rows, err := s.db.Query(r.Context(), `INSERT INTO projects (name) VALUES ($1) RETURNING id::text, name, created_at`, *in.Name)
	var made []project
	if err == nil {
		made, err = pgx.CollectRows(rows, scanProject)
	}
	if err != nil || len(made) != 1 {
		respondOne(s, w, r, nil, cmp.Or(err, errNoRow), scanProject, http.StatusCreated)
		return
	}
	w.Header().Set("Location", "/projects/"+made[0].ID)
	writeJSONResponse(w, http.StatusCreated, made[0])
}

// errNoRow is an INSERT … RETURNING that returned no row.
var errNoRow = errors.New("the insert returned no row")

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) {
	rows, err := s.db.Query(r.Context(), selectProject+` ORDER BY created_at, id`, tenancypgx.ReadOnly)
	respondAll(s, w, r, rows, err, scanProject)
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	rows, err := s.db.Query(r.Context(), selectProject+` WHERE id = $1`, tenancypgx.ReadOnly, id)
	respondOne(s, w, r, rows, err, scanProject, http.StatusOK)
}

func (s *Server) updateProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var in struct {
		Name *string `json:"name"`
	}
	if !s.decode(w, r, &in) || !requireText(w, "name", in.Name) {
		return
	}
	rows, err := s.db.Query(r.Context(), `UPDATE projects SET name = $2 WHERE id = $1 RETURNING id::text, name, created_at`, id, *in.Name)
	respondOne(s, w, r, rows, err, scanProject, http.StatusOK)
}

func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	tag, err := s.db.Exec(r.Context(), `DELETE FROM projects WHERE id = $1`, id)
	switch {
	case err != nil:
		s.dbError(w, r, err)
	case tag.RowsAffected() == 0:
		notFound(w)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) createTask(w http.ResponseWriter, r *http.Request) {
	projectID, ok := pathID(w, r)
	if !ok {
		return
	}
	var in struct {
		Title *string `json:"title"`
	}
	if !s.decode(w, r, &in) || !requireText(w, "title", in.Title) {
		return
	}
	// The project must be visible to this tenant; the composite foreign key would refuse another
	// tenant's project anyway, but the answer must be the 404 of a project that does not exist.
	rows, err := s.db.Query(r.Context(), `INSERT INTO tasks (project_id, title)
		SELECT id, $2 FROM projects WHERE id = $1
		RETURNING id::text, project_id::text, title, done, created_at`, projectID, *in.Title)
	respondOne(s, w, r, rows, err, scanTask, http.StatusCreated)
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	projectID, ok := pathID(w, r)
	if !ok {
		return
	}
	var tasks []task
	found := false
	err := s.db.ReadTx(r.Context(), func(tx pgx.Tx) error {
		if err := tx.QueryRow(r.Context(), `SELECT EXISTS (SELECT FROM projects WHERE id = $1)`, projectID).Scan(&found); err != nil || !found {
			return err
		}
		rows, _ := tx.Query(r.Context(), selectTask+` WHERE project_id = $1 ORDER BY created_at, id`, projectID)
		var err error
		tasks, err = pgx.CollectRows(rows, scanTask)
		return err
	})
	switch {
	case err != nil:
		s.dbError(w, r, err)
	case !found:
		notFound(w)
	default:
		writeJSONResponse(w, http.StatusOK, nonNil(tasks))
	}
}

func (s *Server) updateTask(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var in struct {
		Title *string `json:"title"`
		Done  *bool   `json:"done"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	if in.Title == nil && in.Done == nil {
		badRequest(w, "", "Give title, done or both.")
		return
	}
	if in.Title != nil && !requireText(w, "title", in.Title) {
		return
	}
	rows, err := s.db.Query(r.Context(), `UPDATE tasks SET title = coalesce($2, title), done = coalesce($3, done)
		WHERE id = $1 RETURNING id::text, project_id::text, title, done, created_at`, id, in.Title, in.Done)
	respondOne(s, w, r, rows, err, scanTask, http.StatusOK)
}

type stats struct {
	Projects int64 `json:"projects"`
	Tasks    int64 `json:"tasks"`
}

// stats counts the tenant's projects and tasks, cached per tenant for 30 seconds and dropped by
// any write (invalidateStatsOnWrite).
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	out, err := tenancycache.GetOrLoad(r.Context(), s.appCache, "stats", 30*time.Second, func(ctx context.Context) (stats, error) {
		var st stats
		err := s.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM tasks)`, tenancypgx.ReadOnly).
			Scan(&st.Projects, &st.Tasks)
		return st, err
	})
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	writeJSONResponse(w, http.StatusOK, out)
}

// respondOne writes the single row of a query with code, or the 404 of a row the tenant cannot see.
func respondOne[T any](s *Server, w http.ResponseWriter, r *http.Request, rows pgx.Rows, err error, scan pgx.RowToFunc[T], code int) {
	var items []T
	if err == nil {
		items, err = pgx.CollectRows(rows, scan)
	}
	switch {
	case err != nil:
		s.dbError(w, r, err)
	case len(items) == 0:
		notFound(w)
	default:
		writeJSONResponse(w, code, items[0])
	}
}

// respondAll writes every row of a query as a JSON array.
func respondAll[T any](s *Server, w http.ResponseWriter, r *http.Request, rows pgx.Rows, err error, scan pgx.RowToFunc[T]) {
	var items []T
	if err == nil {
		items, err = pgx.CollectRows(rows, scan)
	}
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	writeJSONResponse(w, http.StatusOK, nonNil(items))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// pathID returns the {id} path value when it is a UUID. Anything else is the same 404 as an id
// that exists for no tenant, or for another one.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !tenancy.IsID(id) {
		notFound(w)
		return "", false
	}
	return strings.ToLower(id), true
}

func notFound(w http.ResponseWriter) {
	tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemNotFound, Title: "Not found",
		Status: http.StatusNotFound, Detail: "No such resource."})
}

func badRequest(w http.ResponseWriter, field, detail string) {
	tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemBadRequest, Title: "Bad request",
		Status: http.StatusBadRequest, Detail: detail, Field: field})
}

// requireText checks a required text field: present, not blank, at most 200 characters, none of
// them NUL (PostgreSQL text cannot hold it).
func requireText(w http.ResponseWriter, field string, v *string) bool {
	switch {
	case v == nil:
		badRequest(w, field, field+" is required.")
	case strings.TrimSpace(*v) == "":
		badRequest(w, field, field+" must not be empty.")
	case utf8.RuneCountInString(*v) > 200:
		badRequest(w, field, field+" must be at most 200 characters.")
	case strings.IndexByte(*v, 0) >= 0:
		badRequest(w, field, field+" must not contain the NUL character.")
	default:
		return true
	}
	return false
}

// decode reads a JSON object into v, answering 400 (naming the field where there is one) or 413.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	err := decodeJSON(w, r, v)
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemTooLarge, Title: "Body too large",
			Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("The body must be at most %d bytes.", tooBig.Limit)})
	case errors.Is(err, errNotUTF8):
		badRequest(w, "", "The body must be UTF-8 text.")
	case errors.As(err, &typeErr):
		badRequest(w, typeErr.Field, fmt.Sprintf("%s must be a JSON %s.", typeErr.Field, jsonKind(typeErr.Type.Kind().String())))
	default:
		if _, f, ok := strings.Cut(err.Error(), "json: unknown field "); ok {
			badRequest(w, strings.Trim(f, `"`), "Unknown field "+f+".")
			return false
		}
		badRequest(w, "", "The body must be one JSON object.")
	}
	return false
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	}
	return "value of another type"
}

// dbError answers for a failed query: the tenancy sentinels by their problem, what the database
// refuses because of the request's values 4xx, an unreachable database 503, anything else 500
// (logged, not shown).
func (s *Server) dbError(w http.ResponseWriter, r *http.Request, err error) {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, tenancy.ErrNoTenant), errors.Is(err, tenancy.ErrTenantNotFound),
		errors.Is(err, tenancy.ErrTenantSuspended), errors.Is(err, tenancy.ErrTenantNotReady),
		errors.Is(err, tenancy.ErrTenantUnavailable), errors.Is(err, tenancy.ErrCapacityExhausted),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		p := tenancyhttp.ProblemFor(err)
		tenancyhttp.WriteProblem(w, &p)
	case errors.As(err, &pgErr):
		p := tenancyhttp.ProblemFor(err) // the request's bad values are 4xx; the rest 500
		if p.Status >= 500 {
			s.log.ErrorContext(r.Context(), "tenancy: query failed", "err", err, "path", r.URL.Path)
		}
		tenancyhttp.WriteProblem(w, &p)
	default: // no answer from the server: connection refused, reset, pool closed
		s.log.ErrorContext(r.Context(), "tenancy: database unavailable", "err", err, "path", r.URL.Path)
		tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemUnavailable, Title: "Service unavailable",
			Status: http.StatusServiceUnavailable, Detail: "The database is unavailable; try again.", RetryAfter: 1})
	}
}
