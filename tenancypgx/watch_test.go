package tenancypgx_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"tenancy"
	"tenancy/tenancypgx"
)

// instance is one running service: its own pool, catalog and cache, fed by its own Watch.
type instance struct {
	cache    *tenancypgx.CachedStore
	connects atomic.Int64
	ready    chan struct{}
}

func startInstance(t *testing.T, url string, opts *tenancypgx.WatchOpts) *instance {
	t.Helper()
	cat, err := tenancypgx.NewCatalog(newPool(t, url), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{ready: make(chan struct{})}
	in.cache, _ = tenancypgx.NewCachedStore(cat, nil)
	o := tenancypgx.WatchOpts{Heartbeat: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	if opts != nil {
		o.OnDisconnect = opts.OnDisconnect
	}
	o.OnConnect = func() {
		if in.connects.Add(1) == 1 {
			close(in.ready)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- cat.Watch(ctx, in.cache, &o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	select {
	case <-in.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch never connected")
	}
	return in
}

// waitFor polls until cond holds, failing after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(in *instance, slug string) tenancy.Status {
	got, err := in.cache.TenantBySlug(context.Background(), slug)
	if errors.Is(err, tenancy.ErrTenantNotFound) {
		return "unknown"
	}
	if err != nil {
		return "error"
	}
	return got.Status
}

func TestWatchPushesChangesToEveryInstance(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	one := startInstance(t, b.url, nil)
	two := startInstance(t, b.url, nil)

	// Both instances remember that "acme" is unknown; creating it must reach both at once, not
	// after the negative TTL.
	for _, in := range []*instance{one, two} {
		if s := status(in, "acme"); s != "unknown" {
			t.Fatalf("before create: %s", s)
		}
	}
	acme := mustCreate(t, b.catalog, "acme")
	for _, in := range []*instance{one, two} {
		waitFor(t, time.Second, "create reaches the instance", func() bool { return status(in, "acme") == tenancy.StatusActive })
	}
	if _, err := b.catalog.Suspend(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{one, two} {
		waitFor(t, time.Second, "suspend reaches the instance", func() bool { return status(in, "acme") == tenancy.StatusSuspended })
	}
	if _, err := b.catalog.Resume(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "resume reaches the instance", func() bool { return status(one, "acme") == tenancy.StatusActive })
	if _, err := b.catalog.AddDomain(ctx, acme.ID, "shop.acme.com"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "a new domain reaches the instance", func() bool {
		got, err := two.cache.TenantByDomain(ctx, "shop.acme.com")
		return err == nil && got.ID == acme.ID
	})
	if _, err := b.catalog.Delete(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{one, two} {
		waitFor(t, time.Second, "delete reaches the instance", func() bool { return status(in, "acme") == tenancy.StatusDeleted })
	}
	// Heartbeats ran many times meanwhile (every 20ms) without breaking the listener.
	if n := one.connects.Load(); n != 1 {
		t.Errorf("listener connected %d times; heartbeats must not reconnect", n)
	}
}

func TestWatchPurgesAfterLostNotifications(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	acme := mustCreate(t, b.catalog, "acme")
	// While the listener is down, the tenant is suspended: that notification is lost.
	var suspended atomic.Bool
	in := startInstance(t, b.url, &tenancypgx.WatchOpts{OnDisconnect: func(error) {
		if suspended.CompareAndSwap(false, true) {
			if _, err := b.catalog.Suspend(ctx, acme.ID); err != nil {
				t.Error(err)
			}
		}
	}})
	if s := status(in, "acme"); s != tenancy.StatusActive {
		t.Fatalf("control: acme is %s before the outage", s)
	}
	var dbName string
	if err := b.pool.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	tag, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'tenancy-watch' AND datname = $1`, dbName)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminate the listener: %v (%d backends)", err, tag.RowsAffected())
	}
	waitFor(t, 5*time.Second, "the listener reconnects", func() bool { return in.connects.Load() >= 2 })
	if !suspended.Load() {
		t.Fatal("OnDisconnect was not called")
	}
	if s := status(in, "acme"); s != tenancy.StatusSuspended {
		t.Fatalf("after reconnecting the cache still says %s; it must be purged", s)
	}
}
