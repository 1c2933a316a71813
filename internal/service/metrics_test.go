package service_test

import (
	"strings"
	"testing"
)

// TestMetricsEndpoint: GET /metrics needs the admin token and shows the requests counted by
// tenant and outcome, the lookup cache's counters and the process's.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	h := newServer(t, "tok")
	if w := call(h, "POST", "localhost", "/admin/tenants", "tok", `{"slug":"acme"}`); w.Code != 201 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	call(h, "GET", "acme.localhost", "/projects", "", "")
	call(h, "GET", "nobody.localhost", "/projects", "", "")
	if w := call(h, "GET", "localhost", "/metrics", "", ""); w.Code != 401 {
		t.Fatalf("/metrics without the token: %d", w.Code)
	}
	w := call(h, "GET", "localhost", "/metrics", "tok", "")
	if w.Code != 200 {
		t.Fatalf("/metrics: %d %s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{
		`tenancy_http_requests_total{outcome="served",tenant="_other"} 1`,
		`tenancy_http_requests_total{outcome="unknown",tenant="_none"} 1`,
		`tenancy_http_request_duration_seconds_bucket`,
		`tenancy_lookup_hits_total`,
		`tenancy_router_pools`,
		`tenancy_tenants{isolation="shared",status="active"} 1`,
		`tenancy_migration_targets{state="current"} 1`,
		`tenancy_migration_latest_version 3`,
		`tenancy_jobs_total{outcome="ran"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
