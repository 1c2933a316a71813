package tenancyrate

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/gotenancy/tenancy/internal/clock"
)

// MemoryConfig configures a MemoryLimiter. A nil *MemoryConfig means the defaults.
type MemoryConfig struct {
	// MaxKeys caps the keys remembered, so a flood of distinct keys cannot grow memory without
	// bound. Defaults to 1,000,000 (about 30 MB at most).
	MaxKeys int
	// Now returns the current time. Defaults to a coarse clock cheaper than time.Now.
	Now func() time.Time
}

// MemoryLimiter is a GCRA limiter in process memory: one 8-byte state per key (the theoretical
// arrival time), in 256 shards under their own locks, with no allocation per decision. A key whose
// state lies in the past is indistinguishable from a new key, so idle keys are dropped without
// changing any decision; when MaxKeys is reached, the key closest to that point goes first.
//
// Keys are stored by a 64-bit hash, not by their bytes: two keys would share a limit only on a
// hash collision (about one chance in 10^19 per pair). The limit is part of the hash: when a
// tenant's limit changes, its state starts afresh under the new one.
type MemoryLimiter struct {
	seed        maphash.Seed
	shards      [memShards]memShard
	maxPerShard int
	now         func() int64
}

const memShards = 256

type memShard struct {
	mu      sync.Mutex
	tats    map[uint64]int64
	inserts int
	_       [104]byte // keep shards on separate cache line pairs
}

var _ Limiter = (*MemoryLimiter)(nil)

// NewMemoryLimiter returns a memory limiter.
func NewMemoryLimiter(cfg *MemoryConfig) (*MemoryLimiter, error) {
	m := &MemoryLimiter{seed: maphash.MakeSeed(), maxPerShard: 1_000_000 / memShards, now: clock.Now}
	if cfg != nil {
		if cfg.MaxKeys < 0 {
			return nil, errors.New("tenancyrate: MaxKeys must not be negative")
		}
		if cfg.MaxKeys > 0 {
			m.maxPerShard = max(1, cfg.MaxKeys/memShards)
		}
		if now := cfg.Now; now != nil {
			m.now = func() int64 { return now().UnixNano() }
		}
	}
	for i := range m.shards {
		m.shards[i].tats = make(map[uint64]int64)
	}
	return m, nil
}

// Allow implements Limiter.
func (m *MemoryLimiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return m.AllowN(ctx, key, limit, 1)
}

// AllowN implements Limiter. It returns ErrInvalidLimit for a limit that allows nothing or for
// n < 1; n above the burst can never be allowed and is refused with RetryAfter 0.
func (m *MemoryLimiter) AllowN(_ context.Context, key string, limit Limit, n int) (Result, error) {
	return m.allowAt(m.now(), key, limit, n)
}

// AllowAt is AllowN at the given time, for tests and simulations.
func (m *MemoryLimiter) AllowAt(now time.Time, key string, limit Limit, n int) (Result, error) {
	return m.allowAt(now.UnixNano(), key, limit, n)
}

func (m *MemoryLimiter) allowAt(now int64, key string, limit Limit, n int) (Result, error) {
	if !limit.valid() || n < 1 {
		return Result{}, invalid(limit, n)
	}
	if n > limit.Burst {
		return Result{Limit: limit}, nil
	}
	h := maphash.String(m.seed, key) ^ limitHash(limit)
	sh := &m.shards[h%memShards]
	sh.mu.Lock()
	tat, known := sh.tats[h]
	res, newTat := gcra(limit, tat, now, n)
	if res.Allowed {
		if !known {
			sh.makeRoom(m.maxPerShard, now)
		}
		sh.tats[h] = newTat
	}
	sh.mu.Unlock()
	return res, nil
}

// limitHash mixes the limit into a key's hash: a tenant whose limit changes starts afresh under
// the new one, instead of carrying the old one's debt (a raised limit takes effect at once).
func limitHash(l Limit) uint64 {
	x := uint64(l.Rate)*0x9e3779b97f4a7c15 ^ uint64(l.Period)*0xbf58476d1ce4e5b9 ^ uint64(l.Burst)*0x94d049bb133111eb
	x ^= x >> 31
	return x * 0xd6e8feb86659fd93
}

func invalid(limit Limit, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: n must be at least 1, got %d", ErrInvalidLimit, n)
	}
	return fmt.Errorf("%w: %+v allows nothing", ErrInvalidLimit, limit)
}

// makeRoom keeps the shard under max before a new key goes in: every so often it drops every key
// whose state has passed (a new key would behave the same), and at the cap it drops the sampled
// key closest to passing.
func (sh *memShard) makeRoom(max int, now int64) {
	sh.inserts++
	if sh.inserts%1024 == 0 || len(sh.tats) >= max {
		for k, tat := range sh.tats {
			if tat <= now {
				delete(sh.tats, k)
			}
		}
	}
	for len(sh.tats) >= max {
		var victim uint64
		var soonest int64
		n := 0
		for k, tat := range sh.tats {
			if n == 0 || tat < soonest {
				victim, soonest = k, tat
			}
			if n++; n == 16 {
				break
			}
		}
		delete(sh.tats, victim)
	}
}

// Forget drops key's state under limit: the key starts afresh.
func (m *MemoryLimiter) Forget(_ context.Context, key string, limit Limit) error {
	h := maphash.String(m.seed, key) ^ limitHash(limit)
	sh := &m.shards[h%memShards]
	sh.mu.Lock()
	delete(sh.tats, h)
	sh.mu.Unlock()
	return nil
}

// Len returns how many keys the limiter remembers.
func (m *MemoryLimiter) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.tats)
		sh.mu.Unlock()
	}
	return n
}
