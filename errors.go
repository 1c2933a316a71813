package tenancy

import "errors"

// Sentinel errors. Functions document which they return; callers test with errors.Is.
var (
	// ErrNoTenant means the context carries no tenant. Code that needs a tenant never falls back to
	// "all tenants": it fails with this error before touching data.
	ErrNoTenant = errors.New("tenancy: no tenant in context: wrap the handler with tenancyhttp.Middleware " +
		"or call tenancy.WithTenant (for background work, tenancy.Detach the request context)")
	// ErrTenantNotFound means no tenant has that ID, slug or domain (or it was deleted).
	ErrTenantNotFound = errors.New("tenancy: tenant not found")
	// ErrTenantSuspended means the tenant exists but is suspended: it is refused until resumed.
	ErrTenantSuspended = errors.New("tenancy: tenant is suspended: resume it to serve it again")
	// ErrTenantNotReady means the tenant is still being provisioned (or its provisioning failed and
	// waits to be resumed): try again later.
	ErrTenantNotReady = errors.New("tenancy: tenant is being provisioned")
	// ErrTenantUnavailable means the tenant's own database cannot be reached right now: its
	// requests fail fast while other tenants are served. Try again later.
	ErrTenantUnavailable = errors.New("tenancy: tenant's database is unavailable")
	// ErrTenantMoving means the tenant is being moved to another placement and its write waited
	// for the move's switch longer than allowed (or cannot follow it): nothing was written. Try
	// again shortly; the tenant is then served from its new placement.
	ErrTenantMoving = errors.New("tenancy: tenant is being moved: try again shortly")
	// ErrCapacityExhausted means every connection the service may open to tenant databases is in
	// use and none came free in time. Try again later.
	ErrCapacityExhausted = errors.New("tenancy: tenant capacity exhausted: every tenant database connection is busy")
	// ErrIsolationNotSupported means the tenant's isolation model is not one this component can
	// serve (an unknown model, or database tenants without a pool router).
	ErrIsolationNotSupported = errors.New("tenancy: isolation model not supported")
	// ErrInvalidSlug means a slug breaks the DNS label rules; the SlugError says which.
	ErrInvalidSlug = errors.New("tenancy: invalid slug")
	// ErrReservedSlug means a slug is a valid DNS label but reserved (www, api, admin, ...).
	ErrReservedSlug = errors.New("tenancy: reserved slug")
	// ErrDuplicateSlug means another tenant already has the slug.
	ErrDuplicateSlug = errors.New("tenancy: slug already taken")
	// ErrInvalidDomain means a custom domain is not a valid host name.
	ErrInvalidDomain = errors.New("tenancy: invalid domain")
	// ErrDuplicateDomain means another tenant (or this one) already has the domain.
	ErrDuplicateDomain = errors.New("tenancy: domain already taken")
	// ErrInvalidTenant means a tenant field other than the slug is unusable (a name too long, a plan
	// that is not a label); the error says which.
	ErrInvalidTenant = errors.New("tenancy: invalid tenant")
	// ErrInvalidStatus means a string names no Status.
	ErrInvalidStatus = errors.New("tenancy: invalid status")
	// ErrInvalidIsolation means a string names no Isolation.
	ErrInvalidIsolation = errors.New("tenancy: invalid isolation")
)
