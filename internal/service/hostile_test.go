package service_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancytest"
)

// Hostile input, each with a clear error and nothing changed: slugs, domains and names built to
// break out of SQL or DNS, hosts and forwarded headers, tenant override attempts, malformed and
// oversized bodies.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: service.ReferenceLines().Tenant})
	srv := startEnvServer(t, env, &service.ServerConfig{AdminToken: "tok"})
	h := srv.Handler()
	victim := env.NewTenant(t, "shared")
	api := apiClient{t, h, victim.Slug + ".localhost"}
	var p apiProject
	api.must("POST", "/projects", `{"name":"crown jewels"}`, 201, &p)

	snapshot := func() string {
		w := call(h, "GET", "localhost", "/admin/tenants?all=1", "tok", "")
		projects := call(h, "GET", victim.Slug+".localhost", "/projects", "", "")
		return w.Body.String() + projects.Body.String()
	}
	before := snapshot()

	cases := []struct {
		name, method, host, path, body string
		headers                        map[string]string
		status                         int
	}{
		{"slug with SQL", "POST", "localhost", "/admin/tenants", `{"slug":"x'); DROP TABLE tenancy.tenants; --"}`, nil, 400},
		{"slug with a path", "POST", "localhost", "/admin/tenants", `{"slug":"../../etc"}`, nil, 400},
		{"slug with a quote for an identifier", "POST", "localhost", "/admin/tenants", `{"slug":"a\"b"}`, nil, 400},
		{"unicode slug", "POST", "localhost", "/admin/tenants", `{"slug":"аcme"}`, nil, 400},
		{"overlong slug", "POST", "localhost", "/admin/tenants", `{"slug":"` + strings.Repeat("a", 64) + `"}`, nil, 400},
		{"isolation with SQL", "POST", "localhost", "/admin/tenants", `{"slug":"ok1","isolation":"schema; DROP SCHEMA public"}`, nil, 400},
		{"domain with SQL", "POST", "localhost", "/admin/tenants", `{"slug":"ok2","domains":["a.com'; --"]}`, nil, 400},
		{"domain that is an IP", "POST", "localhost", "/admin/tenants", `{"slug":"ok3","domains":["127.0.0.1"]}`, nil, 400},
		{"server alias unknown", "POST", "localhost", "/admin/tenants", `{"slug":"ok4","isolation":"database","server":"evil"}`, nil, 400},
		{"no admin token", "POST", "localhost", "/admin/tenants", `{"slug":"ok5"}`, map[string]string{"Authorization": ""}, 401},
		{"markup host", "GET", "<img src=x>.localhost", "/projects", "", nil, 400},
		{"host with a NUL", "GET", "acme\x00.localhost", "/projects", "", nil, 400},
		{"forwarded host from the internet", "GET", "nobody.localhost", "/projects", "", map[string]string{"X-Forwarded-Host": victim.Slug + ".localhost"}, 404},
		{"tenant header override", "GET", "nobody.localhost", "/projects", "", map[string]string{"X-Tenant": victim.Slug, "X-Tenant-Id": victim.ID}, 404},
		{"path tenant override", "GET", "nobody.localhost", "/t/" + victim.Slug + "/projects", "", nil, 404},
		{"malformed body", "POST", victim.Slug + ".localhost", "/projects", `{"name":`, nil, 400},
		{"body with a tenant_id", "POST", victim.Slug + ".localhost", "/projects", `{"name":"x","tenant_id":"` + victim.ID + `"}`, nil, 400},
		{"oversized body", "POST", victim.Slug + ".localhost", "/projects", `{"name":"` + strings.Repeat("x", 100<<10) + `"}`, nil, 413},
		{"id with SQL", "GET", victim.Slug + ".localhost", "/projects/1%27%20OR%20%271%27%3D%271", "", nil, 404},
		{"NUL in a name", "POST", victim.Slug + ".localhost", "/projects", `{"name":"x\u0000y"}`, nil, 400},
		{"NUL in a rename", "PATCH", victim.Slug + ".localhost", "/projects/" + p.ID, `{"name":"\u0000"}`, nil, 400},
		{"NUL in a task title", "POST", victim.Slug + ".localhost", "/projects/" + p.ID + "/tasks", `{"title":"a\u0000"}`, nil, 400},
		{"NUL in a tenant name", "POST", "localhost", "/admin/tenants", `{"slug":"ok6","name":"a\u0000b"}`, nil, 400},
		{"NUL in a tenant rename", "PATCH", "localhost", "/admin/tenants/" + victim.Slug, `{"name":"\u0000"}`, nil, 400},
		{"invalid UTF-8 in a name", "POST", victim.Slug + ".localhost", "/projects", "{\"name\":\"\xff\xfe\"}", nil, 400},
		{"done that is not a boolean", "PATCH", victim.Slug + ".localhost", "/tasks/" + p.ID, `{"done":"yes"}`, nil, 400},
		{"rename with SQL", "PATCH", victim.Slug + ".localhost", "/projects/" + p.ID, `{"name":"'); DELETE FROM projects; --"}`, nil, 200},
	}
	for _, c := range cases {
		token := "tok"
		if v, ok := c.headers["Authorization"]; ok {
			token = v
		}
		w := call(h, c.method, c.host, c.path, token, c.body, c.headers)
		if w.Code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, w.Code, w.Body, c.status)
			continue
		}
		if c.status >= 400 {
			var prob tenancyhttp.Problem
			if json.Unmarshal(w.Body.Bytes(), &prob) != nil || prob.Type == "" || prob.Title == "" {
				t.Errorf("%s: not a problem+json body: %s", c.name, w.Body)
			}
			// Operators get the offending value back, JSON-quoted; tenants' requests echo nothing.
			if !strings.HasPrefix(c.path, "/admin/") && (strings.Contains(w.Body.String(), "<img") || strings.Contains(w.Body.String(), "DROP")) {
				t.Errorf("%s: the error echoes the input: %s", c.name, w.Body)
			}
		}
	}
	// The SQL-looking name was stored as text, nothing more; rename it back and compare.
	api.must("PATCH", "/projects/"+p.ID, `{"name":"crown jewels"}`, 200, nil)
	if after := snapshot(); after != before {
		t.Fatalf("hostile requests changed state:\nbefore %s\nafter  %s", before, after)
	}
}
