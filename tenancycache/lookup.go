package tenancycache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/clock"
)

// LookupConfig configures a Lookup. A nil *LookupConfig means the defaults.
type LookupConfig struct {
	// Size is the most lookups (slugs, domains, ids) kept. Defaults to 10,000.
	Size int
	// TTL bounds how long a found tenant is served from memory when a change notification is lost.
	// Defaults to 30 seconds.
	TTL time.Duration
	// NegativeTTL is how long "no such tenant" is remembered, so a flood of requests for an unknown
	// host costs one query. Defaults to 5 seconds.
	NegativeTTL time.Duration
	// LoadTimeout bounds one query to the source. The query runs on after the caller that started
	// it gives up, because other callers wait for it too. Defaults to 5 seconds.
	LoadTimeout time.Duration
	// Now returns the current time. Defaults to a clock that is cheaper than time.Now on every hit
	// and at most a millisecond stale.
	Now func() time.Time
}

// Lookup is a tenancy.Store that remembers lookups in process: bounded in size, each entry
// for at most TTL (NegativeTTL for "not found"), with concurrent misses for one name collapsed into
// one query. Errors other than tenancy.ErrTenantNotFound are never cached: a database outage is
// reported as the error it is, not as "unknown tenant".
//
// Feed it the catalog's change notifications (Catalog.Watch) so that a change reaches every
// instance at once instead of after TTL.
type Lookup struct {
	src         tenancy.Store
	size        int
	ttl, negTTL time.Duration
	loadTimeout time.Duration
	now         func() int64 // unix nanoseconds

	mu      sync.RWMutex
	entries [kinds]map[string]cacheEntry // one map per lookupKind: string keys hash fastest
	n       int                          // entries across the maps
	gen     atomic.Uint64                // bumped by every invalidation; a load that spans one is not cached
	group   singleflight.Group

	hits, misses, loads atomic.Uint64
}

var _ tenancy.Store = (*Lookup)(nil)

type lookupKind byte

const (
	byID lookupKind = iota
	bySlug
	byDomain
	kinds
)

type lookupKey struct {
	kind lookupKind
	name string
}

type cacheEntry struct {
	t       *tenancy.Tenant // nil: not found
	expires int64           // unix nanoseconds
}

// NewLookup returns a cache in front of src.
func NewLookup(src tenancy.Store, cfg *LookupConfig) (*Lookup, error) {
	if src == nil {
		return nil, errors.New("tenancycache: NewLookup needs a source store")
	}
	c := &Lookup{src: src, size: 10_000, ttl: 30 * time.Second, negTTL: 5 * time.Second,
		loadTimeout: 5 * time.Second, now: clock.Now}
	if cfg != nil {
		if cfg.Size < 0 || cfg.TTL < 0 || cfg.NegativeTTL < 0 || cfg.LoadTimeout < 0 {
			return nil, errors.New("tenancycache: LookupConfig fields must not be negative")
		}
		if cfg.Size > 0 {
			c.size = cfg.Size
		}
		if cfg.TTL > 0 {
			c.ttl = cfg.TTL
		}
		if cfg.NegativeTTL > 0 {
			c.negTTL = cfg.NegativeTTL
		}
		if cfg.LoadTimeout > 0 {
			c.loadTimeout = cfg.LoadTimeout
		}
		if now := cfg.Now; now != nil {
			c.now = func() int64 { return now().UnixNano() }
		}
	}
	for i := range c.entries {
		c.entries[i] = make(map[string]cacheEntry)
	}
	return c, nil
}

// TenantByID implements tenancy.Store.
func (c *Lookup) TenantByID(ctx context.Context, id string) (*tenancy.Tenant, error) {
	return c.get(ctx, lookupKey{byID, id})
}

// TenantBySlug implements tenancy.Store.
func (c *Lookup) TenantBySlug(ctx context.Context, slug string) (*tenancy.Tenant, error) {
	return c.get(ctx, lookupKey{bySlug, slug})
}

// TenantByDomain implements tenancy.Store.
func (c *Lookup) TenantByDomain(ctx context.Context, domain string) (*tenancy.Tenant, error) {
	return c.get(ctx, lookupKey{byDomain, domain})
}

func (c *Lookup) get(ctx context.Context, k lookupKey) (*tenancy.Tenant, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[k.kind][k.name]
	c.mu.RUnlock()
	if ok && now < e.expires {
		c.hits.Add(1)
		if e.t == nil {
			return nil, tenancy.ErrTenantNotFound
		}
		return e.t, nil
	}
	c.misses.Add(1)
	return c.load(ctx, k)
}

// load asks the source once for all concurrent callers of one key within one generation: a caller
// that arrives after an invalidation never joins a load that began before it.
func (c *Lookup) load(ctx context.Context, k lookupKey) (*tenancy.Tenant, error) {
	gen := c.gen.Load()
	sfKey := strconv.FormatUint(gen, 36) + string(rune('a'+k.kind)) + k.name
	ch := c.group.DoChan(sfKey, func() (any, error) {
		c.loads.Add(1)
		// The load serves every waiter: it must not end because the first caller's request did.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.loadTimeout)
		defer cancel()
		var t *tenancy.Tenant
		var err error
		switch k.kind {
		case byID:
			t, err = c.src.TenantByID(lctx, k.name)
		case bySlug:
			t, err = c.src.TenantBySlug(lctx, k.name)
		default:
			t, err = c.src.TenantByDomain(lctx, k.name)
		}
		switch {
		case err == nil:
			c.put(gen, k, t, c.ttl)
		case errors.Is(err, tenancy.ErrTenantNotFound):
			c.put(gen, k, nil, c.negTTL)
		}
		return t, err
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*tenancy.Tenant), nil
	}
}

func (c *Lookup) put(gen uint64, k lookupKey, t *tenancy.Tenant, ttl time.Duration) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return // invalidated while loading: the answer may predate the change
	}
	m := c.entries[k.kind]
	if _, ok := m[k.name]; !ok {
		if c.n >= c.size {
			c.evictLocked(now)
		}
		c.n++
	}
	m[k.name] = cacheEntry{t: t, expires: now + int64(ttl)}
}

// evictLocked makes room for one entry: the first expired entry among a few sampled (map order is
// random), else the sampled entry closest to expiry.
func (c *Lookup) evictLocked(now int64) {
	const samples = 8
	var victim lookupKey
	var soonest int64
	n := 0
sample:
	for kind, m := range c.entries {
		for name, e := range m {
			if e.expires <= now {
				victim = lookupKey{lookupKind(kind), name}
				break sample
			}
			if n == 0 || e.expires < soonest {
				victim, soonest = lookupKey{lookupKind(kind), name}, e.expires
			}
			if n++; n == samples {
				break sample
			}
		}
	}
	if _, ok := c.entries[victim.kind][victim.name]; ok {
		delete(c.entries[victim.kind], victim.name)
		c.n--
	}
}

// Invalidate drops every entry about the tenant with this ID and every "not found" entry (the
// change may have created the name that was unknown). Catalog.Watch calls it for each change.
func (c *Lookup) Invalidate(_ context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	for _, m := range c.entries {
		for name, e := range m {
			if e.t == nil || e.t.ID == id {
				delete(m, name)
				c.n--
			}
		}
	}
	return nil
}

// Purge drops every entry. Catalog.Watch calls it after (re)connecting, when changes may have been
// missed.
func (c *Lookup) Purge(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	for _, m := range c.entries {
		clear(m)
	}
	c.n = 0
	return nil
}

// LookupStats counts a Lookup's work since it was made.
type LookupStats struct {
	Entries int    `json:"entries"` // entries held now
	Hits    uint64 `json:"hits"`    // lookups answered from memory
	Misses  uint64 `json:"misses"`  // lookups that were not
	Loads   uint64 `json:"loads"`   // queries sent to the source (Misses minus the ones that joined a load)
}

// Stats returns the counters.
func (c *Lookup) Stats() LookupStats {
	c.mu.RLock()
	n := c.n
	c.mu.RUnlock()
	return LookupStats{Entries: n, Hits: c.hits.Load(), Misses: c.misses.Load(), Loads: c.loads.Load()}
}
