package tenancyhttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gotenancy/tenancy"
)

// Problem types: the stable "type" member of every problem+json body this package writes.
const (
	ProblemNoTenant          = "urn:tenancy:problem:no-tenant"          // 400: the request names no tenant
	ProblemReservedTenant    = "urn:tenancy:problem:reserved-tenant"    // 400: the name is reserved (www, api, ...)
	ProblemUnknownTenant     = "urn:tenancy:problem:unknown-tenant"     // 404: no such tenant (or deleted)
	ProblemTenantSuspended   = "urn:tenancy:problem:tenant-suspended"   // 403
	ProblemTenantNotReady    = "urn:tenancy:problem:tenant-not-ready"   // 503: being provisioned
	ProblemTenantUnavailable = "urn:tenancy:problem:tenant-unavailable" // 503: the tenant's database is down
	ProblemCapacity          = "urn:tenancy:problem:capacity"           // 503: no tenant database connection free
	ProblemTenantMoving      = "urn:tenancy:problem:tenant-moving"      // 503: a move's switch held the write back too long
	ProblemRateLimited       = "urn:tenancy:problem:rate-limited"       // 429: over the tenant's rate
	ProblemTenantBusy        = "urn:tenancy:problem:tenant-busy"        // 503: too many of the tenant's requests in flight
	ProblemUnavailable       = "urn:tenancy:problem:unavailable"        // 503: a dependency is down
	ProblemBadRequest        = "urn:tenancy:problem:bad-request"        // 400: the body or a parameter is wrong
	ProblemNotFound          = "urn:tenancy:problem:not-found"          // 404: the resource does not exist
	ProblemConflict          = "urn:tenancy:problem:conflict"           // 409: the name is taken
	ProblemNoRoute           = "urn:tenancy:problem:no-route"           // 404: no such path
	ProblemMethodNotAllowed  = "urn:tenancy:problem:method-not-allowed" // 405: the path takes other methods (see Allow)
	ProblemTooLarge          = "urn:tenancy:problem:too-large"          // 413: the body is over the limit
	ProblemUnauthorized      = "urn:tenancy:problem:unauthorized"       // 401
	ProblemForbidden         = "urn:tenancy:problem:forbidden"          // 403: the database refused the write (row-level security)
	ProblemInternal          = "urn:tenancy:problem:internal"           // 500
)

// Problem is an RFC 9457 problem details object. Detail must not carry request input: clients and
// logs would show it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the request field at fault, for a 400 about the body (an extension member).
	Field string `json:"field,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	body, err := json.Marshal(p)
	if err != nil { // a Problem always marshals; keep the status anyway
		body = nil
	}
	writeProblemBody(w, p.Type, p.Status, p.RetryAfter, append(body, '\n'))
}

// Header values shared by every problem response, so a refusal allocates nothing for them.
var (
	problemContentType = []string{"application/problem+json"}
	nosniff            = []string{"nosniff"}
	noStore            = []string{"no-store"}
	retryAfterOne      = []string{"1"}
)

func writeProblemBody(w http.ResponseWriter, typ string, status, retryAfter int, body []byte) {
	if o, ok := w.(Observer); ok {
		o.ObserveProblem(typ)
	}
	h := w.Header()
	h["Content-Type"] = problemContentType
	h["X-Content-Type-Options"] = nosniff
	h["Cache-Control"] = noStore
	switch {
	case retryAfter == 1:
		h["Retry-After"] = retryAfterOne
	case retryAfter > 1:
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// canned is a problem with its body encoded once: the middleware's refusals cost no encoding.
type canned struct {
	p    Problem
	body []byte
}

func newCanned(p Problem) *canned {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return &canned{p: p, body: append(b, '\n')}
}

func (c *canned) write(w http.ResponseWriter) {
	writeProblemBody(w, c.p.Type, c.p.Status, c.p.RetryAfter, c.body)
}

var (
	cannedNoTenant = newCanned(Problem{Type: ProblemNoTenant, Title: "No tenant", Status: http.StatusBadRequest,
		Detail: "The request does not name a tenant."})
	cannedUntrustedHeader = newCanned(Problem{Type: ProblemNoTenant, Title: "No tenant", Status: http.StatusBadRequest,
		Detail: "The tenant header is accepted only from trusted callers."})
	cannedReserved = newCanned(Problem{Type: ProblemReservedTenant, Title: "Reserved name", Status: http.StatusBadRequest,
		Detail: "The name is reserved and belongs to no tenant."})
	cannedUnknown = newCanned(Problem{Type: ProblemUnknownTenant, Title: "Unknown tenant", Status: http.StatusNotFound,
		Detail: "No tenant has this name."})
	cannedSuspended = newCanned(Problem{Type: ProblemTenantSuspended, Title: "Tenant suspended", Status: http.StatusForbidden,
		Detail: "This tenant is suspended."})
	cannedNotReady = newCanned(Problem{Type: ProblemTenantNotReady, Title: "Tenant not ready", Status: http.StatusServiceUnavailable,
		Detail: "This tenant is being set up; try again shortly.", RetryAfter: 5})
	cannedTenantDown = newCanned(Problem{Type: ProblemTenantUnavailable, Title: "Tenant unavailable", Status: http.StatusServiceUnavailable,
		Detail: "This tenant's database cannot be reached; try again shortly.", RetryAfter: 5})
	cannedMoving = newCanned(Problem{Type: ProblemTenantMoving, Title: "Tenant being moved", Status: http.StatusServiceUnavailable,
		Detail: "This tenant is being moved; nothing was written; try again.", RetryAfter: 1})
	cannedCapacity = newCanned(Problem{Type: ProblemCapacity, Title: "Capacity exhausted", Status: http.StatusServiceUnavailable,
		Detail: "The service is at its connection capacity; try again.", RetryAfter: 1})
	cannedCatalogDown = newCanned(Problem{Type: ProblemUnavailable, Title: "Service unavailable",
		Status: http.StatusServiceUnavailable, Detail: "The tenant catalog is unavailable; try again.", RetryAfter: 1})
	cannedTimeout = newCanned(Problem{Type: ProblemUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable,
		Detail: "A dependency did not answer in time; try again.", RetryAfter: 1})
	cannedCancelled = newCanned(Problem{Type: ProblemUnavailable, Title: "Request cancelled", Status: 499})
	cannedInternal  = newCanned(Problem{Type: ProblemInternal, Title: "Internal error", Status: http.StatusInternalServerError})

	// What a request's own values make the database refuse: never a 500.
	cannedBadValue = newCanned(Problem{Type: ProblemBadRequest, Title: "Bad request", Status: http.StatusBadRequest,
		Detail: "A value in the request cannot be stored: it is malformed, out of range or breaks a rule of the data."})
	cannedConflict = newCanned(Problem{Type: ProblemConflict, Title: "Conflict", Status: http.StatusConflict,
		Detail: "The request conflicts with data that exists."})
	cannedForbidden = newCanned(Problem{Type: ProblemForbidden, Title: "Forbidden", Status: http.StatusForbidden,
		Detail: "The database refused the operation."})
)

// sqlStater is an error with a PostgreSQL SQLSTATE (pgconn.PgError), so this package needs no
// driver to map them.
type sqlStater interface{ SQLState() string }

// cannedForSQLState maps what a database refuses because of the request's values: data
// exceptions (class 22) and integrity violations (class 23) are the request's fault (400; 409 for
// a duplicate or exclusion), insufficient privilege — row-level security refusing a write — is
// 403. Anything else is not the request's doing.
func cannedForSQLState(code string) *canned {
	switch {
	case code == "23505", code == "23P01":
		return cannedConflict
	case strings.HasPrefix(code, "22"), strings.HasPrefix(code, "23"), code == "54000": // 54000: a value too large to index
		return cannedBadValue
	case code == "42501":
		return cannedForbidden
	}
	return nil
}

// cannedFor maps an error of the toolkit to its problem.
func cannedFor(err error) *canned {
	switch err { // the middleware's own refusals, without unwrapping
	case tenancy.ErrTenantNotFound:
		return cannedUnknown
	case tenancy.ErrNoTenant:
		return cannedNoTenant
	case tenancy.ErrTenantSuspended:
		return cannedSuspended
	case tenancy.ErrReservedSlug:
		return cannedReserved
	case tenancy.ErrTenantNotReady:
		return cannedNotReady
	}
	switch {
	case errors.Is(err, errUntrustedHeader):
		return cannedUntrustedHeader
	case errors.Is(err, tenancy.ErrNoTenant), errors.Is(err, tenancy.ErrInvalidSlug), errors.Is(err, ErrInvalidHost):
		return cannedNoTenant
	case errors.Is(err, tenancy.ErrReservedSlug):
		return cannedReserved
	case errors.Is(err, tenancy.ErrTenantNotFound):
		return cannedUnknown
	case errors.Is(err, tenancy.ErrTenantSuspended):
		return cannedSuspended
	case errors.Is(err, tenancy.ErrTenantNotReady):
		return cannedNotReady
	case errors.Is(err, tenancy.ErrTenantUnavailable):
		return cannedTenantDown
	case errors.Is(err, tenancy.ErrCapacityExhausted):
		return cannedCapacity
	case errors.Is(err, tenancy.ErrTenantMoving):
		return cannedMoving
	case errors.Is(err, context.Canceled):
		return cannedCancelled
	case errors.Is(err, context.DeadlineExceeded):
		return cannedTimeout
	}
	var st sqlStater
	if errors.As(err, &st) {
		if c := cannedForSQLState(st.SQLState()); c != nil {
			return c
		}
	}
	return cannedInternal
}

// ProblemFor maps an error of the toolkit to the problem a client should see: tenancy.ErrNoTenant
// and malformed names 400, reserved names 400, tenancy.ErrTenantNotFound 404,
// tenancy.ErrTenantSuspended 403, tenancy.ErrTenantNotReady, tenancy.ErrTenantUnavailable,
// tenancy.ErrCapacityExhausted, tenancy.ErrTenantMoving and deadlines 503 with Retry-After. A PostgreSQL error caused by
// the request's values (an error with SQLState(), as pgconn.PgError has) is a 4xx: a data
// exception or integrity violation 400 (a unique or exclusion violation 409), a refusal of
// row-level security 403. Errors it does not know are a 500 whose detail says nothing of the error
// (log it yourself).
func ProblemFor(err error) Problem { return cannedFor(err).p }

// ProblemRoutes serves mux, answering what mux itself refuses — no route (404) and a method the
// path does not take (405, with its Allow header) — as application/problem+json, like every other
// error, instead of ServeMux's plain text.
func ProblemRoutes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// ServeMux's own answer: a redirect (to the path with a slash) passes; 404 and 405 become
		// problems.
		probe := &headerProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusNotFound:
			WriteProblem(w, &Problem{Type: ProblemNoRoute, Title: "Not found", Status: http.StatusNotFound,
				Detail: "No resource has this path."})
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			WriteProblem(w, &Problem{Type: ProblemMethodNotAllowed, Title: "Method not allowed", Status: http.StatusMethodNotAllowed,
				Detail: "This path takes " + probe.header.Get("Allow") + "."})
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

// headerProbe records what a handler answers, and discards the body.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}
func (p *headerProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}
