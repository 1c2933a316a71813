package tenancytest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
)

// CacheStoreSuite checks the behaviour every tenancycache.Store must have: values by tenant and
// key with no crossing between tenants, deletes, expiry, constant-time flush of one tenant only,
// and a flush that loads in flight cannot undo. newStore returns a store no other test shares.
func CacheStoreSuite(t *testing.T, newStore func(t *testing.T) tenancycache.Store) {
	ctx := context.Background()
	a := &tenancy.Tenant{ID: UniqueName("tenant-a"), Slug: "a", Status: tenancy.StatusActive}
	b := &tenancy.Tenant{ID: UniqueName("tenant-b"), Slug: "b", Status: tenancy.StatusActive}
	ctxA, ctxB := tenancy.WithTenant(ctx, a), tenancy.WithTenant(ctx, b)
	newCache := func(t *testing.T) (*tenancycache.Cache, tenancycache.Store) {
		s := newStore(t)
		c, err := tenancycache.New(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}

	t.Run("tenants never read each other's values", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		if err := c.Set(ctxA, "secret", []byte("A's"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := c.Get(ctxA, "secret"); err != nil || !ok || string(v) != "A's" {
			t.Fatalf("control: A reads its own: %q %v %v", v, ok, err)
		}
		if v, ok, err := c.Get(ctxB, "secret"); err != nil || ok {
			t.Fatalf("B read A's value: %q %v %v", v, ok, err)
		}
		// Separators in tenants and keys cannot make two pairs meet.
		tc := func(id string) *tenancycache.TenantCache { return c.ForTenant(id) }
		tc("x:y").Set(ctx, "z", []byte("x:y/z"), time.Minute)
		tc("x{").Set(ctx, "}", []byte("x{/}"), time.Minute)
		for _, p := range [][3]string{{"x", "y:z", ""}, {"x:y", "z", "x:y/z"}, {"x", "{:}", ""}, {"x{", "}", "x{/}"}} {
			v, ok, err := tc(p[0]).Get(ctx, p[1])
			if err != nil || ok != (p[2] != "") || string(v) != p[2] {
				t.Errorf("tenant %q key %q: %q %v %v; want %q", p[0], p[1], v, ok, err, p[2])
			}
		}
	})
	t.Run("no tenant is an error", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		if _, _, err := c.Get(ctx, "k"); !errors.Is(err, tenancy.ErrNoTenant) {
			t.Fatalf("Get without a tenant: %v", err)
		}
		if err := c.Set(ctx, "k", []byte("v"), time.Minute); !errors.Is(err, tenancy.ErrNoTenant) {
			t.Fatalf("Set without a tenant: %v", err)
		}
		if _, err := tenancycache.GetOrLoad(ctx, c, "k", time.Minute, func(context.Context) (int, error) { return 1, nil }); !errors.Is(err, tenancy.ErrNoTenant) {
			t.Fatalf("GetOrLoad without a tenant: %v", err)
		}
	})
	t.Run("delete and expiry", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		c.Set(ctxA, "gone", []byte("v"), time.Minute)
		c.Set(ctxA, "kept", []byte("v"), time.Minute)
		if err := c.Delete(ctxA, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := c.Get(ctxA, "gone"); ok {
			t.Fatal("a deleted value is still there")
		}
		if _, ok, _ := c.Get(ctxA, "kept"); !ok {
			t.Fatal("control: the other value went too")
		}
		c.ForTenant(a.ID).Set(ctx, "short", []byte("v"), 20*time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, ok, _ := c.Get(ctxA, "short"); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a value outlived its TTL")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("flush is one tenant's", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		for _, k := range []string{"1", "2", "3"} {
			c.Set(ctxA, k, []byte("a"+k), time.Minute)
			c.Set(ctxB, k, []byte("b"+k), time.Minute)
		}
		if err := c.FlushTenant(ctxA); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"1", "2", "3"} {
			if _, ok, _ := c.Get(ctxA, k); ok {
				t.Fatalf("A's %s survived its flush", k)
			}
			if v, ok, _ := c.Get(ctxB, k); !ok || string(v) != "b"+k {
				t.Fatalf("B's %s went with A's flush: %q %v", k, v, ok)
			}
		}
		c.Set(ctxA, "after", []byte("x"), time.Minute)
		if _, ok, _ := c.Get(ctxA, "after"); !ok {
			t.Fatal("a value set after the flush is missing")
		}
	})
	t.Run("get or load", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		release := make(chan struct{})
		var calls atomic.Int64
		var wg sync.WaitGroup
		results := make([]int, 20)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := tenancycache.GetOrLoad(ctxA, c, "answer", time.Minute, func(context.Context) (int, error) {
					calls.Add(1)
					<-release
					return 42, nil
				})
				if err != nil {
					t.Error(err)
				}
				results[i] = v
			}()
		}
		// Every caller is waiting on the one load before it may end.
		WaitFor(t, 10*time.Second, "all 20 callers waiting on the load", func() bool { return c.Stats().Waiting == 20 })
		close(release)
		wg.Wait()
		if calls.Load() != 1 {
			t.Fatalf("20 concurrent misses ran the loader %d times, want 1", calls.Load())
		}
		for _, v := range results {
			if v != 42 {
				t.Fatalf("results %v", results)
			}
		}
		if v, ok, _ := c.Get(ctxA, "answer"); !ok || !bytes.Equal(v, []byte("42")) {
			t.Fatalf("the loaded value was not cached: %q %v", v, ok)
		}
		if _, ok, _ := c.Get(ctxB, "answer"); ok {
			t.Fatal("B sees A's loaded value")
		}
	})
	t.Run("flush while a load is in flight", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		started, release := make(chan struct{}), make(chan struct{})
		done := make(chan int)
		go func() {
			v, _ := tenancycache.GetOrLoad(ctxA, c, "report", time.Minute, func(context.Context) (int, error) {
				close(started)
				<-release
				return 1, nil // computed from data the flush is about to invalidate
			})
			done <- v
		}()
		<-started
		if err := c.FlushTenant(ctxA); err != nil {
			t.Fatal(err)
		}
		close(release)
		if v := <-done; v != 1 {
			t.Fatalf("the caller of the load got %d", v)
		}
		if v, ok, _ := c.Get(ctxA, "report"); ok {
			t.Fatalf("a load from before the flush came back after it: %q", v)
		}
		v, err := tenancycache.GetOrLoad(ctxA, c, "report", time.Minute, func(context.Context) (int, error) { return 2, nil })
		if err != nil || v != 2 {
			t.Fatalf("control: a load after the flush: %d %v", v, err)
		}
	})
}
