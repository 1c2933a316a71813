package service

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymove"
)

// tenantView is a tenant as the admin API shows it: with its last move, if it had one.
type tenantView struct {
	*tenancy.Tenant
	Move *tenancycatalog.Move `json:"move,omitempty"`
}

// view returns t with its last move.
func (s *Server) view(ctx context.Context, t *tenancy.Tenant) (tenantView, error) {
	m, err := s.catalog.LastMove(ctx, t.ID)
	if errors.Is(err, tenancycatalog.ErrNoMove) {
		err = nil
	}
	return tenantView{t, m}, err
}

// adminMove starts, resumes, aborts or finalizes the move of the tenant {slug}:
//
//	{"to": "shared"|"schema"|"database", "server": "alias"}  start a move (202: it runs in the background)
//	{"action": "resume"}                                      finish a move that stopped (202)
//	{"action": "abort"} or {"action": "finalize"}             (200, when done)
//
// GET /admin/tenants/{slug} says where the move stands.
func (s *Server) adminMove(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To     string `json:"to"`
		Server string `json:"server"`
		Action string `json:"action"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		s.adminError(w, r, err)
		return
	}
	t, err := s.catalog.TenantBySlug(r.Context(), r.PathValue("slug"))
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	var to tenancycatalog.Placement
	switch {
	case req.Action == "" && req.To == "":
		s.adminError(w, r, &refusal{`give "to" (shared, schema or database) or "action" (resume, abort, finalize)`, errBadRequest})
		return
	case req.Action != "" && (req.To != "" || req.Server != ""):
		s.adminError(w, r, &refusal{`"to" and "server" start a move; "action" works on the move in progress: give one`, errBadRequest})
		return
	case req.Action == "":
		iso, err := tenancy.ParseIsolation(req.To)
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		if req.Server != "" || iso == tenancy.IsolationDatabase {
			server := req.Server
			if server == "" {
				server = tenancycatalog.DefaultServer
			}
			if err := CheckServer(s.cfg.Servers, iso, server); err != nil {
				s.adminError(w, r, err)
				return
			}
			to = tenancycatalog.Placement{Isolation: iso, Server: server}
		} else {
			to = tenancycatalog.Placement{Isolation: iso}
		}
		if to == tenancycatalog.PlacementOf(t) {
			s.moveError(w, r, tenancymove.ErrSamePlacement)
			return
		}
	}
	switch req.Action {
	case "":
		if m, err := s.catalog.OpenMove(r.Context(), t.ID); err == nil && m.State == tenancycatalog.MoveCopying {
			s.moveError(w, r, tenancymove.ErrMoveInProgress)
			return
		}
		s.background(t, "move", func(ctx context.Context) error {
			_, err := s.mover.Move(ctx, t.ID, &tenancymove.Opts{To: to})
			return err
		})
	case "resume":
		if _, err := s.catalog.OpenMove(r.Context(), t.ID); err != nil {
			s.moveError(w, r, err)
			return
		}
		s.background(t, "resume", func(ctx context.Context) error {
			_, err := s.mover.Resume(ctx, t.ID, nil)
			return err
		})
	case "abort", "finalize":
		var err error
		if req.Action == "abort" {
			_, err = s.mover.Abort(r.Context(), t.ID)
		} else {
			_, err = s.mover.Finalize(r.Context(), t.ID)
		}
		if err != nil {
			s.moveError(w, r, err)
			return
		}
		s.writeView(w, r, t, http.StatusOK)
		return
	default:
		s.adminError(w, r, &refusal{`"action" is resume, abort or finalize`, errBadRequest})
		return
	}
	// The move records itself in the catalog as it starts: wait for that, briefly, so the answer
	// shows it.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if m, err := s.catalog.LastMove(r.Context(), t.ID); err == nil && m.Open() && m.StartedAt.After(time.Now().Add(-time.Minute)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.Header().Set("Location", "/admin/tenants/"+t.Slug)
	s.writeView(w, r, t, http.StatusAccepted)
}

// writeView answers with the tenant (read again) and its last move.
func (s *Server) writeView(w http.ResponseWriter, r *http.Request, t *tenancy.Tenant, code int) {
	fresh, err := s.catalog.TenantByID(r.Context(), t.ID)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	v, err := s.view(r.Context(), fresh)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	writeJSONResponse(w, code, v)
}

// moveError answers for a move the admin API cannot start or act on.
func (s *Server) moveError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, tenancymove.ErrNoMove):
		tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemNotFound, Title: "No move",
			Status: http.StatusNotFound, Detail: err.Error()})
	case errors.Is(err, tenancymove.ErrSamePlacement), errors.Is(err, tenancymove.ErrMoveInProgress),
		errors.Is(err, tenancymove.ErrSwitched), errors.Is(err, tenancymove.ErrNotMovable):
		tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemConflict, Title: "Conflict",
			Status: http.StatusConflict, Detail: err.Error()})
	default:
		s.adminError(w, r, err)
	}
}

// background runs a move's work after the request, until it ends or the server closes (a move
// stopped by Close is resumable).
func (s *Server) background(t *tenancy.Tenant, what string, fn func(context.Context) error) {
	s.moves.Add(1)
	go func() {
		defer s.moves.Done()
		if err := fn(s.bg); err != nil {
			s.log.Warn("tenancy: tenant "+what+" failed", "tenant", t.Slug, "err", err)
		}
	}()
}

// finalizeMoves removes, every minute, the old data of moves whose grace period has passed,
// until ctx ends. Many instances may run it: one finalizes each move.
func (s *Server) finalizeMoves(ctx context.Context) {
	for {
		if n, err := s.mover.FinalizeDue(ctx); err != nil && !errors.Is(err, tenancymove.ErrMoveInProgress) && ctx.Err() == nil {
			s.log.Warn("tenancy: finalizing moves", "finalized", n, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}
