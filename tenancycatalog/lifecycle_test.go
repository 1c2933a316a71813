package tenancycatalog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancytest"
)

// forgotten records the tenants an OnDeleted hook was called with.
type forgotten struct {
	mu  sync.Mutex
	ids []string
}

func (f *forgotten) forget(_ context.Context, t *tenancy.Tenant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, t.ID)
	return nil
}

func (f *forgotten) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, got := range f.ids {
		if got == id {
			return true
		}
	}
	return false
}

// Deleting a tenant reaches, through Watch, every function given to OnDeleted; a suspension does
// not (the tenant's state is still its own); a purged tenant is forgotten by ID; and a hook that
// fails is reported through WatchOpts.OnError with the tenant, the others still called.
func TestOnDeletedForgetsDeletedTenantsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	acme := tenancytest.CreateTenant(t, b.catalog, "acme")
	globex := tenancytest.CreateTenant(t, b.catalog, "globex")
	var first, second forgotten
	failing := errors.New("cache server down")
	reported := make(chan string, 10)
	hook := b.catalog.OnDeleted(first.forget, func(context.Context, *tenancy.Tenant) error { return failing }, second.forget)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	connected := make(chan struct{}, 10)
	go func() {
		done <- b.catalog.Watch(wctx, hook, &tenancycatalog.WatchOpts{
			OnConnect: func() { connected <- struct{}{} },
			OnError: func(id string, err error) {
				if errors.Is(err, failing) {
					reported <- id
				}
			},
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch never connected")
	}

	if _, err := b.catalog.Suspend(ctx, globex.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.catalog.Delete(ctx, acme.ID); err != nil {
		t.Fatal(err)
	}
	tenancytest.WaitFor(t, 10*time.Second, "acme forgotten by both hooks", func() bool { return first.has(acme.ID) && second.has(acme.ID) })
	select {
	case id := <-reported:
		if id != acme.ID {
			t.Fatalf("OnError reported %s, want acme %s", id, acme.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the failing hook's error was never reported")
	}
	// The suspension was heard before the deletion (notifications arrive in commit order), and
	// forgot nothing.
	if first.has(globex.ID) {
		t.Fatal("a suspended tenant's state was forgotten; only deleted tenants' may be")
	}

	// After a reconnection Watch calls Purge: every deleted tenant is forgotten again, as its
	// deletion may have gone unheard.
	reset := func() { first.mu.Lock(); first.ids = nil; first.mu.Unlock() }
	reset()
	if err := hook.Purge(ctx); err == nil || !errors.Is(err, failing) {
		t.Fatalf("Purge with a failing hook: %v, want its error", err)
	}
	if !first.has(acme.ID) || first.has(globex.ID) {
		t.Fatalf("Purge forgot %v, want the deleted acme only", first.ids)
	}

	// Purging the tenant for good (gone from the catalog) is heard too: forgotten by its ID.
	reset()
	if err := tenancyprovision.Purge(ctx, b.catalog, acme.ID); err != nil {
		t.Fatal(err)
	}
	tenancytest.WaitFor(t, 10*time.Second, "the purged acme forgotten", func() bool { return first.has(acme.ID) })
}

// The placement writes are for provisioning only: an active tenant keeps its placement and
// ledger whatever is asked, and a database tenant is placed only in its own database.
func TestPlacementWritesGuardTheirTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	active := tenancytest.CreateTenant(t, b.catalog, "active-co")
	fresh, err := b.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "fresh-db", Isolation: tenancy.IsolationDatabase})
	if err != nil {
		t.Fatal(err)
	}
	other := tenancycatalog.DatabaseName(active.ID)
	if err := b.catalog.Place(ctx, fresh.ID, tenancycatalog.DefaultServer, other); !errors.Is(err, tenancycatalog.ErrNotPlaceable) {
		t.Fatalf("placing a tenant in another tenant's database: %v, want ErrNotPlaceable", err)
	}
	if err := b.catalog.Place(ctx, active.ID, tenancycatalog.DefaultServer, other); !errors.Is(err, tenancycatalog.ErrNotPlaceable) {
		t.Fatalf("placing an active shared tenant: %v, want ErrNotPlaceable", err)
	}
	// Positive control: the provisioning database tenant is placed in its own database.
	own := tenancycatalog.DatabaseName(fresh.ID)
	if err := b.catalog.Place(ctx, fresh.ID, tenancycatalog.DefaultServer, own); err != nil {
		t.Fatalf("placing a provisioning database tenant in its own database: %v", err)
	}
	if got, _ := b.catalog.TenantByID(ctx, fresh.ID); got.Database != own || got.Server != tenancycatalog.DefaultServer {
		t.Fatalf("placed %s/%s, want %s/%s", got.Server, got.Database, tenancycatalog.DefaultServer, own)
	}

	if err := tenancycatalog.RecordLine(ctx, b.pool, tenancycatalog.LineEntry{Target: active.ID, TenantID: active.ID, Version: 3}); err != nil {
		t.Fatal(err)
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancycatalog.ProvisionFailed(ctx, tx, active.ID, errors.New("boom")); !errors.Is(err, tenancycatalog.ErrNotProvisioning) {
		t.Fatalf("ProvisionFailed on an active tenant: %v, want ErrNotProvisioning", err)
	}
	_ = tx.Rollback(ctx)
	if v, err := tenancycatalog.LineVersion(ctx, b.pool, active.ID); err != nil || v != 3 {
		t.Fatalf("the active tenant's ledger after a refused ProvisionFailed: %d, %v; want 3", v, err)
	}
	// Positive control: the provisioning tenant's failure is recorded and its placement forgotten.
	tx, err = b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tenancycatalog.ProvisionFailed(ctx, tx, fresh.ID, errors.New("boom")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.catalog.TenantByID(ctx, fresh.ID); got.ProvisionError != "boom" || got.Database != "" {
		t.Fatalf("after ProvisionFailed: error %q, database %q; want boom and none", got.ProvisionError, got.Database)
	}
}

// CreateShared makes many tenants in one call, each as Create would (active, shared, found by
// slug); a batch with a bad or taken slug creates none of its tenants.
func TestCreateSharedMakesManyOrNone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var batch []tenancycatalog.CreateOpts
	for i := range 1000 {
		batch = append(batch, tenancycatalog.CreateOpts{Slug: fmt.Sprintf("bulk-%04d", i), Plan: "pro"})
	}
	n, err := b.catalog.CreateShared(ctx, batch)
	if err != nil || n != 1000 {
		t.Fatalf("CreateShared: %d, %v; want 1000", n, err)
	}
	got, err := b.catalog.TenantBySlug(ctx, "bulk-0999")
	if err != nil || got.Status != tenancy.StatusActive || got.Isolation != tenancy.IsolationShared || got.Plan != "pro" || got.Name != "bulk-0999" {
		t.Fatalf("bulk-0999: %+v, %v; want an active shared pro tenant named by its slug", got, err)
	}
	for name, bad := range map[string][]tenancycatalog.CreateOpts{
		"a taken slug":    {{Slug: "fresh-one"}, {Slug: "bulk-0001"}},
		"a slug twice":    {{Slug: "fresh-one"}, {Slug: "fresh-one"}},
		"a reserved slug": {{Slug: "fresh-one"}, {Slug: "www"}},
		"a schema tenant": {{Slug: "fresh-one"}, {Slug: "fresh-two", Isolation: tenancy.IsolationSchema}},
	} {
		if _, err := b.catalog.CreateShared(ctx, bad); err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if _, err := b.catalog.TenantBySlug(ctx, "fresh-one"); !errors.Is(err, tenancy.ErrTenantNotFound) {
			t.Fatalf("%s: fresh-one exists after the refused batch (%v)", name, err)
		}
	}
	if _, err := b.catalog.CreateShared(ctx, []tenancycatalog.CreateOpts{{Slug: "bulk-0002"}}); !errors.Is(err, tenancy.ErrDuplicateSlug) {
		t.Fatalf("a taken slug: %v, want ErrDuplicateSlug", err)
	}
}
