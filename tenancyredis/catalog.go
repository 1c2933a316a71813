package tenancyredis

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/gotenancy/tenancy"
)

// CatalogStore is a second level for tenant lookups, shared by the instances of a service: the
// reference article's resolve_tenant design (Redis in front of the database), kept correct.
// Put a tenancycache.Lookup in front of it and the catalog behind it, and give both to
// Catalog.Watch, this one first — tenancy.Invalidators{second, first} — so the first level
// never reloads from a second level not yet dropped. Every catalog change drops the whole second
// level at once (one INCR), so it never serves a suspended or deleted tenant as active for longer
// than the first level would. Only found tenants are kept; "not found" stays in each instance's
// first level.
//
// Redis failing never serves an old answer: from the moment a change is heard until a drop of
// the second level has succeeded (retried in the background, at most every RetryInterval, while
// lookups come), every lookup goes to the catalog and nothing is stored. So a suspension reaches
// every instance at once even while Redis is failing or flapping.
type CatalogStore struct {
	src   tenancy.Store
	cache *Cache
	ttl   time.Duration

	asked   atomic.Uint64 // drops asked for (one per change heard)
	dropped atomic.Uint64 // the last asked-for drop a successful FlushTenant covers
	purging atomic.Bool   // a drop is being attempted
	lastTry atomic.Int64  // unix nanoseconds of the last failed attempt

	bypassed, purgeFailures atomic.Uint64
}

// catalogTenant is the pseudo-tenant whose generation the second level lives under.
const catalogTenant = "tenancy.catalog"

// retryInterval is how often a failed drop of the second level is retried while lookups come.
const retryInterval = 100 * time.Millisecond

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

// stale reports whether a change has been heard that no successful drop covers yet.
func (s *CatalogStore) stale() bool { return s.dropped.Load() < s.asked.Load() }

// get reads key from Redis, else from src; a Redis failure falls through to src (counted by the
// caller's metrics, not hidden as "not found"). While the second level is stale it is bypassed.
func (s *CatalogStore) get(ctx context.Context, key string, load func(context.Context) (*tenancy.Tenant, error)) (*tenancy.Tenant, error) {
	if s.stale() {
		s.bypassed.Add(1)
		s.drop(false)
		return load(ctx)
	}
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
	if err == nil && !s.stale() { // Redis answered: keep the tenant under the generation read
		if b, merr := json.Marshal(t); merr == nil {
			_ = s.cache.Set(context.WithoutCancel(ctx), catalogTenant, key, b, s.ttl, gen)
		}
	}
	return t, nil
}

// Invalidate drops the second level: a tenant changed. It implements tenancy.Invalidator. It
// returns at once, and never an error: lookups bypass the second level until the drop has
// succeeded (retried in the background), so a Redis that cannot be reached never serves a
// stale tenant.
func (s *CatalogStore) Invalidate(ctx context.Context, _ string) error { return s.Purge(ctx) }

// Purge drops the second level (see Invalidate).
func (s *CatalogStore) Purge(context.Context) error {
	s.asked.Add(1)
	s.drop(true)
	return nil
}

// drop starts an attempt to drop the second level, unless one is running or (now false) the last
// one failed less than retryInterval ago.
func (s *CatalogStore) drop(now bool) {
	if !now && time.Now().UnixNano()-s.lastTry.Load() < int64(retryInterval) {
		return
	}
	if !s.purging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		target := s.asked.Load()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.cache.FlushTenant(ctx, catalogTenant)
		cancel()
		if err != nil {
			s.purgeFailures.Add(1)
			s.lastTry.Store(time.Now().UnixNano())
		} else {
			s.dropped.Store(target) // only this goroutine writes dropped, and target only grows
		}
		s.purging.Store(false)
		if err == nil && s.stale() { // changes heard during the attempt
			s.drop(true)
		}
	}()
}

// CatalogStoreStats counts what a CatalogStore did.
type CatalogStoreStats struct {
	Bypassed      uint64 `json:"bypassed"`       // lookups sent to the catalog because a drop had not succeeded yet
	PurgeFailures uint64 `json:"purge_failures"` // drops of the second level that failed (and were retried)
	Stale         bool   `json:"stale"`          // a drop is pending now
}

// Stats returns the counters.
func (s *CatalogStore) Stats() CatalogStoreStats {
	return CatalogStoreStats{Bypassed: s.bypassed.Load(), PurgeFailures: s.purgeFailures.Load(), Stale: s.stale()}
}
