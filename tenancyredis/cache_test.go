package tenancyredis_test

import (
	"context"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyredis"
	"github.com/gotenancy/tenancy/tenancytest"
)

func TestRedisCacheSuite(t *testing.T) {
	t.Parallel()
	rdb := client(t)
	tenancytest.CacheStoreSuite(t, func(t *testing.T) tenancycache.Store {
		c, err := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: prefix(t, rdb)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// A value found under a tenant's key that names another tenant is a miss, and is deleted.
func TestRedisCacheChecksTheTenantOfValues(t *testing.T) {
	t.Parallel()
	rdb := client(t)
	p := prefix(t, rdb)
	c, _ := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: p})
	ctx := context.Background()
	if err := c.Set(ctx, "tenant-b", "k", []byte("B's"), time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	raw, err := rdb.Get(ctx, p+"{tenant-b}:0:k").Bytes()
	if err != nil {
		t.Fatalf("control: the entry is where the layout says: %v", err)
	}
	// Plant B's value, tenant and all, under A's key (as a bug elsewhere might).
	rdb.Set(ctx, p+"{tenant-a}:0:k", raw, time.Minute)
	if v, _, ok, err := c.Get(ctx, "tenant-a", "k"); err != nil || ok {
		t.Fatalf("A read B's planted value: %q %v %v", v, ok, err)
	}
	if c.Mismatches() != 1 || rdb.Exists(ctx, p+"{tenant-a}:0:k").Val() != 0 {
		t.Fatalf("mismatch not counted (%d) or not purged", c.Mismatches())
	}
	if v, _, ok, _ := c.Get(ctx, "tenant-b", "k"); !ok || string(v) != "B's" {
		t.Fatalf("control: B reads its own: %q %v", v, ok)
	}
}

// FlushTenant is one command whatever the keyspace holds; Get is one round trip.
func TestRedisCacheRoundTrips(t *testing.T) {
	t.Parallel()
	rdb := client(t)
	trips := &tenancytest.RoundTrips{}
	rdb.AddHook(trips)
	c, _ := tenancyredis.NewCache(rdb, &tenancyredis.CacheConfig{Prefix: prefix(t, rdb)})
	ctx := context.Background()
	c.Set(ctx, "t", "k", []byte("v"), time.Minute, 0)
	c.Get(ctx, "t", "k") // loads the script
	l, _ := tenancyredis.NewLimiter(rdb, &tenancyredis.LimiterConfig{Prefix: prefix(t, rdb), Timeout: time.Second})
	l.Allow(ctx, "t", tenancyrate.PerHour(100)) // loads the script
	for name, op := range map[string]func(){
		"limiter decision": func() { l.Allow(ctx, "t", tenancyrate.PerHour(100)) },
		"Get":              func() { c.Get(ctx, "t", "k") },
		"Set":              func() { c.Set(ctx, "t", "k", []byte("v"), time.Minute, 0) },
		"FlushTenant":      func() { c.FlushTenant(ctx, "t") },
	} {
		before := trips.N()
		op()
		if n := trips.N() - before; n != 1 {
			t.Errorf("%s: %d round trips, want 1", name, n)
		}
	}
}
