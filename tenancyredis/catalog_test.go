package tenancyredis_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"tenancy"
	"tenancy/tenancypgx"
	"tenancy/tenancyredis"
	"tenancy/tenancytest"
)

type countingStore struct {
	tenancy.Store
	n atomic.Int64
}

func (s *countingStore) TenantBySlug(ctx context.Context, slug string) (*tenancy.Tenant, error) {
	s.n.Add(1)
	return s.Store.TenantBySlug(ctx, slug)
}

// Two instances share the second level: what one loaded, the other reads from Redis; a catalog
// change reaches both levels of both instances.
func TestCatalogSecondLevel(t *testing.T) {
	t.Parallel()
	_, cat := tenancytest.NewCatalog(t)
	ctx := context.Background()
	acme, err := cat.Create(ctx, &tenancypgx.CreateOpts{Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	rdb := client(t)
	p := prefix(t, rdb)
	db := &countingStore{Store: cat}
	type instance struct {
		l1 *tenancypgx.CachedStore
		l2 *tenancyredis.CatalogStore
	}
	var instances []instance
	for range 2 {
		rc, _ := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: p})
		l2, err := tenancyredis.NewCatalogStore(db, rc, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		l1, _ := tenancypgx.NewCachedStore(l2, nil)
		in := instance{l1, l2}
		instances = append(instances, in)
		wctx, cancel := context.WithCancel(ctx)
		ready := make(chan struct{})
		var once atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			cat.Watch(wctx, tenancypgx.Invalidators{in.l2, in.l1}, &tenancypgx.WatchOpts{OnConnect: func() {
				if once.CompareAndSwap(false, true) {
					close(ready)
				}
			}})
		}()
		t.Cleanup(func() { cancel(); <-done })
		<-ready
	}
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
