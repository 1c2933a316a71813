package tenancycatalog_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancytest"
)

type bundle struct {
	url     string
	pool    *pgxpool.Pool
	catalog *tenancycatalog.Catalog
}

// setup gives the test a fresh database with the catalog migrated.
func setup(t *testing.T) *bundle {
	t.Helper()
	pool, cat := tenancytest.NewCatalog(t)
	return &bundle{url: pool.Config().ConnString(), pool: pool, catalog: cat}
}

func newPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestMigrateCatalogConcurrentStarts(t *testing.T) {
	t.Parallel()
	url := tenancytest.NewDatabase(t)
	const starts = 6
	var wg sync.WaitGroup
	applied := make([][]int, starts)
	errs := make([]error, starts)
	for i := range starts {
		pool := newPool(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = tenancycatalog.MigrateCatalog(context.Background(), pool)
		}()
	}
	wg.Wait()
	total := 0
	for i := range starts {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total == 0 {
		t.Fatal("no start applied the catalog migrations")
	}
	// Each version is applied exactly once across all starts.
	seen := map[int]int{}
	for _, a := range applied {
		for _, v := range a {
			seen[v]++
		}
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("version %d applied %d times", v, n)
		}
	}
	again, err := tenancycatalog.MigrateCatalog(context.Background(), newPool(t, url))
	if err != nil || len(again) != 0 {
		t.Fatalf("re-run applied %v, %v; want nothing", again, err)
	}
}

func TestCatalogCRUD(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	acme, err := b.catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme", Name: "Acme Inc", Plan: "pro",
		Isolation: tenancy.IsolationShared, Domains: []string{"shop.acme.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if acme.ID == "" || acme.Slug != "acme" || acme.Name != "Acme Inc" || acme.Plan != "pro" ||
		acme.Status != tenancy.StatusActive || acme.Isolation != tenancy.IsolationShared ||
		len(acme.Domains) != 1 || acme.CreatedAt.IsZero() {
		t.Fatalf("created %+v", acme)
	}
	globex := tenancytest.CreateTenant(t, b.catalog, "globex")
	if globex.Name != "globex" || globex.Plan != "free" || globex.Isolation != tenancy.IsolationShared {
		t.Fatalf("defaults not applied: %+v", globex)
	}

	for name, get := range map[string]func() (*tenancy.Tenant, error){
		"id":     func() (*tenancy.Tenant, error) { return b.catalog.TenantByID(ctx, acme.ID) },
		"slug":   func() (*tenancy.Tenant, error) { return b.catalog.TenantBySlug(ctx, "acme") },
		"domain": func() (*tenancy.Tenant, error) { return b.catalog.TenantByDomain(ctx, "shop.acme.com") },
	} {
		got, err := get()
		if err != nil || got.ID != acme.ID {
			t.Errorf("by %s: %v, %v; want acme", name, got, err)
		}
	}
	for name, get := range map[string]func() (*tenancy.Tenant, error){
		"unknown id": func() (*tenancy.Tenant, error) {
			return b.catalog.TenantByID(ctx, "00000000-0000-4000-8000-000000000000")
		},
		"id not a uuid":  func() (*tenancy.Tenant, error) { return b.catalog.TenantByID(ctx, "acme'; --") },
		"unknown slug":   func() (*tenancy.Tenant, error) { return b.catalog.TenantBySlug(ctx, "initech") },
		"unknown domain": func() (*tenancy.Tenant, error) { return b.catalog.TenantByDomain(ctx, "acme.com") },
	} {
		if got, err := get(); !errors.Is(err, tenancy.ErrTenantNotFound) {
			t.Errorf("%s: %v, %v; want ErrTenantNotFound", name, got, err)
		}
	}

	list, err := b.catalog.List(ctx, nil)
	if err != nil || len(list) != 2 || list[0].Slug != "acme" || list[1].Slug != "globex" {
		t.Fatalf("List = %v, %v", list, err)
	}

	s, err := b.catalog.Suspend(ctx, acme.ID)
	if err != nil || s.Status != tenancy.StatusSuspended || !errors.Is(s.Err(), tenancy.ErrTenantSuspended) {
		t.Fatalf("Suspend = %+v, %v", s, err)
	}
	if l, _ := b.catalog.List(ctx, &tenancycatalog.ListOpts{Status: tenancy.StatusSuspended}); len(l) != 1 || l[0].ID != acme.ID {
		t.Fatalf("List suspended = %v", l)
	}
	r, err := b.catalog.Resume(ctx, acme.ID)
	if err != nil || r.Status != tenancy.StatusActive {
		t.Fatalf("Resume = %+v, %v", r, err)
	}
	d, err := b.catalog.Delete(ctx, globex.ID)
	if err != nil || d.Status != tenancy.StatusDeleted || !errors.Is(d.Err(), tenancy.ErrTenantNotFound) {
		t.Fatalf("Delete = %+v, %v", d, err)
	}
	for name, op := range map[string]func(context.Context, string) (*tenancy.Tenant, error){
		"suspend deleted": b.catalog.Suspend, "resume deleted": b.catalog.Resume, "delete deleted": b.catalog.Delete,
	} {
		if _, err := op(ctx, globex.ID); !errors.Is(err, tenancy.ErrTenantNotFound) {
			t.Errorf("%s: %v, want ErrTenantNotFound", name, err)
		}
	}
	if _, err := b.catalog.Suspend(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, tenancy.ErrTenantNotFound) {
		t.Errorf("suspend unknown: %v, want ErrTenantNotFound", err)
	}
	list, _ = b.catalog.List(ctx, nil)
	if len(list) != 1 || list[0].ID != acme.ID {
		t.Fatalf("List without deleted = %v", list)
	}
	if all, _ := b.catalog.List(ctx, &tenancycatalog.ListOpts{IncludeDeleted: true}); len(all) != 2 {
		t.Fatalf("List with deleted = %v", all)
	}

	withDomain, err := b.catalog.AddDomain(ctx, acme.ID, "acme.example.org")
	if err != nil || len(withDomain.Domains) != 2 {
		t.Fatalf("AddDomain = %+v, %v", withDomain, err)
	}
	if _, err := b.catalog.AddDomain(ctx, globex.ID, "globex.example.org"); !errors.Is(err, tenancy.ErrTenantNotFound) {
		t.Errorf("AddDomain on a deleted tenant: %v", err)
	}
	without, err := b.catalog.RemoveDomain(ctx, acme.ID, "acme.example.org")
	if err != nil || len(without.Domains) != 1 {
		t.Fatalf("RemoveDomain = %+v, %v", without, err)
	}
	if _, err := b.catalog.RemoveDomain(ctx, acme.ID, "acme.example.org"); !errors.Is(err, tenancy.ErrTenantNotFound) {
		t.Errorf("RemoveDomain twice: %v", err)
	}
}

func TestCatalogRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	acme := tenancytest.CreateTenant(t, b.catalog, "acme", "shop.acme.com")
	tests := []struct {
		name string
		opts tenancycatalog.CreateOpts
		want error
	}{
		{"duplicate slug", tenancycatalog.CreateOpts{Slug: "acme"}, tenancy.ErrDuplicateSlug},
		{"duplicate domain", tenancycatalog.CreateOpts{Slug: "acme2", Domains: []string{"shop.acme.com"}}, tenancy.ErrDuplicateDomain},
		{"invalid slug", tenancycatalog.CreateOpts{Slug: "Acme"}, tenancy.ErrInvalidSlug},
		{"reserved slug", tenancycatalog.CreateOpts{Slug: "www"}, tenancy.ErrReservedSlug},
		{"invalid domain", tenancycatalog.CreateOpts{Slug: "acme3", Domains: []string{"Shop.Acme.com"}}, tenancy.ErrInvalidDomain},
		{"ip domain", tenancycatalog.CreateOpts{Slug: "acme4", Domains: []string{"10.0.0.1"}}, tenancy.ErrInvalidDomain},
		{"invalid isolation", tenancycatalog.CreateOpts{Slug: "acme5", Isolation: "rows"}, tenancy.ErrInvalidIsolation},
	}
	for _, tt := range tests {
		if _, err := b.catalog.Create(ctx, &tt.opts); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	// Nothing of the refused creates was kept (acme2 failed on its domain after its row was written).
	list, err := b.catalog.List(ctx, &tenancycatalog.ListOpts{IncludeDeleted: true})
	if err != nil || len(list) != 1 || list[0].ID != acme.ID {
		t.Fatalf("after refusals List = %v, %v; want only acme", list, err)
	}
	if _, err := b.catalog.AddDomain(ctx, acme.ID, "shop.acme.com"); !errors.Is(err, tenancy.ErrDuplicateDomain) {
		t.Errorf("AddDomain duplicate: %v", err)
	}
}

func TestCatalogDatabaseErrorIsNotNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := tenancytest.CreateTenant(t, b.catalog, "acme")
	if got, err := b.catalog.TenantBySlug(context.Background(), "acme"); err != nil || got.ID != acme.ID {
		t.Fatalf("control: %v, %v", got, err)
	}
	b.pool.Close()
	got, err := b.catalog.TenantBySlug(context.Background(), "acme")
	if err == nil || errors.Is(err, tenancy.ErrTenantNotFound) || got != nil {
		t.Fatalf("with the pool closed: %v, %v; want an error that is not ErrTenantNotFound", got, err)
	}
}

// List pages by slug (Limit, After) and Each walks every page: each tenant once, in slug order,
// with the status filter applied on every page.
func TestListPagesAndEach(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	slugs := []string{"a-co", "b-co", "c-co", "d-co", "e-co"}
	for _, s := range slugs {
		tenancytest.CreateTenant(t, b.catalog, s)
	}
	if _, err := b.catalog.Suspend(ctx, mustSlug(t, b.catalog, "c-co").ID); err != nil {
		t.Fatal(err)
	}
	var got []string
	for after := ""; ; {
		page, err := b.catalog.List(ctx, &tenancycatalog.ListOpts{Limit: 2, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("a page of %d, want at most 2", len(page))
		}
		for _, tn := range page {
			got = append(got, tn.Slug)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Slug
	}
	if strings.Join(got, ",") != strings.Join(slugs, ",") {
		t.Fatalf("pages gave %v, want %v", got, slugs)
	}
	var active []string
	if err := b.catalog.Each(ctx, &tenancycatalog.ListOpts{Status: tenancy.StatusActive, Limit: 1}, func(tn *tenancy.Tenant) error {
		active = append(active, tn.Slug)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(active, ",") != "a-co,b-co,d-co,e-co" {
		t.Fatalf("Each over active tenants, a page of one at a time: %v, want every active one but the suspended c-co", active)
	}
	if _, err := b.catalog.List(ctx, &tenancycatalog.ListOpts{Limit: -1}); err == nil {
		t.Fatal("a negative limit was accepted")
	}
}

func mustSlug(t *testing.T, c *tenancycatalog.Catalog, slug string) *tenancy.Tenant {
	t.Helper()
	tn, err := c.TenantBySlug(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}
