package tenancycache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancytest"
)

// countingStore counts the queries that reach the real catalog and can hold them at a gate.
type countingStore struct {
	tenancy.Store
	n    atomic.Int64
	gate chan struct{} // when non-nil, each query waits for it to close
}

func (s *countingStore) TenantBySlug(ctx context.Context, slug string) (*tenancy.Tenant, error) {
	s.n.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	return s.Store.TenantBySlug(ctx, slug)
}

func TestLookupSingleFlight(t *testing.T) {
	t.Parallel()
	_, cat := tenancytest.NewCatalog(t)
	acme := tenancytest.CreateTenant(t, cat, "acme")
	src := &countingStore{Store: cat, gate: make(chan struct{})}
	cache, err := tenancycache.NewLookup(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	const callers = 50
	var wg sync.WaitGroup
	got := make([]*tenancy.Tenant, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = cache.TenantBySlug(context.Background(), "acme")
		}()
	}
	for cache.Stats().Misses < callers { // every caller has missed and is waiting on the one load
		time.Sleep(time.Millisecond)
	}
	close(src.gate)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || got[i].ID != acme.ID {
			t.Fatalf("caller %d: %v, %v", i, got[i], errs[i])
		}
	}
	if n := src.n.Load(); n != 1 {
		t.Fatalf("%d concurrent misses cost %d queries, want 1", callers, n)
	}
	if _, err := cache.TenantBySlug(context.Background(), "acme"); err != nil || src.n.Load() != 1 {
		t.Fatalf("a later lookup was not a hit: %v, queries %d", err, src.n.Load())
	}
}

func TestLookupTTLs(t *testing.T) {
	t.Parallel()
	_, cat := tenancytest.NewCatalog(t)
	ctx := context.Background()
	clock := &tenancytest.Clock{}
	src := &countingStore{Store: cat}
	cache, err := tenancycache.NewLookup(src, &tenancycache.LookupConfig{TTL: time.Minute, NegativeTTL: 2 * time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tenancytest.CreateTenant(t, cat, "acme")

	lookup := func(slug string, wantErr error, wantQueries int64) {
		t.Helper()
		_, err := cache.TenantBySlug(ctx, slug)
		if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Fatalf("%s: err %v, want %v", slug, err, wantErr)
		}
		if n := src.n.Load(); n != wantQueries {
			t.Fatalf("%s: %d queries so far, want %d", slug, n, wantQueries)
		}
	}
	lookup("acme", nil, 1)
	lookup("acme", nil, 1) // hit
	lookup("nope", tenancy.ErrTenantNotFound, 2)
	lookup("nope", tenancy.ErrTenantNotFound, 2) // negative hit
	clock.Advance(3 * time.Second)
	lookup("nope", tenancy.ErrTenantNotFound, 3) // negative entry expired
	lookup("acme", nil, 3)                       // positive entry still fresh
	clock.Advance(time.Minute)
	lookup("acme", nil, 4)
}

func TestLookupBounded(t *testing.T) {
	t.Parallel()
	_, cat := tenancytest.NewCatalog(t)
	cache, err := tenancycache.NewLookup(cat, &tenancycache.LookupConfig{Size: 16})
	if err != nil {
		t.Fatal(err)
	}
	tenancytest.CreateTenant(t, cat, "acme")
	for i := range 200 {
		_, err := cache.TenantByDomain(context.Background(), "unknown"+string(rune('a'+i%26))+string(rune('a'+i/26))+".example.com")
		if !errors.Is(err, tenancy.ErrTenantNotFound) {
			t.Fatal(err)
		}
		if n := cache.Stats().Entries; n > 16 {
			t.Fatalf("cache holds %d entries, bound is 16", n)
		}
	}
	if _, err := cache.TenantBySlug(context.Background(), "acme"); err != nil {
		t.Fatalf("control: acme after the flood: %v", err)
	}
}

func TestLookupDoesNotCacheErrors(t *testing.T) {
	t.Parallel()
	pool, cat := tenancytest.NewCatalog(t)
	acme := tenancytest.CreateTenant(t, cat, "acme")
	broken, err := pgxpool.New(context.Background(), pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	brokenCatalog, _ := tenancycatalog.NewCatalog(broken, nil)
	broken.Close()
	cache, _ := tenancycache.NewLookup(brokenCatalog, nil)
	for range 2 {
		got, err := cache.TenantBySlug(context.Background(), "acme")
		if err == nil || errors.Is(err, tenancy.ErrTenantNotFound) || got != nil {
			t.Fatalf("with the database unreachable: %v, %v; want an error that is not ErrTenantNotFound", got, err)
		}
	}
	if s := cache.Stats(); s.Entries != 0 || s.Loads != 2 {
		t.Fatalf("errors were cached: %+v", s)
	}
	good, _ := tenancycache.NewLookup(cat, nil)
	if got, err := good.TenantBySlug(context.Background(), "acme"); err != nil || got.ID != acme.ID {
		t.Fatalf("control: %v, %v", got, err)
	}
}

func TestLookupInvalidateDuringLoad(t *testing.T) {
	t.Parallel()
	_, cat := tenancytest.NewCatalog(t)
	tenancytest.CreateTenant(t, cat, "acme")
	src := &countingStore{Store: cat, gate: make(chan struct{})}
	cache, _ := tenancycache.NewLookup(src, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cache.TenantBySlug(context.Background(), "acme")
	}()
	for src.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	_ = cache.Purge(context.Background()) // a change lands while the load is in flight
	close(src.gate)
	<-done
	if n := cache.Stats().Entries; n != 0 {
		t.Fatalf("a load that spanned an invalidation was cached (%d entries)", n)
	}
	if _, err := cache.TenantBySlug(context.Background(), "acme"); err != nil || src.n.Load() != 2 {
		t.Fatalf("control: next lookup loads again: %v, queries %d", err, src.n.Load())
	}
}
