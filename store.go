package tenancy

import "context"

// Store finds tenants. tenancycatalog.Catalog implements it against PostgreSQL; tenancycache.Lookup
// puts an in-process cache in front of any Store.
//
// Each method returns ErrTenantNotFound when nothing matches, and any other error when the answer is
// unknown (the database is unreachable, say): callers must never read such an error as "not found"
// or "active". A found tenant is returned whatever its Status; Tenant.Err says whether to serve it.
type Store interface {
	TenantByID(ctx context.Context, id string) (*Tenant, error)
	TenantBySlug(ctx context.Context, slug string) (*Tenant, error)
	// TenantByDomain finds the tenant that owns a custom domain, given as a normalized host name.
	TenantByDomain(ctx context.Context, domain string) (*Tenant, error)
}
