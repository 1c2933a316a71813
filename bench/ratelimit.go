package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

const limiterTenants = 10_000

func tenantKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("00000000-0000-4000-8000-%012x", i)
	}
	return keys
}

// benchRateLimitMemory compares decisions in process memory over 10,000 active tenants from
// parallel goroutines: ours (GCRA), a map of golang.org/x/time/rate limiters, and the reference
// article's sliding log (a list of timestamps per tenant), each at the article's 100/min.
func benchRateLimitMemory(ctx context.Context, e *env) ([]result, error) {
	keys := tenantKeys(limiterTenants)
	limit := tenancyrate.PerMinute(100)
	ours, err := tenancyrate.NewMemoryLimiter(nil)
	if err != nil {
		return nil, err
	}
	xrate := &xrateMap{m: map[string]*rate.Limiter{}, limit: rate.Every(limit.Period / time.Duration(limit.Rate)), burst: limit.Burst}
	slog := &slidingLog{logs: map[string][]time.Time{}, limit: limit.Rate, window: limit.Period}
	sides := []struct {
		name  string
		allow func(key string) bool
	}{
		{"ours", func(k string) bool { r, _ := ours.Allow(ctx, k, limit); return r.Allowed }},
		{"x/time/rate", xrate.allow},
		{"sliding log", slog.allow},
	}
	// Memory: fill each side with every tenant, 150 decisions each (the limit and then some), and
	// measure the heap per tenant.
	bytes := make([]float64, len(sides))
	for i, s := range sides {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 150 {
			for _, k := range keys {
				s.allow(k)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		bytes[i] = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / limiterTenants
	}
	ns := make([]float64, len(sides))
	allocs := make([]float64, len(sides))
	for range 3 {
		for i, s := range sides {
			n, a := measure(func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					j := rand.IntN(len(keys))
					for pb.Next() {
						s.allow(keys[j])
						if j++; j == len(keys) {
							j = 0
						}
					}
				})
			})
			if ns[i] == 0 || n < ns[i] {
				ns[i], allocs[i] = n, a
			}
		}
	}
	fmt.Fprintf(e.log, "ratelimit-memory: ns/op ours %.1f, x/time/rate %.1f, sliding log %.1f; bytes/tenant %.0f, %.0f, %.0f\n",
		ns[0], ns[1], ns[2], bytes[0], bytes[1], bytes[2])
	var out []result
	for i := 1; i < len(sides); i++ {
		base := sides[i].name
		out = append(out,
			result{Scenario: "ratelimit-memory", Metric: "decision", Unit: "ns/op", Ours: ns[0], Baseline: ns[i], BaselineName: base},
			result{Scenario: "ratelimit-memory", Metric: "allocs", Unit: "allocs/op", Ours: allocs[0], Baseline: allocs[i], BaselineName: base},
			result{Scenario: "ratelimit-memory", Metric: "state", Unit: "bytes/tenant", Ours: bytes[0], Baseline: bytes[i], BaselineName: base})
	}
	return out, nil
}

type xrateMap struct {
	mu    sync.RWMutex
	m     map[string]*rate.Limiter
	limit rate.Limit
	burst int
}

func (x *xrateMap) allow(key string) bool {
	x.mu.RLock()
	l := x.m[key]
	x.mu.RUnlock()
	if l == nil {
		x.mu.Lock()
		if l = x.m[key]; l == nil {
			l = rate.NewLimiter(x.limit, x.burst)
			x.m[key] = l
		}
		x.mu.Unlock()
	}
	return l.Allow()
}

// slidingLog is the reference article's TenantRateLimiter: per tenant, the list of request times
// in the window, filtered on every check. The article has no lock; one is added so it is correct.
type slidingLog struct {
	mu     sync.Mutex
	logs   map[string][]time.Time
	limit  int
	window time.Duration
}

func (s *slidingLog) allow(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	start := now.Add(-s.window)
	var kept []time.Time
	for _, t := range s.logs[key] {
		if t.After(start) {
			kept = append(kept, t)
		}
	}
	if len(kept) >= s.limit {
		s.logs[key] = kept
		return false
	}
	s.logs[key] = append(kept, now)
	return true
}

// benchRateLimitRedis compares distributed limiters on the local Redis with 64 concurrent
// callers over 10,000 tenants: ours (one EVALSHA), go-redis/redis_rate, and the article's
// advice done the usual way, a sorted-set sliding window (four commands in one MULTI).
func benchRateLimitRedis(ctx context.Context, e *env) ([]result, error) {
	url := firstEnv("redis://127.0.0.1:6379/0", "TEST_REDIS_URL", "TENANCY_REDIS_URL")
	rdb, err := tenancyredis.NewClient(url)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("Redis at %s: %w", url, err)
	}
	prefix := uniqueName("tenancy-bench") + ":"
	defer func() {
		iter := rdb.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
		var batch []string
		for iter.Next(context.Background()) {
			if batch = append(batch, iter.Val()); len(batch) == 500 {
				rdb.Del(context.Background(), batch...)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			rdb.Del(context.Background(), batch...)
		}
	}()
	trips := &tenancytest.RoundTrips{}
	rdb.AddHook(trips)
	keys := tenantKeys(limiterTenants)
	limit := tenancyrate.PerMinute(100)
	ours, err := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: prefix + "ours:", Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	rr := redis_rate.NewLimiter(rdb)
	rrLimit := redis_rate.PerMinute(100)
	window := limit.Period
	sides := []struct {
		name  string
		allow func(ctx context.Context, key string) error
	}{
		{"ours", func(ctx context.Context, k string) error { _, err := ours.Allow(ctx, k, limit); return err }},
		{"go-redis/redis_rate", func(ctx context.Context, k string) error {
			_, err := rr.Allow(ctx, prefix+"rr:"+k, rrLimit)
			return err
		}},
		{"sorted-set sliding window", func(ctx context.Context, k string) error {
			now := time.Now()
			key := prefix + "zs:{" + k + "}"
			pipe := rdb.TxPipeline()
			pipe.ZRemRangeByScore(ctx, key, "0", strconv.FormatInt(now.Add(-window).UnixMicro(), 10))
			card := pipe.ZCard(ctx, key)
			pipe.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMicro()), Member: strconv.FormatInt(now.UnixNano(), 10) + strconv.Itoa(rand.Int())})
			pipe.Expire(ctx, key, window)
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
			_ = card.Val() < int64(limit.Rate)
			return nil
		}},
	}
	// The sides take turns in short slices, so drift on the shared machine reaches all of them.
	slices, slice := 6, 500*time.Millisecond
	if e.quick {
		slices, slice = 2, 500*time.Millisecond
	}
	type sideResult struct{ usPerDecision, tripsPerDecision float64 }
	results := make([]sideResult, len(sides))
	done := make([]int64, len(sides))
	sent := make([]int64, len(sides))
	for _, s := range sides {
		if err := s.allow(ctx, keys[0]); err != nil { // load scripts, check it works
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	for range slices {
		for i, s := range sides {
			var n, errs atomic.Int64
			trips.Reset()
			until := time.Now().Add(slice)
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					j := rand.IntN(len(keys))
					for time.Now().Before(until) {
						if err := s.allow(ctx, keys[j]); err != nil {
							errs.Add(1)
						}
						n.Add(1)
						if j++; j == len(keys) {
							j = 0
						}
					}
				}()
			}
			wg.Wait()
			if errs.Load() > 0 {
				return nil, fmt.Errorf("%s: %d of %d decisions failed", s.name, errs.Load(), n.Load())
			}
			done[i] += n.Load()
			sent[i] += trips.N()
		}
	}
	total := time.Duration(slices) * slice
	for i := range sides {
		results[i] = sideResult{usPerDecision: total.Seconds() * 1e6 / float64(done[i]), tripsPerDecision: float64(sent[i]) / float64(done[i])}
	}
	fmt.Fprintf(e.log, "ratelimit-redis: decisions/s ours %.0f, redis_rate %.0f, sorted set %.0f\n",
		1e6/results[0].usPerDecision, 1e6/results[1].usPerDecision, 1e6/results[2].usPerDecision)
	var out []result
	for i := 1; i < len(sides); i++ {
		out = append(out,
			result{Scenario: "ratelimit-redis", Metric: "time-per-decision", Unit: "µs", Ours: results[0].usPerDecision,
				Baseline: results[i].usPerDecision, BaselineName: sides[i].name + ", 64 callers"},
			result{Scenario: "ratelimit-redis", Metric: "round-trips", Unit: "per decision", Ours: results[0].tripsPerDecision,
				Baseline: results[i].tripsPerDecision, BaselineName: sides[i].name})
	}
	return out, nil
}
