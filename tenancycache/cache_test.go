package tenancycache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
)

// A load that panics panics in the caller, who can recover, as a direct call would: it neither
// crashes the process from another goroutine nor leaves the key stuck; the next load runs.
func TestGetOrLoadPanicReachesTheCaller(t *testing.T) {
	t.Parallel()
	store, err := tenancycache.NewMemoryStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tenancycache.New(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := tenancy.WithTenant(context.Background(), &tenancy.Tenant{ID: "7f0a2b3c-0000-4000-8000-000000000001", Slug: "acme"})
	recovered := func() (p any) {
		defer func() { p = recover() }()
		_, _ = tenancycache.GetOrLoad(ctx, c, "k", time.Minute, func(context.Context) (int, error) { panic("boom") })
		return nil
	}()
	if recovered == nil || !strings.Contains(fmt.Sprint(recovered), "boom") {
		t.Fatalf("recovered %v, want the load's panic \"boom\"", recovered)
	}
	// Positive control: the key loads afterwards.
	v, err := tenancycache.GetOrLoad(ctx, c, "k", time.Minute, func(context.Context) (int, error) { return 7, nil })
	if err != nil || v != 7 {
		t.Fatalf("after the panic: %v, %v; want 7", v, err)
	}
}
