package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancyriver"
)

// exportArgs is the job that writes an export of a project. It carries IDs only: the job runs as
// the tenant that asked (tenancyriver), which alone can read the project.
type exportArgs struct {
	ExportID  string `json:"export_id"`
	ProjectID string `json:"project_id"`
}

func (exportArgs) Kind() string { return "export_project" }

type exportWorker struct {
	river.WorkerDefaults[exportArgs]
	db *tenancypgx.DB
}

// Work writes the project and its tasks into the export, as the job's tenant.
func (w *exportWorker) Work(ctx context.Context, job *river.Job[exportArgs]) error {
	if _, ok := tenancy.FromContext(ctx); !ok {
		return river.JobCancel(tenancy.ErrNoTenant) // tenancyriver restores it: never here without one
	}
	return w.db.Tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE exports e SET status = 'done', finished_at = now(), body = jsonb_build_object(
				'project', (SELECT jsonb_build_object('id', p.id, 'name', p.name, 'created_at', p.created_at) FROM projects p WHERE p.id = e.project_id),
				'tasks', coalesce((SELECT jsonb_agg(jsonb_build_object('id', t.id, 'title', t.title, 'done', t.done, 'created_at', t.created_at)
					ORDER BY t.created_at, t.id) FROM tasks t WHERE t.project_id = e.project_id), '[]'))
			WHERE e.id = $1 AND e.project_id = $2 AND e.status = 'pending'`, job.Args.ExportID, job.Args.ProjectID)
		return err // no row: the export (or its project) was deleted since, or a retry already wrote it
	})
}

// startJobs makes River's tables (if missing), the job middleware, the River client with the
// service's workers, and the outbox that moves jobs enqueued in units of work into River; Run
// starts them.
func (s *Server) startJobs(ctx context.Context) error {
	if _, err := tenancyriver.Migrate(ctx, s.pool); err != nil {
		return err
	}
	jobs, err := tenancyriver.New(&tenancyriver.Config{Store: s.cache, Logger: s.log})
	if err != nil {
		return err
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &exportWorker{db: s.db}); err != nil {
		return err
	}
	n := s.cfg.JobWorkers
	if n == 0 {
		n = 4
	}
	s.river, err = river.NewClient(riverpgxv5.New(s.pool), &river.Config{
		Schema:     tenancyriver.Schema,
		Queues:     map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: n}},
		Workers:    workers,
		Middleware: jobs.Middleware(),
		// River listens for commands (cancel a job, pause a queue) on channels any session of
		// the catalog's database may notify — tenants' units of work too: poll instead.
		PollOnly:          true,
		FetchPollInterval: 100 * time.Millisecond,
		Logger:            s.log,
	})
	if err != nil {
		return fmt.Errorf("tenancy: jobs: %w", err)
	}
	s.jobs = jobs
	s.outbox, err = tenancyriver.NewOutbox(&tenancyriver.OutboxConfig{Client: s.river, Catalog: s.catalog,
		SharedSchema: s.cfg.Migrator.SharedSchema(), Store: s.cache, DB: s.db, Kinds: []string{exportArgs{}.Kind()}, Logger: s.log})
	return err
}

// runJobs works jobs and drains the outbox until ctx ends; then River stops, letting running
// jobs finish for up to 10 s.
func (s *Server) runJobs(ctx context.Context) {
	if err := s.river.Start(ctx); err != nil {
		s.log.ErrorContext(ctx, "tenancy: the job workers did not start", "err", err)
		return
	}
	_ = s.outbox.Run(ctx)
	stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.river.Stop(stop); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.WarnContext(ctx, "tenancy: stopping the job workers", "err", err)
	}
}

type export struct {
	ID         string     `json:"id"`
	ProjectID  string     `json:"project_id"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Data       any        `json:"data,omitempty"`
}

// createExport asks for an export of the project: the export and its job commit together
// (tenancyriver's outbox), and the job writes it as this tenant. 202, with the export to poll.
func (s *Server) createExport(w http.ResponseWriter, r *http.Request) {
	projectID, ok := pathID(w, r)
	if !ok {
		return
	}
	var ex export
	found := false
	err := s.outbox.Tx(r.Context(), s.db, func(tx pgx.Tx) error {
		ctx := r.Context()
		err := tx.QueryRow(ctx, `INSERT INTO exports (project_id) SELECT id FROM projects WHERE id = $1
			RETURNING id::text, project_id::text, status, created_at`, projectID).Scan(&ex.ID, &ex.ProjectID, &ex.Status, &ex.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) { // another tenant's project, or none: the same 404
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return tenancyriver.Enqueue(ctx, tx, exportArgs{ExportID: ex.ID, ProjectID: ex.ProjectID}, nil)
	})
	switch {
	case err != nil:
		s.dbError(w, r, err)
	case !found:
		notFound(w)
	default:
		w.Header().Set("Location", "/exports/"+ex.ID)
		writeJSONResponse(w, http.StatusAccepted, ex)
	}
}

// getExport shows the export: pending, or done with the project and its tasks.
func (s *Server) getExport(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var ex export
	err := s.db.QueryRow(r.Context(), `SELECT id::text, project_id::text, status, created_at, finished_at, body FROM exports WHERE id = $1`,
		tenancypgx.ReadOnly, id).Scan(&ex.ID, &ex.ProjectID, &ex.Status, &ex.CreatedAt, &ex.FinishedAt, &ex.Data)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		notFound(w)
	case err != nil:
		s.dbError(w, r, err)
	default:
		writeJSONResponse(w, http.StatusOK, ex)
	}
}
