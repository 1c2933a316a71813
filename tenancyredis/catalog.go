package tenancyredis

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"tenancy"
)

// CatalogStore is a second level for tenant lookups, shared by the instances of a service: the
// reference article's resolve_tenant design (Redis in front of the database), kept correct.
// Put a tenancypgx.CachedStore in front of it and the catalog behind it, and give both to
// Catalog.Watch, this one first — tenancypgx.Invalidators{second, first} — so the first level
// never reloads from a second level not yet dropped. Every catalog change drops the whole second
// level at once
// (one INCR), so it never serves a suspended or deleted tenant as active for longer than the
// first level would. Only found tenants are kept; "not found" stays in each instance's first level.
type CatalogStore struct {
	src   tenancy.Store
	cache *Cache
	ttl   time.Duration
}

// catalogTenant is the pseudo-tenant whose generation the second level lives under.
const catalogTenant = "tenancy.catalog"

var _ tenancy.Store = (*CatalogStore)(nil)

// NewCatalogStore returns a second level over src kept in cache for ttl (default 5 minutes).
func NewCatalogStore(src tenancy.Store, cache *Cache, ttl time.Duration) (*CatalogStore, error) {
	if src == nil || cache == nil {
		return nil, errors.New("tenancyredis: NewCatalogStore needs a source store and a Cache")
	}
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	return &CatalogStore{src: src, cache: cache, ttl: ttl}, nil
}

// TenantByID implements tenancy.Store.
func (s *CatalogStore) TenantByID(ctx context.Context, id string) (*tenancy.Tenant, error) {
	return s.get(ctx, "id:"+id, func(ctx context.Context) (*tenancy.Tenant, error) { return s.src.TenantByID(ctx, id) })
}

// TenantBySlug implements tenancy.Store.
func (s *CatalogStore) TenantBySlug(ctx context.Context, slug string) (*tenancy.Tenant, error) {
	return s.get(ctx, "slug:"+slug, func(ctx context.Context) (*tenancy.Tenant, error) { return s.src.TenantBySlug(ctx, slug) })
}

// TenantByDomain implements tenancy.Store.
func (s *CatalogStore) TenantByDomain(ctx context.Context, domain string) (*tenancy.Tenant, error) {
	return s.get(ctx, "domain:"+domain, func(ctx context.Context) (*tenancy.Tenant, error) { return s.src.TenantByDomain(ctx, domain) })
}

// get reads key from Redis, else from src; a Redis failure falls through to src (counted by the
// caller's metrics, not hidden as "not found").
func (s *CatalogStore) get(ctx context.Context, key string, load func(context.Context) (*tenancy.Tenant, error)) (*tenancy.Tenant, error) {
	b, gen, ok, err := s.cache.Get(ctx, catalogTenant, key)
	if err == nil && ok {
		var t tenancy.Tenant
		if json.Unmarshal(b, &t) == nil {
			return &t, nil
		}
	}
	t, lerr := load(ctx)
	if lerr != nil {
		return nil, lerr
	}
	if err == nil { // Redis answered: keep the tenant under the generation read
		if b, merr := json.Marshal(t); merr == nil {
			_ = s.cache.Set(context.WithoutCancel(ctx), catalogTenant, key, b, s.ttl, gen)
		}
	}
	return t, nil
}

// Invalidate drops the second level: a tenant changed. It has the shape of
// tenancypgx.Invalidator.
func (s *CatalogStore) Invalidate(string) { s.Purge() }

// Purge drops the second level.
func (s *CatalogStore) Purge() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.cache.FlushTenant(ctx, catalogTenant)
}
