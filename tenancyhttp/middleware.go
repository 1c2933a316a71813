package tenancyhttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/internal/spans"
)

// Config configures Middleware.
type Config struct {
	// Resolvers are tried in order; see Resolver. Required: there is no default.
	Resolvers []Resolver
	// TrustedProxies are the networks of the reverse proxies in front of the service. Only a
	// request whose connection comes from one of them may set the host with X-Forwarded-Host: the
	// last value of its last line, the one the nearest proxy wrote, which must therefore set or
	// append the header. Defaults to none: X-Forwarded-Host is ignored.
	TrustedProxies []netip.Prefix
	// Slugs decides which labels are reserved. Defaults to tenancy.NewSlugRules(nil).
	Slugs *tenancy.SlugRules
	// Logger receives refusals (at debug level) and store failures (at error level). Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// Middleware returns HTTP middleware that resolves each request's tenant with cfg.Resolvers, looks
// it up in store (use a tenancycache.Lookup) and serves the request with the tenant in its
// context (tenancy.FromContext). It refuses, with an application/problem+json body:
//
//   - 400 when no resolver names a tenant, or the name is malformed or reserved (ProblemNoTenant,
//     ProblemReservedTenant);
//   - 404 when no tenant has the name, or it was deleted (ProblemUnknownTenant);
//   - 403 when the tenant is suspended (ProblemTenantSuspended);
//   - 503 while the tenant is being provisioned (ProblemTenantNotReady);
//   - 503 when the store fails (ProblemUnavailable): never "unknown", never served.
//
// It returns an error when cfg is incomplete or a resolver was built with bad arguments.
func Middleware(store tenancy.Store, cfg *Config) (func(http.Handler) http.Handler, error) {
	if store == nil {
		return nil, errors.New("tenancyhttp: Middleware needs a tenancy.Store")
	}
	if cfg == nil || len(cfg.Resolvers) == 0 {
		return nil, errors.New("tenancyhttp: Middleware needs at least one resolver " +
			"(tenancyhttp.FromSubdomain, FromDomain, FromHeader, FromPath or FromFunc)")
	}
	m := &middleware{store: store, trusted: cfg.TrustedProxies, slugs: cfg.Slugs, log: cfg.Logger}
	if m.slugs == nil {
		m.slugs = tenancy.NewSlugRules(nil)
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	for i, r := range cfg.Resolvers {
		if r.err != nil {
			return nil, r.err
		}
		if r.kind == resolverZero {
			return nil, fmt.Errorf("tenancyhttp: resolver %d is the zero Resolver; build it with a From… function", i)
		}
		m.bases = append(m.bases, r.bases...)
		m.resolvers = append(m.resolvers, r)
	}
	return m.wrap, nil
}

type middleware struct {
	store     tenancy.Store
	resolvers []Resolver
	bases     []string
	trusted   []netip.Prefix
	slugs     *tenancy.SlugRules
	log       *slog.Logger
}

func (m *middleware) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, path, err := m.resolve(r)
		if o, ok := w.(Observer); ok && t != nil {
			o.ObserveTenant(t) // a suspended or unready tenant's refusal counts as that tenant's
		}
		if err != nil {
			m.refuse(w, r, err)
			return
		}
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() { // otelhttp's, or the service's
			span.SetAttributes(spans.TenantAttributes(t)...)
		}
		ctx := tenancy.WithTenant(r.Context(), t)
		r2 := r.WithContext(ctx)
		if path != "" {
			u := *r.URL
			u.Path, u.RawPath = path, ""
			r2.URL = &u
		}
		next.ServeHTTP(w, r2)
	})
}

// resolve returns the request's tenant, ready to serve, and the path FromPath left (or ""). A
// tenant found but not ready (suspended, provisioning) comes back with its error; a deleted one
// does not.
func (m *middleware) resolve(r *http.Request) (*tenancy.Tenant, string, error) {
	host := r.Host
	if len(m.trusted) > 0 {
		if fwd, ok := forwardedHost(r.Header); ok && fromTrusted(r, m.trusted) {
			host = fwd
		}
	}
	q := request{r: r, bases: m.bases, slugs: m.slugs}
	q.host, _ = NormalizeHost(host) // an invalid host leaves "": only header and path resolvers can name the tenant
	for i := range m.resolvers {
		ref, err := m.resolvers[i].resolve(&q)
		if err != nil {
			return nil, "", err
		}
		if ref.kind == refNone {
			continue
		}
		t, err := m.lookup(r.Context(), ref)
		if err != nil {
			return nil, "", err
		}
		if err := t.Err(); errors.Is(err, tenancy.ErrTenantNotFound) {
			return nil, "", err // deleted: no tenant any more
		} else if err != nil {
			return t, "", err // refused, but known: for the Observer
		}
		return t, q.path, nil
	}
	return nil, "", tenancy.ErrNoTenant
}

func (m *middleware) lookup(ctx context.Context, ref ref) (*tenancy.Tenant, error) {
	var t *tenancy.Tenant
	var err error
	switch ref.kind {
	case refSlug:
		t, err = m.store.TenantBySlug(ctx, ref.value)
	case refDomain:
		t, err = m.store.TenantByDomain(ctx, ref.value)
	default:
		t, err = m.store.TenantByID(ctx, ref.value)
	}
	if err != nil && !errors.Is(err, tenancy.ErrTenantNotFound) {
		return nil, &storeError{err}
	}
	return t, err
}

// storeError marks a failure of the store: the tenant is unknown, not absent.
type storeError struct{ err error }

func (e *storeError) Error() string { return "tenancyhttp: tenant lookup failed: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func (m *middleware) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if _, ok := err.(*storeError); ok && !errors.Is(err, context.Canceled) {
		m.log.ErrorContext(r.Context(), "tenancy: tenant lookup failed", "err", err, "host", r.Host)
		cannedCatalogDown.write(w)
		return
	}
	c := cannedFor(err)
	if m.log.Enabled(r.Context(), slog.LevelDebug) {
		m.log.DebugContext(r.Context(), "tenancy: request refused", "status", c.p.Status, "type", c.p.Type,
			"host", r.Host, "path", url.PathEscape(r.URL.Path))
	}
	c.write(w)
}

// forwardedHost returns the X-Forwarded-Host value the nearest proxy wrote: the last value of the
// last header line (a proxy either appends its value to the list or adds a line of its own, so
// anything before it — a client's line included — came from further away). ok is false when the
// header is absent.
func forwardedHost(h http.Header) (host string, ok bool) {
	lines := h["X-Forwarded-Host"]
	if len(lines) == 0 {
		return "", false
	}
	last := lines[len(lines)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last), true
}
