// Package tenancy is the domain of the tenancy toolkit: the Tenant, how it travels in a
// context.Context, the rules for its slug, and the errors every other package returns.
// It imports only the standard library.
//
// A request's tenant is put in its context once, by tenancyhttp.Middleware (or by a job runner or
// a test with WithTenant), and read wherever it is needed:
//
//	t, ok := tenancy.FromContext(ctx)      // ok is false when there is no tenant
//	t := tenancy.MustFromContext(ctx)      // panics with ErrNoTenant: for code behind the middleware
//
// Nothing in the toolkit falls back to "all tenants" when the context has none: it fails with
// ErrNoTenant, whose message says how to fix the call site.
//
// Work that outlives the request (a goroutine started by a handler) takes Detach(ctx): the tenant
// and other values stay, the request's cancellation does not. Work that crosses a process boundary
// stores Tenant.ID and loads the tenant again in the worker.
//
// Slugs are DNS labels that are not reserved: ValidateSlug, or NewSlugRules for your own reserved
// list. Errors say which rule failed (a *SlugError wrapping ErrInvalidSlug or ErrReservedSlug).
package tenancy
