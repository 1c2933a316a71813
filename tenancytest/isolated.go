package tenancytest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancypgx"
)

// Isolated describes the code under test to RequireIsolated: how a tenant writes data and how a
// tenant reads it, each with the DB and a context that carries the tenant.
type Isolated struct {
	// Create writes data as the tenant in ctx and returns the IDs of what it made. Required.
	Create func(ctx context.Context, db *tenancypgx.DB) ([]string, error)
	// List returns the IDs of every such item the tenant in ctx can see. Required.
	List func(ctx context.Context, db *tenancypgx.DB) ([]string, error)
	// Count returns how many such items the tenant in ctx can see. Optional.
	Count func(ctx context.Context, db *tenancypgx.DB) (int, error)
	// Get reports whether the tenant in ctx can read the item with this ID. Optional.
	Get func(ctx context.Context, db *tenancypgx.DB, id string) (bool, error)
}

// RequireIsolated runs iso as tenant A and tenant B of every isolation model (and B of each
// model against A of every other) and fails t, saying which model and which item, if B lists,
// counts or reads anything A made — and also if A cannot list, count or read its own, because a
// broken read would otherwise pass as isolated.
func RequireIsolated(t testing.TB, env *Env, iso Isolated) {
	t.Helper()
	if iso.Create == nil || iso.List == nil {
		t.Fatal("tenancytest: RequireIsolated needs Create and List")
	}
	tenants := map[tenancy.Isolation][2]*tenancy.Tenant{}
	for _, m := range Models {
		a, b := env.Pair(t, m)
		tenants[m] = [2]*tenancy.Tenant{a, b}
	}
	for _, ma := range Models {
		a := tenants[ma][0]
		ids, err := iso.Create(Context(a), env.DB)
		if err != nil {
			t.Fatalf("Create as %s (%s): %v", a.Slug, ma, err)
		}
		if len(ids) == 0 {
			t.Fatalf("Create as %s (%s) made nothing: the test would prove nothing", a.Slug, ma)
		}
		checkSees(t, env, iso, a, ids, true)
		for _, mb := range Models {
			checkSees(t, env, iso, tenants[mb][1], ids, false)
		}
	}
}

// checkSees checks that tn sees all of ids (want) or none of them (!want).
func checkSees(t testing.TB, env *Env, iso Isolated, tn *tenancy.Tenant, ids []string, want bool) {
	t.Helper()
	ctx := Context(tn)
	who := fmt.Sprintf("%s (%s)", tn.Slug, tn.Isolation)
	listed, err := iso.List(ctx, env.DB)
	if err != nil {
		t.Fatalf("List as %s: %v", who, err)
	}
	for _, id := range ids {
		if got := slices.Contains(listed, id); got != want {
			if want {
				t.Errorf("%s cannot list its own item %s: the read is broken, so isolation is not proven", who, id)
			} else {
				t.Errorf("ISOLATION BREACH: %s lists another tenant's item %s", who, id)
			}
		}
	}
	if iso.Count != nil {
		n, err := iso.Count(ctx, env.DB)
		if err != nil {
			t.Fatalf("Count as %s: %v", who, err)
		}
		if want && n < len(ids) {
			t.Errorf("%s counts %d items, fewer than the %d it made", who, n, len(ids))
		}
		if !want && n != 0 {
			t.Errorf("ISOLATION BREACH: %s counts %d items, but owns none", who, n)
		}
	}
	if iso.Get != nil {
		for _, id := range ids {
			ok, err := iso.Get(ctx, env.DB, id)
			if err != nil {
				t.Fatalf("Get %s as %s: %v", id, who, err)
			}
			if ok != want {
				if want {
					t.Errorf("%s cannot read its own item %s", who, id)
				} else {
					t.Errorf("ISOLATION BREACH: %s reads another tenant's item %s by its ID", who, id)
				}
			}
		}
	}
}

// HTTPIsolated describes an HTTP API to RequireIsolatedHTTP: how a tenant creates items and
// reads them, through a Client that sends requests as that tenant.
type HTTPIsolated struct {
	// Handler is the API, with its tenant middleware. Required.
	Handler http.Handler
	// Host names a tenant in requests. Defaults to the slug under "localhost" (acme.localhost).
	Host func(t *tenancy.Tenant) string
	// Create makes items as the client's tenant and returns their IDs. Required.
	Create func(c *Client) ([]string, error)
	// List returns the IDs the client's tenant can see. Required.
	List func(c *Client) ([]string, error)
	// Get reports whether the client's tenant can read the item with this ID. Optional.
	Get func(c *Client, id string) (bool, error)
}

// Client sends requests to a handler as one tenant.
type Client struct {
	h    http.Handler
	host string
}

// Do sends a request with a JSON body (or none) and returns the recorded response.
func (c *Client) Do(method, path, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Host = c.host
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	return w
}

// RequireIsolatedHTTP is RequireIsolated through an HTTP API: every check is a request as A or B.
func RequireIsolatedHTTP(t testing.TB, env *Env, iso HTTPIsolated) {
	t.Helper()
	if iso.Handler == nil || iso.Create == nil || iso.List == nil {
		t.Fatal("tenancytest: RequireIsolatedHTTP needs Handler, Create and List")
	}
	host := iso.Host
	if host == nil {
		host = func(t *tenancy.Tenant) string { return t.Slug + ".localhost" }
	}
	client := func(ctx context.Context) *Client {
		return &Client{h: iso.Handler, host: host(tenancy.MustFromContext(ctx))}
	}
	plain := Isolated{
		Create: func(ctx context.Context, _ *tenancypgx.DB) ([]string, error) { return iso.Create(client(ctx)) },
		List:   func(ctx context.Context, _ *tenancypgx.DB) ([]string, error) { return iso.List(client(ctx)) },
	}
	if iso.Get != nil {
		plain.Get = func(ctx context.Context, _ *tenancypgx.DB, id string) (bool, error) { return iso.Get(client(ctx), id) }
	}
	RequireIsolated(t, env, plain)
}
