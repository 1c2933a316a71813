package tenancy

import "context"

type contextKey struct{}

// WithTenant returns a copy of ctx that carries t. A nil t yields a context without a tenant.
func WithTenant(ctx context.Context, t *Tenant) context.Context {
	return context.WithValue(ctx, contextKey{}, t)
}

// FromContext returns the tenant in ctx and whether there is one.
func FromContext(ctx context.Context) (*Tenant, bool) {
	t, _ := ctx.Value(contextKey{}).(*Tenant)
	return t, t != nil
}

// MustFromContext returns the tenant in ctx. It panics with ErrNoTenant when there is none: use it
// only where a missing tenant is a programming error, such as behind tenancyhttp.Middleware.
func MustFromContext(ctx context.Context) *Tenant {
	t, ok := FromContext(ctx)
	if !ok {
		panic(ErrNoTenant)
	}
	return t
}

// Detach returns a context for work that outlives the request: it keeps ctx's values (the tenant,
// loggers, trace ids) but not its cancellation or deadline, so the work is not cut off when the
// response is written. It returns ErrNoTenant when ctx carries no tenant, so background work can
// never start unscoped. Give the detached work its own deadline with context.WithTimeout.
//
// For work that crosses a process boundary (a job queue), store the tenant's ID with the job and
// load the tenant again in the worker; then call WithTenant.
func Detach(ctx context.Context) (context.Context, error) {
	if _, ok := FromContext(ctx); !ok {
		return nil, ErrNoTenant
	}
	return context.WithoutCancel(ctx), nil
}
