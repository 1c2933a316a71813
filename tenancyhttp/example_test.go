package tenancyhttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancyhttp"
)

// mapStore is a tenancy.Store over a map, enough for an example; services use a
// tenancycache.Lookup over the catalog.
type mapStore map[string]*tenancy.Tenant

func (m mapStore) TenantBySlug(_ context.Context, slug string) (*tenancy.Tenant, error) {
	if t, ok := m[slug]; ok {
		return t, nil
	}
	return nil, tenancy.ErrTenantNotFound
}
func (m mapStore) TenantByID(ctx context.Context, id string) (*tenancy.Tenant, error) {
	return nil, tenancy.ErrTenantNotFound
}
func (m mapStore) TenantByDomain(ctx context.Context, d string) (*tenancy.Tenant, error) {
	return nil, tenancy.ErrTenantNotFound
}

func ExampleMiddleware() {
	store := mapStore{
		"acme":   {ID: "5f0c…", Slug: "acme", Status: tenancy.StatusActive},
		"globex": {ID: "9e1d…", Slug: "globex", Status: tenancy.StatusSuspended},
	}
	mw, err := tenancyhttp.Middleware(store, &tenancyhttp.Config{
		Resolvers: []tenancyhttp.Resolver{tenancyhttp.FromSubdomain("example.com"), tenancyhttp.FromDomain()},
	})
	if err != nil {
		panic(err)
	}
	app := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello ", tenancy.MustFromContext(r.Context()).Slug)
	}))

	for _, host := range []string{"acme.example.com", "ACME.example.com:443", "globex.example.com",
		"www.example.com", "example.com", "10.0.0.1"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		app.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			fmt.Println(host, "→", w.Body)
		} else {
			var p tenancyhttp.Problem
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			fmt.Println(host, "→", w.Code, p.Type)
		}
	}
	// Output:
	// acme.example.com → hello acme
	// ACME.example.com:443 → hello acme
	// globex.example.com → 403 urn:tenancy:problem:tenant-suspended
	// www.example.com → 400 urn:tenancy:problem:reserved-tenant
	// example.com → 400 urn:tenancy:problem:no-tenant
	// 10.0.0.1 → 400 urn:tenancy:problem:no-tenant
}
