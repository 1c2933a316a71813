// Package spans puts tenants on OpenTelemetry spans: the attributes every span of the toolkit's
// carries, and the spans of the units of work (tenancypgx), started only under a recording span
// (otelhttp's, the service's, a job runner's), so code that traces nothing pays a context lookup.
package spans

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotenancy/tenancy"
)

// TenantAttributes name t on a span: tenant.id, tenant.slug and tenant.isolation.
func TenantAttributes(t *tenancy.Tenant) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("tenant.id", t.ID),
		attribute.String("tenant.slug", t.Slug),
		attribute.String("tenant.isolation", string(t.Isolation)),
	}
}

// Traced runs unit in a span named name, a child of ctx's span, with the tenant in ctx and the
// database system as attributes and unit's error as its status — when ctx's span is recording;
// otherwise it only runs unit.
func Traced(ctx context.Context, name string, unit func(context.Context) error) (err error) {
	ctx, span := Start(ctx, name)
	defer func() {
		if p := recover(); p != nil {
			End(span, fmt.Errorf("panic: %v", p))
			panic(p)
		}
		End(span, err)
	}()
	return unit(ctx)
}

// Start starts Traced's span; it returns ctx and nil when ctx's span is not recording.
func Start(ctx context.Context, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	attrs := []attribute.KeyValue{attribute.String("db.system", "postgresql")}
	if t, ok := tenancy.FromContext(ctx); ok {
		attrs = append(attrs, TenantAttributes(t)...)
	}
	return otel.GetTracerProvider().Tracer("github.com/gotenancy/tenancy").Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// End ends a span Start started (nil: none), with err as its status. A single-statement query's
// span ends when its rows are closed or its row scanned, as its connection goes back then.
func End(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
