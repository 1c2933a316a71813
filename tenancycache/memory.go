package tenancycache

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gotenancy/tenancy/internal/clock"
)

// MemoryConfig configures a MemoryStore. A nil *MemoryConfig means the defaults.
type MemoryConfig struct {
	// MaxBytes bounds keys and values held, all tenants together. Defaults to 64 MiB.
	MaxBytes int64
	// TenantShare is the largest fraction of MaxBytes one tenant may hold, so a noisy tenant
	// evicts its own entries, not everyone else's. Defaults to 0.25.
	TenantShare float64
	// DefaultTTL applies when Set is given none. Defaults to one hour.
	DefaultTTL time.Duration
	// Now returns the current time. Defaults to a coarse clock cheaper than time.Now.
	Now func() time.Time
}

// MemoryStore is a Store in process memory: LRU per tenant, bounded in bytes overall and per
// tenant; when the whole is full, the tenant holding the most gives way. FlushTenant swaps the
// tenant's entries for empty ones: constant time, whatever it held.
type MemoryStore struct {
	mu         sync.Mutex
	tenants    map[string]*memTenant
	bytes      int64
	max        int64
	tenantMax  int64
	defaultTTL time.Duration
	now        func() int64
}

type memTenant struct {
	gen   uint64
	items map[string]*list.Element // of *memItem, most recent first
	lru   *list.List
	bytes int64
}

type memItem struct {
	key     string
	value   []byte
	expires int64
}

// itemOverhead approximates the bookkeeping an entry costs beyond its key and value.
const itemOverhead = 96

func (it *memItem) size() int64 { return int64(len(it.key)+len(it.value)) + itemOverhead }

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty memory store.
func NewMemoryStore(cfg *MemoryConfig) (*MemoryStore, error) {
	m := &MemoryStore{tenants: map[string]*memTenant{}, max: 64 << 20, defaultTTL: time.Hour, now: clock.Now}
	share := 0.25
	if cfg != nil {
		if cfg.MaxBytes < 0 || cfg.TenantShare < 0 || cfg.TenantShare > 1 || cfg.DefaultTTL < 0 {
			return nil, errors.New("tenancycache: MemoryConfig: MaxBytes and DefaultTTL must not be negative, TenantShare in [0, 1]")
		}
		if cfg.MaxBytes > 0 {
			m.max = cfg.MaxBytes
		}
		if cfg.TenantShare > 0 {
			share = cfg.TenantShare
		}
		if cfg.DefaultTTL > 0 {
			m.defaultTTL = cfg.DefaultTTL
		}
		if now := cfg.Now; now != nil {
			m.now = func() int64 { return now().UnixNano() }
		}
	}
	m.tenantMax = max(1, int64(share*float64(m.max)))
	return m, nil
}

func (m *MemoryStore) tenant(id string) *memTenant {
	t := m.tenants[id]
	if t == nil {
		t = &memTenant{gen: 1, items: map[string]*list.Element{}, lru: list.New()}
		m.tenants[id] = t
	}
	return t
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, tenant, key string) ([]byte, uint64, bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tenant(tenant)
	e := t.items[key]
	if e == nil {
		return nil, t.gen, false, nil
	}
	it := e.Value.(*memItem)
	if it.expires <= now {
		m.remove(t, e)
		return nil, t.gen, false, nil
	}
	t.lru.MoveToFront(e)
	return it.value, t.gen, true, nil
}

// Set implements Store. The value is copied.
func (m *MemoryStore) Set(_ context.Context, tenant, key string, value []byte, ttl time.Duration, gen uint64) error {
	if ttl <= 0 {
		ttl = m.defaultTTL
	}
	it := &memItem{key: key, value: append([]byte(nil), value...), expires: m.now() + int64(ttl)}
	if it.size() > m.tenantMax {
		return nil // larger than a tenant may hold: not cached
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tenant(tenant)
	if gen != 0 && gen != t.gen {
		return nil // loaded before a flush: dropping it is what the flush asked for
	}
	if e := t.items[key]; e != nil {
		m.remove(t, e)
	}
	for t.bytes+it.size() > m.tenantMax {
		m.remove(t, t.lru.Back())
	}
	for m.bytes+it.size() > m.max {
		m.remove(m.largest(), nil)
	}
	t.items[key] = t.lru.PushFront(it)
	t.bytes += it.size()
	m.bytes += it.size()
	return nil
}

// largest returns the tenant holding the most bytes.
func (m *MemoryStore) largest() *memTenant {
	var big *memTenant
	for _, t := range m.tenants {
		if big == nil || t.bytes > big.bytes {
			big = t
		}
	}
	return big
}

// remove drops e from t, or t's least recently used entry when e is nil.
func (m *MemoryStore) remove(t *memTenant, e *list.Element) {
	if e == nil {
		e = t.lru.Back()
	}
	it := t.lru.Remove(e).(*memItem)
	delete(t.items, it.key)
	t.bytes -= it.size()
	m.bytes -= it.size()
}

// Delete implements Store.
func (m *MemoryStore) Delete(_ context.Context, tenant, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.tenants[tenant]; t != nil {
		if e := t.items[key]; e != nil {
			m.remove(t, e)
		}
	}
	return nil
}

// FlushTenant implements Store in constant time. A tenant the store has never seen holds nothing
// and has no load in flight (a load begins with a Get, which registers the tenant): flushing it
// changes nothing and keeps no state, so flushes of arbitrary ids cannot grow the store.
func (m *MemoryStore) FlushTenant(_ context.Context, tenant string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tenants[tenant]
	if t == nil {
		return nil
	}
	m.bytes -= t.bytes
	m.tenants[tenant] = &memTenant{gen: t.gen + 1, items: map[string]*list.Element{}, lru: list.New()}
	return nil
}

// Bytes returns the bytes held, all tenants together and for one tenant.
func (m *MemoryStore) Bytes(tenant string) (total, ofTenant int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.tenants[tenant]; t != nil {
		ofTenant = t.bytes
	}
	return m.bytes, ofTenant
}
