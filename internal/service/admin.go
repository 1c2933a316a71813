package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymove"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
)

// admin serves the admin API, the CLI's tenant operations over HTTP. It is off (404) unless an
// admin token is configured, and then every call must carry it as a bearer token.
func (s *Server) admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/stats", s.adminStats)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { s.metrics.ServeHTTP(w, r) })
	mux.HandleFunc("GET /admin/tenants", s.adminList)
	mux.HandleFunc("POST /admin/tenants", s.adminCreate)
	mux.HandleFunc("GET /admin/tenants/{slug}", s.adminTenant(nil))
	mux.HandleFunc("PATCH /admin/tenants/{slug}", s.adminUpdate)
	mux.HandleFunc("POST /admin/tenants/{slug}/suspend", s.adminTenant(s.catalog.Suspend))
	mux.HandleFunc("POST /admin/tenants/{slug}/resume", s.adminTenant(s.catalog.Resume))
	mux.HandleFunc("DELETE /admin/tenants/{slug}", s.adminTenant(s.catalog.Delete))
	mux.HandleFunc("POST /admin/tenants/{slug}/provision", s.adminProvision)
	mux.HandleFunc("POST /admin/tenants/{slug}/move", s.adminMove)
	mux.HandleFunc("PUT /admin/tenants/{slug}/rate-limit", s.adminRateLimit)
	mux.HandleFunc("POST /admin/tenants/{slug}/domains", s.adminDomain(true))
	mux.HandleFunc("DELETE /admin/tenants/{slug}/domains/{domain}", s.adminDomain(false))
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	routes := tenancyhttp.ProblemRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminToken == "" {
			tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemNoRoute, Title: "Not found",
				Status: http.StatusNotFound, Detail: "The admin API is off: serve has no --admin-token."})
			return
		}
		// As the console: a tenant's host (its custom domain is DNS it may control) is not the
		// operators'. A host the catalog cannot place (it is down) is served: operators need
		// /admin/stats and /metrics most then.
		if tenant, _ := s.tenantHost(r); tenant {
			tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemNoRoute, Title: "Not found", Status: http.StatusNotFound,
				Detail: "The admin API is not served on a tenant's host: call it on the service's own host name or address."})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tenancy-admin"`)
			tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemUnauthorized,
				Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: "The admin API needs the admin bearer token."})
			return
		}
		routes.ServeHTTP(w, r)
	})
}

// Pages of the admin API's tenant list: ?limit= (default and most) and ?after=SLUG.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

func (s *Server) adminList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			s.adminError(w, r, &refusal{fmt.Sprintf("limit must be a number from 1 to %d", maxListLimit), errBadRequest})
			return
		}
		limit = n
	}
	opts := &tenancycatalog.ListOpts{Status: tenancy.Status(q.Get("status")), IncludeDeleted: q.Get("all") == "1",
		After: q.Get("after"), Limit: limit}
	ts, err := s.catalog.List(r.Context(), opts)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	if ts == nil {
		ts = []*tenancy.Tenant{}
	}
	if len(ts) == limit { // there may be more: the next page starts after this one's last slug
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("limit", strconv.Itoa(limit))
		next.Set("after", ts[len(ts)-1].Slug)
		w.Header().Set("Link", "</admin/tenants?"+next.Encode()+">; rel=\"next\"")
	}
	writeJSONResponse(w, http.StatusOK, ts)
}

type createRequest struct {
	Slug      string   `json:"slug"`
	Name      string   `json:"name"`
	Plan      string   `json:"plan"`
	Isolation string   `json:"isolation"`
	Domains   []string `json:"domains"`
	Server    string   `json:"server"`
}

func (s *Server) adminCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.adminError(w, r, err)
		return
	}
	iso := tenancy.IsolationShared
	if req.Isolation != "" {
		var err error
		if iso, err = tenancy.ParseIsolation(req.Isolation); err != nil {
			s.adminError(w, r, err)
			return
		}
	}
	domains, err := NormalizeDomains(req.Domains)
	if err == nil {
		err = s.checkDomains(domains)
	}
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	if err := CheckServer(s.cfg.Servers, iso, req.Server); err != nil {
		s.adminError(w, r, err)
		return
	}
	if err := CheckPlan(s.cfg.Policy, req.Plan); err != nil {
		s.adminError(w, r, err)
		return
	}
	t, err := s.catalog.Create(r.Context(), &tenancycatalog.CreateOpts{Slug: req.Slug, Name: req.Name, Plan: req.Plan,
		Isolation: iso, Domains: domains})
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	if t.Status == tenancy.StatusProvisioning {
		if t, err = tenancyprovision.Provision(r.Context(), s.catalog, t.ID, s.cfg.Migrator, &tenancyprovision.ProvisionOpts{Server: req.Server}); err != nil {
			s.provisionError(w, r, err)
			return
		}
	}
	writeJSONResponse(w, http.StatusCreated, t)
}

// adminUpdate changes the tenant's name or plan ({"name", "plan"}).
func (s *Server) adminUpdate(w http.ResponseWriter, r *http.Request) {
	var req tenancycatalog.UpdateOpts // {"name", "plan"}
	if err := decodeJSON(w, r, &req); err != nil {
		s.adminError(w, r, err)
		return
	}
	t, err := s.update(r.Context(), r.PathValue("slug"), &req)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	writeJSONResponse(w, http.StatusOK, t)
}

// update changes the name or plan of the tenant with this slug (the admin API, the console).
func (s *Server) update(ctx context.Context, slug string, opts *tenancycatalog.UpdateOpts) (*tenancy.Tenant, error) {
	if err := CheckPlan(s.cfg.Policy, opts.Plan); err != nil {
		return nil, err
	}
	t, err := s.catalog.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	return s.catalog.Update(ctx, t.ID, opts)
}

// adminRateLimit sets the tenant's own rate ({"rate_limit": "500/min"}; "plan" or "" for its
// plan's, as the CLI takes it).
func (s *Server) adminRateLimit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RateLimit *string `json:"rate_limit"`
	}
	if err := decodeJSON(w, r, &req); err != nil || req.RateLimit == nil {
		if err == nil {
			err = fmt.Errorf("%w: rate_limit is required (\"\" for the plan's)", errBadRequest)
		}
		s.adminError(w, r, err)
		return
	}
	t, err := s.setRateLimit(r.Context(), r.PathValue("slug"), *req.RateLimit)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	writeJSONResponse(w, http.StatusOK, t)
}

// setRateLimit sets the own rate of the tenant with this slug ("plan" or "": its plan's).
func (s *Server) setRateLimit(ctx context.Context, slug, limit string) (*tenancy.Tenant, error) {
	if limit == "plan" {
		limit = ""
	}
	t, err := s.catalog.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	return s.catalog.SetRateLimit(ctx, t.ID, limit)
}

// adminStats reports the service's moving parts: the tenant lookup cache, the pool router of
// database tenants, and the Redis limiter's fallbacks when there is one.
func (s *Server) adminStats(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{
		"lookup_cache":  s.cache.Stats(),
		"router":        s.cfg.Router.Stats(),
		"cache":         s.appCache.Stats(),
		"catalog_watch": map[string]any{"connected": s.watchUp.Load(), "ignored_notifications": s.ignored.Load()},
		"jobs":          s.jobs.Stats(),
		"job_outbox":    s.outbox.Stats(),
	}
	if l, ok := s.cfg.Limiter.(interface {
		Stats() tenancyredis.LimiterStats
	}); ok {
		out["rate_limiter_redis"] = l.Stats()
	}
	if l, ok := s.cfg.Limiter.(*tenancyrate.MemoryLimiter); ok {
		out["rate_limiter_memory"] = map[string]int{"keys": l.Len()}
	}
	if s.secondLevel != nil {
		out["lookup_cache_redis"] = s.secondLevel.Stats()
	}
	writeJSONResponse(w, http.StatusOK, out)
}

// CheckServer refuses, before anything is registered, a server alias the configuration lacks.
func CheckServer(servers tenancycatalog.Servers, iso tenancy.Isolation, alias string) error {
	if alias == "" {
		return nil
	}
	if iso != tenancy.IsolationDatabase {
		return &refusal{"server is only for database tenants", errBadRequest}
	}
	if _, ok := servers[alias]; !ok {
		return &refusal{fmt.Sprintf("unknown server alias %q (configured: %s)", alias, strings.Join(servers.Aliases(), ", ")), errBadRequest}
	}
	return nil
}

// adminProvision resumes a provisioning that failed.
func (s *Server) adminProvision(w http.ResponseWriter, r *http.Request) {
	t, err := s.catalog.TenantBySlug(r.Context(), r.PathValue("slug"))
	if err == nil {
		t, err = s.provision(r.Context(), t)
	}
	switch {
	case errors.Is(err, tenancyprovision.ErrNotProvisioning):
		tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemConflict, Title: "Conflict",
			Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, tenancy.ErrTenantNotFound):
		s.adminError(w, r, err)
	case err != nil:
		s.provisionError(w, r, err)
	default:
		writeJSONResponse(w, http.StatusOK, t)
	}
}

// provision resumes t's provisioning that failed.
func (s *Server) provision(ctx context.Context, t *tenancy.Tenant) (*tenancy.Tenant, error) {
	return tenancyprovision.Provision(ctx, s.catalog, t.ID, s.cfg.Migrator, nil)
}

// provisionError answers for a provisioning that failed: the tenant exists, refused, with the
// error recorded; POST /admin/tenants/{slug}/provision resumes it.
func (s *Server) provisionError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.ErrorContext(r.Context(), "tenancy: provisioning failed", "err", err)
	tenancyhttp.WriteProblem(w, &tenancyhttp.Problem{Type: tenancyhttp.ProblemUnavailable, Title: "Provisioning failed",
		Status: http.StatusBadGateway, Detail: "The tenant was registered but its provisioning failed; " +
			"POST /admin/tenants/{slug}/provision resumes it. " + err.Error()})
}

type tenantOp func(ctx context.Context, id string) (*tenancy.Tenant, error)

// adminTenant looks the tenant up by the {slug} in the path and applies op (nil: just show it).
func (s *Server) adminTenant(op tenantOp) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := s.catalog.TenantBySlug(r.Context(), r.PathValue("slug"))
		if err == nil && op != nil {
			t, err = op(r.Context(), t.ID)
		}
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		if op == nil { // GET: with the tenant's last move
			s.writeView(w, r, t, http.StatusOK)
			return
		}
		writeJSONResponse(w, http.StatusOK, t)
	}
}

func (s *Server) adminDomain(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw := r.PathValue("domain")
		if add {
			var req struct {
				Domain string `json:"domain"`
			}
			if err := decodeJSON(w, r, &req); err != nil {
				s.adminError(w, r, err)
				return
			}
			raw = req.Domain
		}
		t, err := s.setDomain(r.Context(), r.PathValue("slug"), raw, add)
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		writeJSONResponse(w, http.StatusOK, t)
	}
}

// setDomain adds the domain to the tenant with this slug, or removes it.
func (s *Server) setDomain(ctx context.Context, slug, domain string, add bool) (*tenancy.Tenant, error) {
	norm, err := NormalizeDomains([]string{domain})
	if err == nil && add {
		err = s.checkDomains(norm)
	}
	if err != nil {
		return nil, err
	}
	t, err := s.catalog.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	if add {
		return s.catalog.AddDomain(ctx, t.ID, norm[0])
	}
	return s.catalog.RemoveDomain(ctx, t.ID, norm[0])
}

// CheckPlan refuses a plan that policy does not name (its Plans, or tenancyrate.DefaultPlans): the
// plans are a configured set (--plan-limits), and a tenant on an unknown one would get the
// default limit silently. "" (no plan given) passes.
func CheckPlan(policy *tenancyrate.Policy, plan string) error {
	plans := tenancyrate.DefaultPlans
	if policy != nil && len(policy.Plans) > 0 {
		plans = policy.Plans
	}
	if plan == "" {
		return nil
	}
	if _, ok := plans[plan]; ok {
		return nil
	}
	names := make([]string, 0, len(plans))
	for n := range plans {
		names = append(names, n)
	}
	slices.Sort(names)
	return &refusal{fmt.Sprintf("unknown plan %q: the plans are %s (--plan-limits or TENANCY_PLAN_LIMITS names them)",
		plan, strings.Join(names, ", ")), errBadRequest}
}

// NormalizeDomains turns typed domains (any case, IDNA, trailing dot) into catalog form.
func NormalizeDomains(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, d := range in {
		n, err := tenancyhttp.NormalizeHost(d)
		if err == nil {
			err = tenancy.ValidateDomain(n)
		}
		if err != nil {
			return nil, &refusal{fmt.Sprintf("invalid domain %q: not a domain name a tenant can have", d), tenancy.ErrInvalidDomain}
		}
		out = append(out, n)
	}
	return out, nil
}

// checkDomains refuses custom domains that are the base domain or under it: those names are
// the tenants' subdomains, which resolve by slug first, so such a domain would never reach its
// tenant.
func (s *Server) checkDomains(domains []string) error {
	for _, d := range domains {
		if d == s.cfg.BaseDomain || strings.HasSuffix(d, "."+s.cfg.BaseDomain) {
			return &refusal{fmt.Sprintf("invalid domain %q: names under %s are tenants' subdomains, not custom domains", d, s.cfg.BaseDomain),
				tenancy.ErrInvalidDomain}
		}
	}
	return nil
}

// refusal is a message for people that errors.Is still matches with its sentinel.
type refusal struct {
	msg string
	err error
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.err }

// errBadRequest marks errors in the request body.
var errBadRequest = errors.New("bad request")

// errNotUTF8 is a body that is not UTF-8, as JSON must be.
var errNotUTF8 = fmt.Errorf("%w: the body is not UTF-8", errBadRequest)

// decodeJSON reads one JSON object of at most 64 KiB, in UTF-8 (encoding/json would replace bad
// bytes silently), with no unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	if !utf8.Valid(body) {
		return errNotUTF8
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: more than one JSON value", errBadRequest)
	}
	return nil
}

func (s *Server) adminError(w http.ResponseWriter, r *http.Request, err error) {
	tenancyhttp.WriteProblem(w, s.problemOf(r, err))
}

// problemOf is the answer to an operation that failed with err: 400 for a bad request, 404 for
// an unknown tenant, 409 for a conflict, 503 (logged) for anything else.
func (s *Server) problemOf(r *http.Request, err error) *tenancyhttp.Problem {
	p := &tenancyhttp.Problem{Type: tenancyhttp.ProblemBadRequest, Title: "Bad request", Status: http.StatusBadRequest, Detail: err.Error()}
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, tenancy.ErrInvalidSlug), errors.Is(err, tenancy.ErrReservedSlug),
		errors.Is(err, tenancy.ErrInvalidDomain), errors.Is(err, tenancy.ErrInvalidIsolation), errors.Is(err, tenancy.ErrInvalidStatus),
		errors.Is(err, tenancy.ErrInvalidTenant), errors.Is(err, tenancyrate.ErrInvalidLimit):
	case errors.Is(err, tenancy.ErrDuplicateSlug), errors.Is(err, tenancy.ErrDuplicateDomain),
		errors.Is(err, tenancyprovision.ErrNotProvisioning), errors.Is(err, tenancy.ErrTenantNotReady),
		errors.Is(err, tenancymove.ErrSamePlacement), errors.Is(err, tenancymove.ErrMoveInProgress),
		errors.Is(err, tenancymove.ErrSwitched), errors.Is(err, tenancymove.ErrNotMovable):
		p.Type, p.Title, p.Status = tenancyhttp.ProblemConflict, "Conflict", http.StatusConflict
	case errors.Is(err, tenancy.ErrTenantNotFound):
		p.Type, p.Title, p.Status, p.Detail = tenancyhttp.ProblemNotFound, "Not found", http.StatusNotFound, "No such tenant."
	case errors.Is(err, tenancymove.ErrNoMove):
		p.Type, p.Title, p.Status = tenancyhttp.ProblemNotFound, "No move", http.StatusNotFound
	default:
		s.log.ErrorContext(r.Context(), "tenancy: admin API", "err", err, "path", r.URL.Path)
		p.Type, p.Title, p.Status, p.Detail = tenancyhttp.ProblemUnavailable, "Service unavailable", http.StatusServiceUnavailable, ""
		p.RetryAfter = 1
	}
	return p
}
