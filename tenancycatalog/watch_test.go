package tenancycatalog_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancypgx"
	"github.com/gotenancy/tenancy/tenancytest"
)

// instance is one running service: its own pool, catalog and cache, fed by its own Watch.
type instance struct {
	cache    *tenancycache.Lookup
	connects atomic.Int64
	ready    chan struct{}
}

func startInstance(t *testing.T, url string, opts *tenancycatalog.WatchOpts) *instance {
	t.Helper()
	cat, err := tenancycatalog.NewCatalog(newPool(t, url), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{ready: make(chan struct{})}
	in.cache, _ = tenancycache.NewLookup(cat, nil)
	o := tenancycatalog.WatchOpts{Heartbeat: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
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
	acme := tenancytest.CreateTenant(t, b.catalog, "acme")
	for _, in := range []*instance{one, two} {
		tenancytest.WaitFor(t, time.Second, "create reaches the instance", func() bool { return status(in, "acme") == tenancy.StatusActive })
	}
	if _, err := b.catalog.Suspend(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{one, two} {
		tenancytest.WaitFor(t, time.Second, "suspend reaches the instance", func() bool { return status(in, "acme") == tenancy.StatusSuspended })
	}
	if _, err := b.catalog.Resume(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	tenancytest.WaitFor(t, time.Second, "resume reaches the instance", func() bool { return status(one, "acme") == tenancy.StatusActive })
	if _, err := b.catalog.AddDomain(ctx, acme.ID, "shop.acme.com"); err != nil {
		t.Fatal(err)
	}
	tenancytest.WaitFor(t, time.Second, "a new domain reaches the instance", func() bool {
		got, err := two.cache.TenantByDomain(ctx, "shop.acme.com")
		return err == nil && got.ID == acme.ID
	})
	if _, err := b.catalog.Delete(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{one, two} {
		tenancytest.WaitFor(t, time.Second, "delete reaches the instance", func() bool { return status(in, "acme") == tenancy.StatusDeleted })
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
	acme := tenancytest.CreateTenant(t, b.catalog, "acme")
	// While the listener is down, the tenant is suspended: that notification is lost.
	var suspended atomic.Bool
	in := startInstance(t, b.url, &tenancycatalog.WatchOpts{OnDisconnect: func(error) {
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
	tenancytest.WaitFor(t, 5*time.Second, "the listener reconnects", func() bool { return in.connects.Load() >= 2 })
	if !suspended.Load() {
		t.Fatal("OnDisconnect was not called")
	}
	if s := status(in, "acme"); s != tenancy.StatusSuspended {
		t.Fatalf("after reconnecting the cache still says %s; it must be purged", s)
	}
}

// countingInvalidator counts what Watch tells it.
type countingInvalidator struct{ ids chan string }

func (c *countingInvalidator) Invalidate(_ context.Context, id string) error { c.ids <- id; return nil }
func (c *countingInvalidator) Purge(context.Context) error                   { return nil }

// Anyone connected to the catalog's database may NOTIFY on its channel — SQL inside a tenant's
// transaction too — but Watch acts only on what the catalog signed: forged and replayed-looking
// notifications are ignored, a real change is heard.
func TestWatchIgnoresNotificationsTheCatalogDidNotSign(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tb := struct {
		catalog *tenancycatalog.Catalog
		db      *tenancypgx.DB
		a, b    *tenancy.Tenant
		ctxB    context.Context
	}{catalog: b.catalog, db: tenancytest.NewDB(t, b.pool, nil),
		a: tenancytest.CreateTenant(t, b.catalog, "tenant-a"), b: tenancytest.CreateTenant(t, b.catalog, "tenant-b")}
	tb.ctxB = tenancy.WithTenant(context.Background(), tb.b)
	ctx := context.Background()
	inv := &countingInvalidator{ids: make(chan string, 100)}
	ignored := make(chan string, 100)
	ready := make(chan struct{})
	var once atomic.Bool
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- tb.catalog.Watch(wctx, inv, &tenancycatalog.WatchOpts{
			OnConnect: func() {
				if once.CompareAndSwap(false, true) {
					close(ready)
				}
			},
			OnIgnored: func(p string) { ignored <- p },
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-ready
	// From inside B's transaction, as the runtime role: the bare id, the id with B's own proof,
	// the id with a made-up signature.
	err := tb.db.Tx(tb.ctxB, func(tx pgx.Tx) error {
		for _, p := range []string{tb.a.ID, tb.a.ID + "." + strings.Repeat("0", 64)} {
			if _, err := tx.Exec(tb.ctxB, `SELECT pg_notify('tenancy_catalog', $1)`, p); err != nil {
				return err
			}
		}
		_, err := tx.Exec(tb.ctxB, `SELECT pg_notify('tenancy_catalog', $1 || '.' || current_setting('app.tenant_proof'))`, tb.b.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case p := <-ignored:
			t.Logf("ignored %q", p)
		case <-time.After(5 * time.Second):
			t.Fatal("a forged notification was neither ignored nor heard")
		}
	}
	select {
	case id := <-inv.ids:
		t.Fatalf("a forged notification invalidated %s", id)
	default:
	}
	// The positive control: a real change is heard, with the bare id.
	if _, err := tb.catalog.Suspend(ctx, tb.a.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-inv.ids:
		if id != tb.a.ID {
			t.Fatalf("heard %q, want %s", id, tb.a.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the catalog's own notification was not heard")
	}
}
