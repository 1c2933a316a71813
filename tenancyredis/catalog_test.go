package tenancyredis_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

type countingStore struct {
	tenancy.Store
	n atomic.Int64
}

func (s *countingStore) TenantBySlug(ctx context.Context, slug string) (*tenancy.Tenant, error) {
	s.n.Add(1)
	return s.Store.TenantBySlug(ctx, slug)
}

// instance is one service's lookups: its first level in front of the shared second level.
type instance struct {
	l1 *tenancycache.Lookup
	l2 *tenancyredis.CatalogStore
}

// startInstances starts n instances whose second levels (over src, in Redis under prefix) and
// first levels hear cat's changes, and waits until each listens and has dropped its second level
// once (as every connection of the listener asks).
func startInstances(t *testing.T, cat *tenancycatalog.Catalog, src tenancy.Store, rdb redis.UniversalClient, prefix string, n int) []instance {
	t.Helper()
	var out []instance
	for range n {
		rc, err := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		l2, err := tenancyredis.NewCatalogStore(src, rc, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		l1, _ := tenancycache.NewLookup(l2, nil)
		in := instance{l1, l2}
		out = append(out, in)
		ctx, cancel := context.WithCancel(context.Background())
		ready, done := make(chan struct{}), make(chan struct{})
		var once atomic.Bool
		go func() {
			defer close(done)
			cat.Watch(ctx, tenancy.Invalidators{in.l2, in.l1}, &tenancycatalog.WatchOpts{OnConnect: func() {
				if once.CompareAndSwap(false, true) {
					close(ready)
				}
			}})
		}()
		t.Cleanup(func() { cancel(); <-done })
		<-ready
		for in.l2.Stats().Stale {
			time.Sleep(time.Millisecond)
		}
	}
	return out
}

// Two instances share the second level: what one loaded, the other reads from Redis; a catalog
// change reaches both levels of both instances.
func TestCatalogSecondLevel(t *testing.T) {
	t.Parallel()
	rdb := client(t)
	catalogSecondLevel(t, rdb, prefix(t, rdb))
}

// catalogSecondLevel is TestCatalogSecondLevel on rdb (a server or a cluster) under prefix.
func catalogSecondLevel(t *testing.T, rdb redis.UniversalClient, p string) {
	_, cat := tenancytest.NewCatalog(t)
	ctx := context.Background()
	acme, err := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	db := &countingStore{Store: cat}
	instances := startInstances(t, cat, db, rdb, p, 2)
	for i, in := range instances {
		got, err := in.l1.TenantBySlug(ctx, "acme")
		if err != nil || got.ID != acme.ID {
			t.Fatalf("instance %d: %v, %v", i, got, err)
		}
	}
	if n := db.n.Load(); n != 1 {
		t.Fatalf("two instances cost %d database queries; the second should read Redis", n)
	}
	if _, err := cat.Suspend(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	for i, in := range instances {
		deadline := time.Now().Add(time.Second)
		for {
			got, err := in.l1.TenantBySlug(ctx, "acme")
			if err == nil && got.Status == tenancy.StatusSuspended {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %d still sees %v, %v a second after the suspension", i, got, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// A suspension reaches every instance within a second even while Redis flaps: writes to Redis are
// paused for a moment (CLIENT PAUSE WRITE, as in a failover), long enough for the INCR that drops
// the second level to fail, and then Redis answers again with the entry that says "active" still
// there. Instances stop using the second level until a drop succeeds, so neither a warm instance
// nor a cold lookup (a new instance, an evicted entry) sees the tenant as active.
func TestCatalogSecondLevelSuspensionWhileRedisFlaps(t *testing.T) {
	t.Parallel()
	_, cat := tenancytest.NewCatalog(t)
	ctx := context.Background()
	acme, err := cat.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	srv := tenancytest.StartRedis(t)
	rdb, err := tenancyredis.NewClient(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	instances := startInstances(t, cat, cat, rdb, "t:", 2)
	for _, in := range instances {
		if got, err := in.l1.TenantBySlug(ctx, "acme"); err != nil || got.Status != tenancy.StatusActive {
			t.Fatalf("before: %v, %v", got, err)
		}
	}
	paused := time.Now()
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", "400", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Suspend(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	seen := func(lookup func() (*tenancy.Tenant, error), who string) {
		t.Helper()
		for {
			got, err := lookup()
			if err == nil && got.Status == tenancy.StatusSuspended {
				return
			}
			if time.Since(paused) > time.Second {
				t.Fatalf("%s still sees %v, %v a second after the suspension, with Redis flapping", who, got, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, in := range instances {
		seen(func() (*tenancy.Tenant, error) { return in.l1.TenantBySlug(ctx, "acme") }, fmt.Sprintf("instance %d", i))
	}
	time.Sleep(time.Until(paused.Add(450 * time.Millisecond))) // Redis answers again
	for i, in := range instances {
		seen(func() (*tenancy.Tenant, error) { return in.l2.TenantBySlug(ctx, "acme") }, fmt.Sprintf("a cold lookup by slug on instance %d", i))
		seen(func() (*tenancy.Tenant, error) { return in.l2.TenantByID(ctx, acme.ID) }, fmt.Sprintf("a cold lookup by id on instance %d", i))
	}
	// The fault was real: Redis refused the drop at least once.
	if st := instances[0].l2.Stats(); st.PurgeFailures == 0 {
		t.Fatalf("control: the drop of the second level never failed: %+v", st)
	}
	// Once a drop succeeds, the second level serves again, with the new state.
	deadline := time.Now().Add(3 * time.Second)
	for _, in := range instances {
		for in.l2.Stats().Stale {
			if time.Now().After(deadline) {
				t.Fatalf("the second level is still bypassed after Redis recovered: %+v", in.l2.Stats())
			}
			in.l2.TenantBySlug(ctx, "acme") // lookups drive the retries
			time.Sleep(20 * time.Millisecond)
		}
		if got, err := in.l2.TenantBySlug(ctx, "acme"); err != nil || got.Status != tenancy.StatusSuspended {
			t.Fatalf("after recovery: %v, %v", got, err)
		}
	}
}
