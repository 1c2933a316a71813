package tenancyredis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

// client returns a client on the test Redis, closed when t ends. Its timeouts are generous: the
// suites check what Redis decides, and under a loaded test run the production client's 100 ms
// would hand some decisions to the failure policy instead.
func client(t *testing.T) *redis.Client {
	t.Helper()
	u := tenancytest.RedisURL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	rdb, err := tenancyredis.NewClient(u + sep + "dial_timeout=5s&read_timeout=5s&write_timeout=5s&pool_timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s (set TEST_REDIS_URL): %v", tenancytest.RedisURL(), err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// prefix returns a key prefix no other test uses; its keys are deleted when t ends.
func prefix(t *testing.T, rdb *redis.Client) string {
	p := tenancytest.UniqueName("tenancy-test") + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, p+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return p
}

func TestRedisLimiterSuite(t *testing.T) {
	t.Parallel()
	rdb := client(t)
	tenancytest.LimiterSuite(t, func(t *testing.T) tenancyrate.Limiter {
		l, err := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: prefix(t, rdb), Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// Two instances sharing Redis enforce one limit between them, with one key per tenant.
func TestRedisLimiterSharedByInstances(t *testing.T) {
	t.Parallel()
	rdb := client(t)
	p := prefix(t, rdb)
	a, _ := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: p, Timeout: time.Second})
	b, _ := tenancyredis.NewLimiter(client(t), &tenancyredis.LimiterConfig{Prefix: p, Timeout: time.Second})
	limit := tenancyrate.PerHour(50)
	ctx := context.Background()
	allowed := 0
	for i := range 100 {
		l := a
		if i%2 == 1 {
			l = b
		}
		r, err := l.Allow(ctx, "tenant-1", limit)
		if err != nil {
			t.Fatal(err)
		}
		if r.Allowed {
			allowed++
		}
	}
	if allowed != 50 {
		t.Fatalf("two instances allowed %d of 100 under 50/h, want 50", allowed)
	}
	keys, _ := rdb.Keys(ctx, p+"*").Result()
	if len(keys) != 1 || keys[0] != a.Key("tenant-1", limit) || !strings.HasPrefix(keys[0], p+"{tenant-1}:") {
		t.Fatalf("keys %v, want one, with the tenant in a hash tag", keys)
	}
	if s := a.Stats(); s.RedisFailures != 0 || s.Fallbacks != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Redis stops mid-test: each policy decides as documented, every such decision is counted, and
// enforcement on Redis resumes when it is back.
func TestRedisLimiterOutage(t *testing.T) {
	t.Parallel()
	for _, policy := range []tenancyredis.FailurePolicy{tenancyredis.FallbackLocal, tenancyredis.FailOpen, tenancyredis.FailClosed} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			srv := tenancytest.StartRedis(t)
			rdb, err := tenancyredis.NewClient(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			l, _ := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{OnFailure: policy, Instances: 2,
				RetryAfter: 50 * time.Millisecond})
			ctx := context.Background()
			limit := tenancyrate.PerHour(10)
			key := fmt.Sprintf("tenant-%d", rand.Int())
			// Healthy: Redis decides.
			for i := range 10 {
				if r, err := l.Allow(ctx, key, limit); err != nil || !r.Allowed {
					t.Fatalf("healthy event %d: %+v, %v", i, r, err)
				}
			}
			if r, _ := l.Allow(ctx, key, limit); r.Allowed {
				t.Fatal("control: the healthy limit did not hold")
			}
			srv.Stop()
			start := time.Now()
			allowed := 0
			for range 10 {
				r, err := l.Allow(ctx, "fresh-"+key, limit)
				if err != nil {
					t.Fatalf("during the outage: %v", err)
				}
				if r.Allowed {
					allowed++
				}
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Fatalf("ten decisions during the outage took %v", elapsed)
			}
			want := map[tenancyredis.FailurePolicy]int{tenancyredis.FallbackLocal: 5, tenancyredis.FailOpen: 10, tenancyredis.FailClosed: 0}[policy]
			if allowed != want {
				t.Fatalf("during the outage %d of 10 allowed, want %d", allowed, want)
			}
			if s := l.Stats(); s.Fallbacks != 10 || s.RedisFailures == 0 {
				t.Fatalf("stats %+v; want every outage decision counted", s)
			}
			srv.Start()
			deadline := time.Now().Add(5 * time.Second)
			for {
				before := l.Stats().Fallbacks
				r, err := l.Allow(ctx, "after-"+key, limit)
				if err == nil && r.Allowed && l.Stats().Fallbacks == before {
					break // decided by Redis again
				}
				if time.Now().After(deadline) {
					t.Fatalf("enforcement did not resume on Redis: %+v", l.Stats())
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestRedisLimiterForget(t *testing.T) {
	t.Parallel()
	rdb := client(t)
	l, _ := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: prefix(t, rdb), Timeout: time.Second})
	tenancytest.ForgetterSuite(t, l)
}
