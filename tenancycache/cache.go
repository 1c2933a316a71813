package tenancycache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gotenancy/tenancy"
)

// Store keeps bytes by tenant and key. MemoryStore and tenancyredis.Cache implement it; Cache
// binds one to the tenant in the context.
type Store interface {
	// Get returns the value and true, or false on a miss; and the tenant's generation when read.
	Get(ctx context.Context, tenant, key string) (value []byte, gen uint64, ok bool, err error)
	// Set stores value for ttl (0 means the store's default) in generation gen of the tenant, or in
	// its current generation when gen is 0. A value set in a generation that a flush has ended is
	// never read: a load that began before a flush cannot bring back what the flush dropped.
	Set(ctx context.Context, tenant, key string, value []byte, ttl time.Duration, gen uint64) error
	Delete(ctx context.Context, tenant, key string) error
	// FlushTenant drops every entry of the tenant, in constant time whatever the store holds.
	FlushTenant(ctx context.Context, tenant string) error
}

// Config configures a Cache. A nil *Config means the defaults.
type Config struct {
	// Jitter spreads expiries: a TTL is shortened by up to this fraction, at random, so entries
	// set together do not expire together. Defaults to 0.1.
	Jitter float64
}

// Cache is a tenant-scoped cache: every call reads the tenant from the context, so code cannot
// pass the wrong one, and no tenant is tenancy.ErrNoTenant. ForTenant is the explicit form, for
// admin tools.
type Cache struct {
	store  Store
	jitter float64
	group  singleflight.Group

	loads, readErrors atomic.Uint64
	waiting           atomic.Int64
}

// New returns a cache over store.
func New(store Store, cfg *Config) (*Cache, error) {
	if store == nil {
		return nil, errors.New("tenancycache: New needs a Store")
	}
	c := &Cache{store: store, jitter: 0.1}
	if cfg != nil {
		if cfg.Jitter < 0 || cfg.Jitter >= 1 {
			return nil, errors.New("tenancycache: Jitter must be in [0, 1)")
		}
		c.jitter = cfg.Jitter
	}
	return c, nil
}

func tenantOf(ctx context.Context) (string, error) {
	t, ok := tenancy.FromContext(ctx)
	if !ok || t.ID == "" {
		return "", tenancy.ErrNoTenant
	}
	return t.ID, nil
}

// Get returns the context's tenant's value for key.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	t, err := tenantOf(ctx)
	if err != nil {
		return nil, false, err
	}
	v, _, ok, err := c.store.Get(ctx, t, key)
	return v, ok, err
}

// Set stores value for the context's tenant, for ttl shortened by the jitter.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	t, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return c.store.Set(ctx, t, key, value, c.jittered(ttl), 0)
}

// Delete drops the context's tenant's value for key.
func (c *Cache) Delete(ctx context.Context, key string) error {
	t, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return c.store.Delete(ctx, t, key)
}

// FlushTenant drops everything cached for the context's tenant.
func (c *Cache) FlushTenant(ctx context.Context) error {
	t, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return c.store.FlushTenant(ctx, t)
}

// Forget flushes the entries of the tenant t: for tenancycatalog.Catalog.OnDeleted, so a deleted
// tenant's entries go with it rather than by their TTL.
func (c *Cache) Forget(ctx context.Context, t *tenancy.Tenant) error {
	if t == nil || t.ID == "" {
		return tenancy.ErrNoTenant
	}
	return c.ForTenant(t.ID).FlushTenant(ctx)
}

// ForTenant returns the cache of one tenant named explicitly, for admin tools and jobs that act
// on a tenant from outside its requests. Request code uses the context-bound methods.
func (c *Cache) ForTenant(tenantID string) *TenantCache { return &TenantCache{c: c, tenant: tenantID} }

// TenantCache is one tenant's cache, named explicitly (see Cache.ForTenant).
type TenantCache struct {
	c      *Cache
	tenant string
}

func (tc *TenantCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, _, ok, err := tc.c.store.Get(ctx, tc.tenant, key)
	return v, ok, err
}

func (tc *TenantCache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return tc.c.store.Set(ctx, tc.tenant, key, value, tc.c.jittered(ttl), 0)
}

func (tc *TenantCache) Delete(ctx context.Context, key string) error {
	return tc.c.store.Delete(ctx, tc.tenant, key)
}

func (tc *TenantCache) FlushTenant(ctx context.Context) error {
	return tc.c.store.FlushTenant(ctx, tc.tenant)
}

func (c *Cache) jittered(ttl time.Duration) time.Duration {
	if ttl <= 0 || c.jitter == 0 {
		return ttl
	}
	return ttl - time.Duration(rand.Float64()*c.jitter*float64(ttl))
}

// Stats counts get-or-load work.
type Stats struct {
	Loads      uint64 `json:"loads"`       // loader calls (one for N concurrent misses of a key)
	ReadErrors uint64 `json:"read_errors"` // store reads that failed and were served as misses
	Waiting    int64  `json:"waiting"`     // callers waiting now on a load (theirs or another's)
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{Loads: c.loads.Load(), ReadErrors: c.readErrors.Load(), Waiting: c.waiting.Load()}
}

// GetOrLoad returns the context's tenant's value for key, decoded from JSON; on a miss it calls
// load once for all concurrent callers of that tenant and key, caches the result for ttl (with
// jitter) and returns it. A store that cannot be read is a miss (counted in Stats.ReadErrors),
// never another tenant's value; a store that cannot be written leaves the loaded value returned.
func GetOrLoad[T any](ctx context.Context, c *Cache, key string, ttl time.Duration, load func(context.Context) (T, error)) (T, error) {
	var zero T
	t, err := tenantOf(ctx)
	if err != nil {
		return zero, err
	}
	b, gen, ok, err := c.store.Get(ctx, t, key)
	if err == nil && ok {
		var v T
		if json.Unmarshal(b, &v) == nil {
			return v, nil
		}
	} else if err != nil {
		c.readErrors.Add(1)
	}
	// One load per tenant, key and generation: a caller after a flush does not join a load that
	// began before it.
	ch := c.group.DoChan(Key(t, key)+"\x00"+strconv.FormatUint(gen, 10), func() (_ any, err error) {
		// A panicking load panics in its callers, as a direct call would (DoChan would crash
		// the process from a goroutine of its own).
		defer func() {
			if p := recover(); p != nil {
				err = loadPanic{p}
			}
		}()
		c.loads.Add(1)
		v, err := load(ctx)
		if err != nil {
			return zero, err
		}
		if b, err := json.Marshal(v); err == nil && gen != 0 {
			_ = c.store.Set(context.WithoutCancel(ctx), t, key, b, c.jittered(ttl), gen)
		}
		return v, nil
	})
	// Counted once it has joined the load (DoChan returns then), so Stats.Waiting says who waits.
	c.waiting.Add(1)
	res := <-ch
	c.waiting.Add(-1)
	if p, ok := res.Err.(loadPanic); ok {
		panic(p.value)
	}
	if res.Err != nil {
		return zero, res.Err
	}
	return res.Val.(T), nil
}

// loadPanic carries a load's panic to every caller waiting on the load.
type loadPanic struct{ value any }

func (p loadPanic) Error() string { return fmt.Sprintf("tenancycache: the load panicked: %v", p.value) }
