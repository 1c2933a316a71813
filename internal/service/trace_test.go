package service_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancymigrate"
	"github.com/gotenancy/tenancy/tenancytest"
)

// TestRequestsAreTraced: with TraceRequests (serve with OTEL_EXPORTER_OTLP_ENDPOINT), each
// request has a server span naming its tenant, and its unit of work is a child span. Not
// parallel: it sets the global TracerProvider.
func TestRequestsAreTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	pool, _ := tenancytest.NewCatalog(t)
	m, err := tenancymigrate.New(pool, service.ReferenceLines())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	h := startServer(t, pool, &service.ServerConfig{AdminToken: "tok", TraceRequests: true}).Handler()
	if w := call(h, "POST", "localhost", "/admin/tenants", "tok", `{"slug":"acme"}`); w.Code != 201 {
		t.Fatal(w.Body)
	}
	if w := call(h, "GET", "acme.localhost", "/projects", "", ""); w.Code != 200 {
		t.Fatal(w.Body)
	}
	var server, unit sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "HTTP GET":
			server = s
		case "tenancy.Query":
			unit = s
		}
	}
	if server == nil || unit == nil {
		t.Fatalf("spans %v; want the request's and its unit's", rec.Ended())
	}
	attrs := map[string]string{}
	for _, kv := range server.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["tenant.slug"] != "acme" || attrs["tenant.isolation"] != "shared" || attrs["http.response.status_code"] != "200" {
		t.Errorf("the request's span has %v", attrs)
	}
	if unit.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Error("the unit of work's span is not the request's child")
	}
}
