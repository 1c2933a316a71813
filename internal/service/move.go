package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
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

// moveRequest starts a move (To, and Server for a database placement) or acts on the move in
// progress (Action: resume, abort, finalize).
type moveRequest struct {
	To     string `json:"to"`
	Server string `json:"server"`
	Action string `json:"action"`
}

// adminMove starts, resumes, aborts or finalizes the move of the tenant {slug}:
//
//	{"to": "shared"|"schema"|"database", "server": "alias"}  start a move (202: it runs in the background)
//	{"action": "resume"}                                      finish a move that stopped (202)
//	{"action": "abort"} or {"action": "finalize"}             (200, when done)
//
// GET /admin/tenants/{slug} says where the move stands.
func (s *Server) adminMove(w http.ResponseWriter, r *http.Request) {
	var req moveRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.adminError(w, r, err)
		return
	}
	t, err := s.catalog.TenantBySlug(r.Context(), r.PathValue("slug"))
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	started, err := s.move(r.Context(), t, &req)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	if !started {
		s.writeView(w, r, t, http.StatusOK)
		return
	}
	w.Header().Set("Location", "/admin/tenants/"+t.Slug)
	s.writeView(w, r, t, http.StatusAccepted)
}

// move starts, resumes, aborts or finalizes t's move (the admin API, the console). started
// reports that the work goes on in the background; it has recorded itself in the catalog by
// the time move returns (or 2 s have passed).
func (s *Server) move(ctx context.Context, t *tenancy.Tenant, req *moveRequest) (started bool, err error) {
	var to tenancycatalog.Placement
	switch {
	case req.Action == "" && req.To == "":
		return false, &refusal{`give "to" (shared, schema or database) or "action" (resume, abort, finalize)`, errBadRequest}
	case req.Action != "" && (req.To != "" || req.Server != ""):
		return false, &refusal{`"to" and "server" start a move; "action" works on the move in progress: give one`, errBadRequest}
	case req.Action == "":
		iso, err := tenancy.ParseIsolation(req.To)
		if err != nil {
			return false, err
		}
		to = tenancycatalog.Placement{Isolation: iso}
		if req.Server != "" || iso == tenancy.IsolationDatabase {
			to.Server = req.Server
			if to.Server == "" {
				to.Server = tenancycatalog.DefaultServer
			}
			if err := CheckServer(s.cfg.Servers, iso, to.Server); err != nil {
				return false, err
			}
		}
		if to == tenancycatalog.PlacementOf(t) {
			return false, tenancymove.ErrSamePlacement
		}
	}
	// What the mover would refuse in the background is refused here, where the caller hears it.
	if req.Action == "" || req.Action == "resume" {
		if t.Status != tenancy.StatusActive && t.Status != tenancy.StatusSuspended {
			return false, fmt.Errorf("%w: %s is %s", tenancymove.ErrNotMovable, t.Slug, t.Status)
		}
		if busy, err := s.mover.Busy(ctx, t.ID); err != nil {
			return false, err
		} else if busy {
			return false, fmt.Errorf("%w: a mover is working on it now", tenancymove.ErrMoveInProgress)
		}
	}
	switch req.Action {
	case "":
		if m, err := s.catalog.OpenMove(ctx, t.ID); err == nil && m.State == tenancycatalog.MoveCopying {
			return false, fmt.Errorf("%w: its last move stopped at %q; resume or abort it", tenancymove.ErrMoveInProgress, m.Step)
		}
		s.background(t, "move", func(ctx context.Context) error {
			_, err := s.mover.Move(ctx, t.ID, &tenancymove.Opts{To: to})
			return err
		})
	case "resume":
		if _, err := s.catalog.OpenMove(ctx, t.ID); err != nil {
			return false, err
		}
		s.background(t, "resume", func(ctx context.Context) error {
			_, err := s.mover.Resume(ctx, t.ID, nil)
			return err
		})
	case "abort":
		_, err := s.mover.Abort(ctx, t.ID)
		return false, err
	case "finalize":
		_, err := s.mover.Finalize(ctx, t.ID)
		return false, err
	default:
		return false, &refusal{`"action" is resume, abort or finalize`, errBadRequest}
	}
	// The move records itself in the catalog as it starts: wait for that, briefly, so the answer
	// shows it.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if m, err := s.catalog.LastMove(ctx, t.ID); err == nil && m.Open() && m.StartedAt.After(time.Now().Add(-time.Minute)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true, nil
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
