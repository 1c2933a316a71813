package tenancy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gotenancy/tenancy"
)

func TestContext(t *testing.T) {
	t.Parallel()
	acme := &tenancy.Tenant{ID: "0d7f1c7e-0000-4000-8000-000000000001", Slug: "acme"}

	if got, ok := tenancy.FromContext(context.Background()); ok || got != nil {
		t.Fatalf("empty context: FromContext = %v, %v", got, ok)
	}
	ctx := tenancy.WithTenant(context.Background(), acme)
	if got, ok := tenancy.FromContext(ctx); !ok || got != acme {
		t.Fatalf("FromContext = %v, %v; want acme", got, ok)
	}
	if got := tenancy.MustFromContext(ctx); got != acme {
		t.Fatalf("MustFromContext = %v; want acme", got)
	}
	if _, ok := tenancy.FromContext(tenancy.WithTenant(ctx, nil)); ok {
		t.Fatal("WithTenant(ctx, nil) must hide the outer tenant")
	}
	defer func() {
		r := recover()
		if err, _ := r.(error); !errors.Is(err, tenancy.ErrNoTenant) {
			t.Fatalf("MustFromContext on an empty context panicked with %v, want ErrNoTenant", r)
		}
	}()
	tenancy.MustFromContext(context.Background())
}

func TestErrNoTenantSaysWhatToDo(t *testing.T) {
	t.Parallel()
	msg := tenancy.ErrNoTenant.Error()
	for _, want := range []string{"tenancyhttp.Middleware", "tenancy.WithTenant"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ErrNoTenant %q does not mention %s", msg, want)
		}
	}
}

func TestDetach(t *testing.T) {
	t.Parallel()
	acme := &tenancy.Tenant{ID: "1", Slug: "acme"}
	req, cancel := context.WithCancel(tenancy.WithTenant(context.Background(), acme))
	bg, err := tenancy.Detach(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if req.Err() == nil {
		t.Fatal("control: the request context should be cancelled")
	}
	if bg.Err() != nil {
		t.Fatalf("detached context was cancelled with the request: %v", bg.Err())
	}
	if got, ok := tenancy.FromContext(bg); !ok || got != acme {
		t.Fatalf("detached context lost the tenant: %v", got)
	}
	if _, err := tenancy.Detach(context.Background()); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Fatalf("Detach without a tenant = %v, want ErrNoTenant", err)
	}
}

func TestLogHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(tenancy.NewLogHandler(slog.NewTextHandler(&buf, nil))).With("component", "test")
	ctx := tenancy.WithTenant(context.Background(), &tenancy.Tenant{ID: "id-1", Slug: "acme"})
	log.InfoContext(ctx, "with")
	log.InfoContext(context.Background(), "without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	if !strings.Contains(lines[0], "tenant_id=id-1") || !strings.Contains(lines[0], "tenant=acme") ||
		!strings.Contains(lines[0], "component=test") {
		t.Errorf("line with a tenant lacks its attributes: %s", lines[0])
	}
	if strings.Contains(lines[1], "tenant") {
		t.Errorf("line without a tenant has tenant attributes: %s", lines[1])
	}
}

// A handler hands work to a goroutine that must finish after the response is written. Detach keeps
// the tenant and drops the request's cancellation; the goroutine sets its own deadline.
func ExampleDetach() {
	request, cancel := context.WithCancel(
		tenancy.WithTenant(context.Background(), &tenancy.Tenant{ID: "7c0a…", Slug: "acme"}))

	defer cancel()

	bg, err := tenancy.Detach(request)
	if err != nil {
		return // no tenant: never start unscoped work
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, stop := context.WithTimeout(bg, time.Minute)
		defer stop()
		fmt.Println("sending the invoice for", tenancy.MustFromContext(ctx).Slug, "- cancelled:", ctx.Err() != nil)
	}()
	cancel() // the response is written; the request context ends
	<-done
	// Output: sending the invoice for acme - cancelled: false
}
