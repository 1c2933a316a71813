package tenancyhttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"tenancy"
)

// Problem types: the stable "type" member of every problem+json body this package writes.
const (
	ProblemNoTenant        = "urn:tenancy:problem:no-tenant"        // 400: the request names no tenant
	ProblemReservedTenant  = "urn:tenancy:problem:reserved-tenant"  // 400: the name is reserved (www, api, ...)
	ProblemUnknownTenant   = "urn:tenancy:problem:unknown-tenant"   // 404: no such tenant (or deleted)
	ProblemTenantSuspended = "urn:tenancy:problem:tenant-suspended" // 403
	ProblemUnavailable     = "urn:tenancy:problem:unavailable"      // 503: a dependency is down
	ProblemBadRequest      = "urn:tenancy:problem:bad-request"      // 400: the body or a parameter is wrong
	ProblemNotFound        = "urn:tenancy:problem:not-found"        // 404: the resource does not exist
	ProblemConflict        = "urn:tenancy:problem:conflict"         // 409: the name is taken
	ProblemUnauthorized    = "urn:tenancy:problem:unauthorized"     // 401
	ProblemInternal        = "urn:tenancy:problem:internal"         // 500
)

// Problem is an RFC 9457 problem details object. Detail must not carry request input: clients and
// logs would show it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// ProblemFor maps an error of the toolkit to the problem a client should see. Errors it does not
// know are a 500 whose detail says nothing of the error (log it yourself).
func ProblemFor(err error) *Problem {
	switch {
	case errors.Is(err, tenancy.ErrNoTenant), errors.Is(err, tenancy.ErrInvalidSlug), errors.Is(err, ErrInvalidHost):
		return &Problem{Type: ProblemNoTenant, Title: "No tenant", Status: http.StatusBadRequest,
			Detail: "The request does not name a tenant."}
	case errors.Is(err, tenancy.ErrReservedSlug):
		return &Problem{Type: ProblemReservedTenant, Title: "Reserved name", Status: http.StatusBadRequest,
			Detail: "The name is reserved and belongs to no tenant."}
	case errors.Is(err, errUntrustedHeader):
		return &Problem{Type: ProblemNoTenant, Title: "No tenant", Status: http.StatusBadRequest,
			Detail: "The tenant header is accepted only from trusted callers."}
	case errors.Is(err, tenancy.ErrTenantNotFound):
		return &Problem{Type: ProblemUnknownTenant, Title: "Unknown tenant", Status: http.StatusNotFound,
			Detail: "No tenant has this name."}
	case errors.Is(err, tenancy.ErrTenantSuspended):
		return &Problem{Type: ProblemTenantSuspended, Title: "Tenant suspended", Status: http.StatusForbidden,
			Detail: "This tenant is suspended."}
	case errors.Is(err, context.Canceled):
		return &Problem{Type: ProblemUnavailable, Title: "Request cancelled", Status: 499}
	case errors.Is(err, context.DeadlineExceeded):
		return &Problem{Type: ProblemUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable,
			Detail: "A dependency did not answer in time; try again.", RetryAfter: 1}
	}
	return &Problem{Type: ProblemInternal, Title: "Internal error", Status: http.StatusInternalServerError}
}
