package tenancyredis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

// TestOnRedisCluster runs the limiter's and the cache's suites and the catalog's second level on a
// real three-master Redis Cluster, through the client serve makes of a redis+cluster:// URL; then
// checks that many tenants' keys spread over the masters (each script ran on the slot of its
// tenant's hash tag) while every key of one tenant is on one slot.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := tenancytest.StartRedisCluster(t)
	rdb, err := tenancyredis.Connect(cluster.URL() + "?dial_timeout=5s&read_timeout=5s&write_timeout=5s&pool_timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("Connect(%q) made a %T, want a cluster client", cluster.URL(), rdb)
	}
	unique := func() string { return tenancytest.UniqueName("tenancy-test") + ":" } // a fresh cluster: nothing to clean
	t.Run("limiter", func(t *testing.T) {
		tenancytest.LimiterSuite(t, func(t *testing.T) tenancyrate.Limiter {
			l, err := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: unique(), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return l
		})
	})
	t.Run("cache", func(t *testing.T) {
		tenancytest.CacheStoreSuite(t, func(t *testing.T) tenancycache.Store {
			c, err := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: unique()})
			if err != nil {
				t.Fatal(err)
			}
			return c
		})
	})
	t.Run("catalog second level", func(t *testing.T) { catalogSecondLevel(t, rdb, unique()) })

	ctx := context.Background()
	limiter, err := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: "spread:rl:", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: "spread:cache:"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		tenant := fmt.Sprintf("tenant-%d", i)
		if res, err := limiter.Allow(ctx, tenant, tenancyrate.Limit{Rate: 10, Period: time.Second, Burst: 10}); err != nil || !res.Allowed {
			t.Fatalf("allow %s: %+v %v", tenant, res, err)
		}
		if err := cache.Set(ctx, tenant, "k", []byte(tenant), time.Minute, 0); err != nil {
			t.Fatal(err)
		}
		if v, _, ok, err := cache.Get(ctx, tenant, "k"); err != nil || !ok || string(v) != tenant {
			t.Fatalf("get %s: %q %v %v", tenant, v, ok, err)
		}
	}
	cc := rdb.(*redis.ClusterClient)
	var mu sync.Mutex // ForEachMaster calls at once
	masters := 0
	err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := node.Keys(ctx, "spread:*").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if len(keys) > 0 {
			masters++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if masters < 2 {
		t.Fatalf("60 tenants' keys are on %d of the 3 masters; want them spread", masters)
	}
	// One tenant's keys: the limiter's, the cache's generation and entry — one slot.
	slots := map[int64]bool{}
	for _, pattern := range []string{"spread:rl:*{tenant-7}*", "spread:cache:{tenant-7}*"} {
		var found []string
		err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			keys, err := node.Keys(ctx, pattern).Result()
			mu.Lock()
			defer mu.Unlock()
			found = append(found, keys...)
			return err
		})
		if err != nil || len(found) == 0 {
			t.Fatalf("no key of tenant-7 matches %s (%v)", pattern, err)
		}
		for _, k := range found {
			slot, err := cc.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			slots[slot] = true
		}
	}
	if len(slots) != 1 {
		t.Fatalf("tenant-7's keys are on %d slots, want one", len(slots))
	}
}

// Connect makes a cluster client of a redis+cluster:// URL (seeds in the host, or addr=), a plain
// client of redis://, and refuses what a cluster cannot be.
func TestConnectURLs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url   string
		addrs []string // nil: a single-server client
		err   bool
	}{
		{"redis://127.0.0.1:6379/0", nil, false},
		{"redis+cluster://10.0.0.1:7000,10.0.0.2:7001", []string{"10.0.0.1:7000", "10.0.0.2:7001"}, false},
		{"redis+cluster://10.0.0.1:7000?addr=10.0.0.3:7002", []string{"10.0.0.1:7000", "10.0.0.3:7002"}, false},
		{"rediss+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/", []string{"10.0.0.1:7000", "10.0.0.2:7001"}, false},
		{"redis+cluster://", nil, true},
		{"redis+cluster://10.0.0.1:7000/3", nil, true},
	} {
		rdb, err := tenancyredis.Connect(c.url)
		if c.err {
			if err == nil {
				t.Errorf("%s: no error", c.url)
				rdb.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		cc, isCluster := rdb.(*redis.ClusterClient)
		switch {
		case c.addrs == nil && isCluster:
			t.Errorf("%s: a cluster client", c.url)
		case c.addrs != nil && (!isCluster || fmt.Sprint(cc.Options().Addrs) != fmt.Sprint(c.addrs)):
			t.Errorf("%s: %T, want a cluster client of %v", c.url, rdb, c.addrs)
		case isCluster && cc.Options().ReadTimeout != 100*time.Millisecond:
			t.Errorf("%s: read timeout %s, want the request path's 100ms", c.url, cc.Options().ReadTimeout)
		}
		rdb.Close()
	}
}
