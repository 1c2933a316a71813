package tenancycache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancytest"
)

func TestMemoryStoreSuite(t *testing.T) {
	t.Parallel()
	tenancytest.CacheStoreSuite(t, func(t *testing.T) tenancycache.Store {
		s, err := tenancycache.NewMemoryStore(nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// A noisy tenant fills the cache: it evicts its own entries, not the others'.
func TestMemoryStoreNoisyNeighbour(t *testing.T) {
	t.Parallel()
	s, _ := tenancycache.NewMemoryStore(&tenancycache.MemoryConfig{MaxBytes: 100_000, TenantShare: 0.3})
	ctx := context.Background()
	value := make([]byte, 1000)
	for i := range 20 {
		s.Set(ctx, "quiet", fmt.Sprint(i), value, time.Hour, 0)
	}
	for i := range 10_000 {
		s.Set(ctx, "noisy", fmt.Sprint(i), value, time.Hour, 0)
	}
	total, noisy := s.Bytes("noisy")
	if total > 100_000 || noisy > 30_000 {
		t.Fatalf("held %d bytes, the noisy tenant %d; bounds 100000 and 30000", total, noisy)
	}
	for i := range 20 {
		if _, _, ok, _ := s.Get(ctx, "quiet", fmt.Sprint(i)); !ok {
			t.Fatalf("the quiet tenant lost entry %d to the noisy one", i)
		}
	}
	if _, _, ok, _ := s.Get(ctx, "noisy", "9999"); !ok {
		t.Fatal("control: the noisy tenant's latest entry is there")
	}
	// When the whole is full, the largest tenant gives way: two more tenants push it over, and
	// the quiet tenant, the smallest, keeps its entries.
	for i := range 2 {
		for j := range 25 {
			s.Set(ctx, fmt.Sprint("mid-", i), fmt.Sprint(j), value, time.Hour, 0)
		}
	}
	if total, _ := s.Bytes(""); total > 100_000 {
		t.Fatalf("held %d bytes over the 100000 bound", total)
	}
	if _, _, ok, _ := s.Get(ctx, "quiet", "0"); !ok {
		t.Fatal("the smallest tenant gave way before the largest")
	}
}

// Flushing tenants the store never saw — the ids a flood of forged "tenant deleted" messages
// would name — keeps no state: the store does not grow. The store's state is its entries and one
// record per tenant it has seen, so the test counts those, not the process heap, which the tests
// running in parallel grow and shrink at the same time. The controls: the count does go up for a
// tenant the store sees, and flushing a tenant that has entries does drop them.
func TestMemoryStoreFlushOfUnknownTenantsKeepsNothing(t *testing.T) {
	t.Parallel()
	s, _ := tenancycache.NewMemoryStore(nil)
	ctx := context.Background()
	s.Set(ctx, "known", "k", []byte("v"), time.Hour, 0)
	tenants := tenancycache.Tenants(s)
	held, _ := s.Bytes("")
	for i := range 200_000 {
		s.FlushTenant(ctx, fmt.Sprintf("unknown-%d", i))
	}
	if n := tenancycache.Tenants(s); n != tenants {
		t.Fatalf("after 200,000 flushes of unknown tenants the store keeps state for %d tenants, want %d", n, tenants)
	}
	if b, _ := s.Bytes(""); b != held {
		t.Fatalf("after 200,000 flushes of unknown tenants the store holds %d bytes, want %d", b, held)
	}
	if _, _, ok, _ := s.Get(ctx, "seen", "k"); ok {
		t.Fatal("a tenant never written to has an entry; want none")
	}
	if n := tenancycache.Tenants(s); n != tenants+1 {
		t.Fatalf("control: after a Get of a new tenant the store keeps state for %d tenants, want %d", n, tenants+1)
	}
	if err := s.FlushTenant(ctx, "known"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := s.Get(ctx, "known", "k"); ok {
		t.Fatal("control: a flushed tenant's entry is still there; want it gone")
	}
}
