package tenancyhttp_test

import (
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestMiddlewareNamesTheTenantOnTheRequestSpan: the request's span (otelhttp's, say), when it is
// recording, gets tenant.id, tenant.slug and tenant.isolation; a refused request's span gets none.
func TestMiddlewareNamesTheTenantOnTheRequestSpan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	for _, host := range []string{"acme.localhost", "nobody.localhost"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		ctx, span := tp.Tracer("test").Start(r.Context(), host)
		b.handler.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx))
		span.End()
	}
	got := map[string]map[attribute.Key]string{}
	for _, s := range rec.Ended() {
		got[s.Name()] = map[attribute.Key]string{}
		for _, kv := range s.Attributes() {
			got[s.Name()][kv.Key] = kv.Value.Emit()
		}
	}
	if a := got["acme.localhost"]; a["tenant.id"] != b.acme.ID || a["tenant.slug"] != "acme" || a["tenant.isolation"] != "shared" {
		t.Errorf("acme's request span has %v", a)
	}
	if n := len(got["nobody.localhost"]); n != 0 {
		t.Errorf("a refused request's span has %v", got["nobody.localhost"])
	}
}
