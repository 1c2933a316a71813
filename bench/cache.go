package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

// benchCache measures the tenant-scoped cache: flushing one tenant that owns 1,000 keys among
// 1,000,000 (ours: one INCR; the reference article: SCAN the keyspace for prefix:tenant:* and
// DEL), and a Get and a Set, on Redis and in memory, against the article's TenantCache.
func benchCache(ctx context.Context, e *env) ([]result, error) {
	rdb, err := benchRedis(ctx)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	trips := &tenancytest.RoundTrips{}
	rdb.AddHook(trips)
	prefix := uniqueName("tenancy-bench") + ":"
	defer unlinkPrefix(rdb, prefix)
	total := 1_000_000
	if e.quick {
		total = 100_000
	}
	const owned = 1000
	tenant := "00000000-0000-4000-8000-000000000001"
	ours, err := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: prefix + "c:"})
	if err != nil {
		return nil, err
	}
	article := &articleCache{rdb: rdb, prefix: prefix + "a"}

	fmt.Fprintf(e.log, "cache: loading %d keys into Redis\n", total)
	pipe := rdb.Pipeline()
	for i := range total - 2*owned {
		pipe.Set(ctx, prefix+"noise:"+strconv.Itoa(i), "x", time.Hour)
		if i%10_000 == 9_999 {
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, err
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	fill := func() error {
		for i := range owned {
			k := "k" + strconv.Itoa(i)
			if err := ours.Set(ctx, tenant, k, []byte("v"), time.Hour, 0); err != nil {
				return err
			}
			if err := article.set(ctx, tenant, k, "v"); err != nil {
				return err
			}
		}
		return nil
	}
	if err := fill(); err != nil {
		return nil, err
	}
	// Both flushes must actually empty the tenant.
	start := time.Now()
	if err := ours.FlushTenant(ctx, tenant); err != nil {
		return nil, err
	}
	oursFlush := time.Since(start)
	start = time.Now()
	if err := article.flushTenant(ctx, tenant); err != nil {
		return nil, err
	}
	articleFlush := time.Since(start)
	for _, k := range []string{"k0", "k999"} {
		if _, _, ok, _ := ours.Get(ctx, tenant, k); ok {
			return nil, fmt.Errorf("ours: %s survived the flush", k)
		}
		if v, _ := article.get(ctx, tenant, k); v != "" {
			return nil, fmt.Errorf("article: %s survived the flush", k)
		}
	}
	fmt.Fprintf(e.log, "cache: flush of %d keys among %d: ours %.3f ms, SCAN %.1f ms\n", owned, total, ms(oursFlush), ms(articleFlush))

	// Get and Set on Redis: time and round trips per operation.
	ours.Set(ctx, tenant, "hot", []byte("value"), time.Hour, 0)
	article.set(ctx, tenant, "hot", "value")
	perOp := func(f func() error) (us, rtt float64, err error) {
		const n = 2000
		if err := f(); err != nil { // scripts loaded
			return 0, 0, err
		}
		before := trips.N()
		start := time.Now()
		for range n {
			if err := f(); err != nil {
				return 0, 0, err
			}
		}
		return float64(time.Since(start).Microseconds()) / n, float64(trips.N()-before) / n, nil
	}
	oursGet, oursGetRT, err := perOp(func() error { _, _, _, err := ours.Get(ctx, tenant, "hot"); return err })
	if err != nil {
		return nil, err
	}
	artGet, artGetRT, err := perOp(func() error { _, err := article.get(ctx, tenant, "hot"); return err })
	if err != nil {
		return nil, err
	}
	oursSet, oursSetRT, err := perOp(func() error { return ours.Set(ctx, tenant, "hot", []byte("value"), time.Hour, 0) })
	if err != nil {
		return nil, err
	}
	artSet, artSetRT, err := perOp(func() error { return article.set(ctx, tenant, "hot", "value") })
	if err != nil {
		return nil, err
	}

	// In memory: ours against the article's key scheme on a locked Go map.
	mem, _ := tenancycache.NewMemoryStore(nil)
	mem.Set(ctx, tenant, "hot", []byte("value"), time.Hour, 0)
	naive := &naiveMemory{m: map[string][]byte{}}
	naive.set(tenant, "hot", []byte("value"))
	memGet, memGetAllocs := measure(func(b *testing.B) {
		for range b.N {
			mem.Get(ctx, tenant, "hot")
		}
	})
	naiveGet, naiveGetAllocs := measure(func(b *testing.B) {
		for range b.N {
			naive.get(tenant, "hot")
		}
	})
	return []result{
		{Scenario: "cache", Metric: fmt.Sprintf("flush-%d-of-%d", owned, total), Unit: "ms", Ours: ms(oursFlush), Baseline: ms(articleFlush),
			BaselineName: "article: SCAN MATCH prefix:tenant:* COUNT 100, then DEL"},
		{Scenario: "cache", Metric: "redis-get", Unit: "µs", Ours: oursGet, Baseline: artGet, BaselineName: "article: GET prefix:tenant:key"},
		{Scenario: "cache", Metric: "redis-get-round-trips", Unit: "per op", Ours: oursGetRT, Baseline: artGetRT, BaselineName: "article: GET"},
		{Scenario: "cache", Metric: "redis-set", Unit: "µs", Ours: oursSet, Baseline: artSet, BaselineName: "article: SET EX"},
		{Scenario: "cache", Metric: "redis-set-round-trips", Unit: "per op", Ours: oursSetRT, Baseline: artSetRT, BaselineName: "article: SET EX"},
		{Scenario: "cache", Metric: "memory-get", Unit: "ns/op", Ours: memGet, Baseline: naiveGet, BaselineName: "article's key scheme on a locked map"},
		{Scenario: "cache", Metric: "memory-get-allocs", Unit: "allocs/op", Ours: memGetAllocs, Baseline: naiveGetAllocs, BaselineName: "article's key scheme on a locked map"},
	}, nil
}

// articleCache is the reference article's TenantCache, ported as written.
type articleCache struct {
	rdb    *redis.Client
	prefix string
}

func (a *articleCache) key(tenant, key string) string {
	return fmt.Sprintf("%s:%s:%s", a.prefix, tenant, key)
}

func (a *articleCache) get(ctx context.Context, tenant, key string) (string, error) {
	v, err := a.rdb.Get(ctx, a.key(tenant, key)).Result()
	if err == redis.Nil {
		return "", nil
	}
	return v, err
}

func (a *articleCache) set(ctx context.Context, tenant, key, value string) error {
	return a.rdb.Set(ctx, a.key(tenant, key), value, 300*time.Second).Err()
}

func (a *articleCache) flushTenant(ctx context.Context, tenant string) error {
	pattern := fmt.Sprintf("%s:%s:*", a.prefix, tenant)
	var cursor uint64
	for {
		keys, next, err := a.rdb.Scan(ctx, cursor, pattern, 100).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := a.rdb.Del(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

type naiveMemory struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (n *naiveMemory) get(tenant, key string) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m["cache:"+tenant+":"+key]
}

func (n *naiveMemory) set(tenant, key string, v []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m["cache:"+tenant+":"+key] = v
}

// unlinkPrefix deletes every key under prefix, in batches.
func unlinkPrefix(rdb *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 10_000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 10_000 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}
