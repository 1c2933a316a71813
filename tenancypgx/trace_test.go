package tenancypgx_test

import (
	"errors"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancytest"
)

// TestUnitsOfWorkAreTraced: under a recording span (as otelhttp's), db.Tx, db.ReadTx and the
// single-statement helpers start child spans that name the tenant and its isolation model, with
// the unit's error as their status; without one, they start none.
func TestUnitsOfWorkAreTraced(t *testing.T) {
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: fstest.MapFS{"0001_items.sql": {Data: []byte(
		`CREATE TABLE items (tenant_id uuid NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id)); SELECT tenancy.isolate('items');`)}}})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	a := env.NewTenant(t, tenancy.IsolationSchema)
	ctx := tenancytest.Context(a)
	// Without a recording span: nothing.
	if _, err := env.DB.Exec(ctx, `INSERT INTO items (id) VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans without a recording parent, want none", n)
	}
	ctx, parent := tp.Tracer("test").Start(ctx, "request")
	if err := env.DB.Tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO items (id) VALUES (2)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := env.DB.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	boom := errors.New("boom")
	if err := env.DB.ReadTx(ctx, func(pgx.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	func() { // a panicking unit's span ends too, with the panic as its error
		defer func() { _ = recover() }()
		_ = env.DB.Tx(ctx, func(pgx.Tx) error { panic("unit panicked") })
	}()
	parent.End()
	panicked := 0
	for _, s := range rec.Ended() {
		if s.Name() == "tenancy.Tx" && s.Status().Code == codes.Error {
			panicked++
		}
	}
	if panicked != 1 {
		t.Errorf("%d ended tenancy.Tx spans with an error, want the panicking unit's", panicked)
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	for _, name := range []string{"tenancy.Tx", "tenancy.Query", "tenancy.ReadTx"} {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no %s span among %v", name, rec.Ended())
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s is not a child of the request's span", name)
		}
		attrs := map[attribute.Key]string{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value.Emit()
		}
		if attrs["tenant.id"] != a.ID || attrs["tenant.slug"] != a.Slug || attrs["tenant.isolation"] != "schema" || attrs["db.system"] != "postgresql" {
			t.Errorf("%s attributes %v", name, attrs)
		}
	}
	if st := byName["tenancy.ReadTx"].Status(); st.Code != codes.Error || st.Description != "boom" {
		t.Errorf("the failed unit's span status is %+v", st)
	}
	committed := 0
	for _, s := range rec.Ended() {
		if s.Name() == "tenancy.Tx" && s.Status().Code != codes.Error {
			committed++
		}
	}
	if committed != 1 {
		t.Errorf("%d tenancy.Tx spans without an error, want the committed unit's", committed)
	}
}
