package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancycache"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancytest"
)

type apiClient struct {
	t    *testing.T
	h    http.Handler
	host string
}

func (c apiClient) do(method, path, body string) *httptest.ResponseRecorder {
	return call(c.h, method, c.host, path, "", body)
}

// must does the call, checks the status and decodes the JSON body into out (when not nil).
func (c apiClient) must(method, path, body string, status int, out any) {
	c.t.Helper()
	w := c.do(method, path, body)
	if w.Code != status {
		c.t.Fatalf("%s %s %s as %s: %d %s, want %d", method, path, body, c.host, w.Code, w.Body, status)
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, w.Body)
		}
	}
}

type apiProject struct {
	ID, Name  string
	CreatedAt string `json:"created_at"`
}

type apiTask struct {
	ID        string
	ProjectID string `json:"project_id"`
	Title     string
	Done      bool
}

type apiStats struct{ Projects, Tasks int }

func setupAPI(t *testing.T) (acme, globex apiClient) {
	t.Helper()
	h, cat := newServerWithCatalog(t, "")
	for _, slug := range []string{"acme", "globex"} {
		if _, err := cat.Create(context.Background(), &tenancycatalog.CreateOpts{Slug: slug}); err != nil {
			t.Fatal(err)
		}
	}
	return apiClient{t, h, "acme.localhost"}, apiClient{t, h, "globex.localhost"}
}

func TestAPIIsolation(t *testing.T) {
	t.Parallel()
	acme, globex := setupAPI(t)
	var p apiProject
	acme.must("POST", "/projects", `{"name":"Secret plan"}`, 201, &p)
	var task apiTask
	acme.must("POST", "/projects/"+p.ID+"/tasks", `{"title":"Step one"}`, 201, &task)
	if p.ID == "" || p.Name != "Secret plan" || p.CreatedAt == "" || task.ProjectID != p.ID {
		t.Fatalf("created %+v and %+v", p, task)
	}

	// Globex: nothing of acme's, by list, id, count, or any write.
	var list []apiProject
	globex.must("GET", "/projects", "", 200, &list)
	if len(list) != 0 {
		t.Fatalf("globex lists %v", list)
	}
	var st apiStats
	globex.must("GET", "/stats", "", 200, &st)
	if st != (apiStats{}) {
		t.Fatalf("globex stats %+v, want zeros", st)
	}
	missing := "00000000-0000-4000-8000-000000000000"
	notFound := globex.do("GET", "/projects/"+missing, "").Body.String()
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/projects/" + p.ID, ""},
		{"PATCH", "/projects/" + p.ID, `{"name":"pwned"}`},
		{"DELETE", "/projects/" + p.ID, ""},
		{"GET", "/projects/" + p.ID + "/tasks", ""},
		{"POST", "/projects/" + p.ID + "/tasks", `{"title":"planted"}`},
		{"PATCH", "/tasks/" + task.ID, `{"done":true}`},
	} {
		w := globex.do(c.method, c.path, c.body)
		if w.Code != 404 || w.Body.String() != notFound {
			t.Errorf("globex %s %s: %d %s; want exactly the 404 of an id that does not exist (%s)", c.method, c.path, w.Code, w.Body, notFound)
		}
	}

	// No tenant is an error, never every tenant's rows.
	for _, path := range []string{"/projects", "/stats", "/projects/" + p.ID} {
		w := call(acme.h, "GET", "localhost", path, "", "")
		if w.Code != 400 || strings.Contains(w.Body.String(), p.ID) || strings.Contains(w.Body.String(), "Secret") {
			t.Errorf("GET %s without a tenant: %d %s; want 400 and nothing of acme's", path, w.Code, w.Body)
		}
	}

	// Acme (the positive control) still sees and owns everything, unchanged.
	var got apiProject
	acme.must("GET", "/projects/"+p.ID, "", 200, &got)
	if got.Name != "Secret plan" {
		t.Fatalf("acme's project after globex's attempts: %+v", got)
	}
	var tasks []apiTask
	acme.must("GET", "/projects/"+p.ID+"/tasks", "", 200, &tasks)
	if len(tasks) != 1 || tasks[0].Done || tasks[0].Title != "Step one" {
		t.Fatalf("acme's tasks after globex's attempts: %+v", tasks)
	}
	acme.must("GET", "/stats", "", 200, &st)
	if st != (apiStats{Projects: 1, Tasks: 1}) {
		t.Fatalf("acme stats %+v, want 1 and 1", st)
	}
}

func TestAPIProjectsAndTasks(t *testing.T) {
	t.Parallel()
	acme, _ := setupAPI(t)
	var p apiProject
	acme.must("POST", "/projects", `{"name":"Skates"}`, 201, &p)
	acme.must("PATCH", "/projects/"+p.ID, `{"name":"Rocket skates"}`, 200, &p)
	if p.Name != "Rocket skates" {
		t.Fatalf("renamed to %q", p.Name)
	}
	var task apiTask
	acme.must("POST", "/projects/"+p.ID+"/tasks", `{"title":"Order springs"}`, 201, &task)
	acme.must("PATCH", "/tasks/"+task.ID, `{"done":true}`, 200, &task)
	if !task.Done || task.Title != "Order springs" {
		t.Fatalf("after done: %+v", task)
	}
	acme.must("PATCH", "/tasks/"+task.ID, `{"title":"Order more springs"}`, 200, &task)
	if !task.Done || task.Title != "Order more springs" {
		t.Fatalf("after retitle: %+v", task)
	}
	var list []apiProject
	acme.must("GET", "/projects", "", 200, &list)
	if len(list) != 1 || list[0].ID != p.ID {
		t.Fatalf("list %+v", list)
	}
	acme.must("DELETE", "/projects/"+p.ID, "", 204, nil)
	acme.must("GET", "/projects/"+p.ID, "", 404, nil)
	acme.must("PATCH", "/tasks/"+task.ID, `{"done":false}`, 404, nil) // deleted with its project
	var st apiStats
	acme.must("GET", "/stats", "", 200, &st)
	if st != (apiStats{}) {
		t.Fatalf("stats after delete %+v", st)
	}
}

func TestAPIBadInput(t *testing.T) {
	t.Parallel()
	acme, _ := setupAPI(t)
	var p apiProject
	acme.must("POST", "/projects", `{"name":"Valid"}`, 201, &p)
	// A created project says where it is, and is there.
	if w := acme.do("POST", "/projects", `{"name":"Located"}`); w.Code != 201 || !strings.HasPrefix(w.Header().Get("Location"), "/projects/") ||
		acme.do("GET", w.Header().Get("Location"), "").Code != 200 || acme.do("DELETE", w.Header().Get("Location"), "").Code != 204 {
		t.Fatalf("created project: %d, Location %q", w.Code, w.Header().Get("Location"))
	}
	long := strings.Repeat("é", 201)
	cases := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"bad JSON", "POST", "/projects", `{"name":`, 400, ""},
		{"not an object", "POST", "/projects", `["x"]`, 400, ""},
		{"two objects", "POST", "/projects", `{"name":"a"}{"name":"b"}`, 400, ""},
		{"unknown field", "POST", "/projects", `{"name":"a","owner":"me"}`, 400, "owner"},
		{"missing name", "POST", "/projects", `{}`, 400, "name"},
		{"empty name", "POST", "/projects", `{"name":""}`, 400, "name"},
		{"blank name", "POST", "/projects", `{"name":"   "}`, 400, "name"},
		{"long name", "POST", "/projects", `{"name":"` + long + `"}`, 400, "name"},
		{"name not a string", "POST", "/projects", `{"name":5}`, 400, "name"},
		{"oversized body", "POST", "/projects", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, 413, ""},
		{"rename to empty", "PATCH", "/projects/" + p.ID, `{"name":""}`, 400, "name"},
		{"empty title", "POST", "/projects/" + p.ID + "/tasks", `{"title":""}`, 400, "title"},
		{"missing title", "POST", "/projects/" + p.ID + "/tasks", `{}`, 400, "title"},
		{"done not a boolean", "PATCH", "/tasks/00000000-0000-4000-8000-000000000000", `{"done":"yes"}`, 400, "done"},
		{"nothing to update", "PATCH", "/tasks/00000000-0000-4000-8000-000000000000", `{}`, 400, ""},
		{"id not a uuid", "GET", "/projects/1%20OR%201=1", "", 404, ""},
		{"id not a uuid, tasks", "GET", "/projects/abc/tasks", "", 404, ""},
		{"unknown route", "GET", "/nowhere", "", 404, ""},
		{"wrong method", "DELETE", "/projects", "", 405, ""},
	}
	for _, c := range cases {
		w := acme.do(c.method, c.path, c.body)
		var prob tenancyhttp.Problem
		if w.Code != c.status || json.Unmarshal(w.Body.Bytes(), &prob) != nil || prob.Field != c.field ||
			w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s; want %d problem+json naming field %q", c.name, w.Code, w.Body, c.status, c.field)
		}
	}
	// Each kind of refusal has its own problem type; a 405 says what the path takes.
	for _, c := range []struct{ method, path, body, typ string }{
		{"GET", "/nowhere", "", tenancyhttp.ProblemNoRoute},
		{"DELETE", "/projects", "", tenancyhttp.ProblemMethodNotAllowed},
		{"POST", "/projects", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, tenancyhttp.ProblemTooLarge},
	} {
		w := acme.do(c.method, c.path, c.body)
		var prob tenancyhttp.Problem
		if json.Unmarshal(w.Body.Bytes(), &prob) != nil || prob.Type != c.typ {
			t.Errorf("%s %s: type %q, want %q", c.method, c.path, prob.Type, c.typ)
		}
		if c.typ == tenancyhttp.ProblemMethodNotAllowed && !strings.Contains(w.Header().Get("Allow"), "GET") {
			t.Errorf("405 without Allow: %v", w.Header())
		}
	}
	var list []apiProject
	acme.must("GET", "/projects", "", 200, &list)
	if len(list) != 1 {
		t.Fatalf("bad requests changed data: %+v", list)
	}
}

// The API works unchanged for a database tenant made through the admin API; when that tenant's
// database disappears, its requests get 503 problem+json while another tenant's are served.
func TestAPIDatabaseTenant(t *testing.T) {
	t.Parallel()
	h, cat := newServerWithCatalog(t, "tok")
	w := call(h, "POST", "localhost", "/admin/tenants", "tok", `{"slug":"dbco","isolation":"database"}`)
	if w.Code != 201 || !strings.Contains(w.Body.String(), `"active"`) {
		t.Fatalf("create a database tenant: %d %s", w.Code, w.Body)
	}
	if _, err := cat.Create(context.Background(), &tenancycatalog.CreateOpts{Slug: "shared-co"}); err != nil {
		t.Fatal(err)
	}
	dbco, shared := apiClient{t, h, "dbco.localhost"}, apiClient{t, h, "shared-co.localhost"}
	var p apiProject
	dbco.must("POST", "/projects", `{"name":"In its own database"}`, 201, &p)
	var st apiStats
	dbco.must("GET", "/stats", "", 200, &st)
	if st.Projects != 1 {
		t.Fatalf("dbco stats %+v", st)
	}
	shared.must("GET", "/projects/"+p.ID, "", 404, nil)

	tn, err := cat.TenantBySlug(context.Background(), "dbco")
	if err != nil || tn.Database == "" {
		t.Fatalf("placement: %+v, %v", tn, err)
	}
	// The placement is the operators' to see (the admin API), not the tenant's clients'.
	var who map[string]any
	dbco.must("GET", "/whoami", "", 200, &who)
	if who["slug"] != "dbco" || who["isolation"] != "database" || who["id"] != tn.ID || who["status"] != "active" || who["plan"] != "free" {
		t.Fatalf("whoami: %v", who)
	}
	for _, leak := range []string{"server", "database", "provision_error", "rate_limit"} {
		if _, ok := who[leak]; ok {
			t.Errorf("whoami shows %s to the tenant's clients: %v", leak, who)
		}
	}
	if w := call(h, "GET", "localhost", "/admin/tenants/dbco", "tok", ""); w.Code != 200 || !strings.Contains(w.Body.String(), tn.Database) {
		t.Fatalf("the admin API does not show the placement: %d %s", w.Code, w.Body)
	}
	tenancytest.DropDatabase(t, tn.Database)
	var last *httptest.ResponseRecorder
	for range 5 {
		last = dbco.do("GET", "/projects", "")
		shared.must("GET", "/projects", "", 200, nil)
	}
	var prob tenancyhttp.Problem
	if last.Code != 503 || json.Unmarshal(last.Body.Bytes(), &prob) != nil || prob.Type != tenancyhttp.ProblemTenantUnavailable ||
		last.Header().Get("Retry-After") == "" {
		t.Fatalf("dbco with its database gone: %d %s", last.Code, last.Body)
	}
}

// /stats is cached per tenant, dropped by writes, and a deleted tenant's entries are flushed.
func TestStatsCacheAndDeletedTenant(t *testing.T) {
	t.Parallel()
	pool, _ := tenancytest.NewCatalog(t)
	ctx := context.Background()
	m, _ := tenancymigrate.New(pool, service.ReferenceLines())
	if _, err := m.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	store, _ := tenancycache.NewMemoryStore(nil)
	h := startServer(t, pool, &service.ServerConfig{AdminToken: "tok", Cache: store}).Handler() // the delete below will be heard
	w := call(h, "POST", "localhost", "/admin/tenants", "tok", `{"slug":"cached"}`)
	var tn struct{ ID string }
	if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &tn) != nil {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	api := apiClient{t, h, "cached.localhost"}
	cached := func() bool {
		_, _, ok, _ := store.Get(ctx, tn.ID, "stats")
		return ok
	}
	var st apiStats
	api.must("GET", "/stats", "", 200, &st)
	if !cached() {
		t.Fatal("/stats was not cached")
	}
	api.must("POST", "/projects", `{"name":"p"}`, 201, nil)
	if cached() {
		t.Fatal("a write left the cached /stats in place")
	}
	api.must("GET", "/stats", "", 200, &st)
	if st.Projects != 1 || !cached() {
		t.Fatalf("stats after the write: %+v (cached %v)", st, cached())
	}
	if w := call(h, "DELETE", "localhost", "/admin/tenants/cached", "tok", ""); w.Code != 200 {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	deadline := time.Now().Add(time.Second)
	for cached() {
		if time.Now().After(deadline) {
			t.Fatal("a deleted tenant's cache was not flushed within a second")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
