package tenancyhttp

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gotenancy/tenancy"
)

// Resolver finds the name of a request's tenant in one place of the request. Build resolvers with
// FromSubdomain, FromDomain, FromHeader, FromPath and FromFunc and give them to Middleware in the
// order to try them: the first that names a tenant decides, and one that refuses the request ends
// the search. There is no default: every source of the tenant's name is chosen explicitly, so none
// can be spoofed by accident.
type Resolver struct {
	kind    resolverKind
	err     error                                 // a construction error, reported by Middleware
	bases   []string                              // FromSubdomain: the base domains, which FromDomain never looks up
	header  string                                // FromHeader
	trusted []netip.Prefix                        // FromHeader
	prefix  string                                // FromPath
	fn      func(r *http.Request) (string, error) // FromFunc
}

type resolverKind uint8

const (
	resolverZero resolverKind = iota
	resolverSubdomain
	resolverDomain
	resolverHeader
	resolverPath
	resolverFunc
)

// request is what a resolver sees: the request and its normalized host ("" when it has none that
// can name a tenant).
type request struct {
	r     *http.Request
	host  string
	bases []string           // every FromSubdomain base of the middleware
	slugs *tenancy.SlugRules // the middleware's slug rules
	path  string             // set by FromPath: the path with the tenant prefix removed
}

type refKind uint8

const (
	refNone refKind = iota
	refSlug
	refDomain
	refID
)

// ref names a tenant; the zero ref means "not here, ask the next resolver".
type ref struct {
	kind  refKind
	value string
}

var errUntrustedHeader = errors.New("tenancyhttp: tenant header from an untrusted address")

// FromSubdomain names the tenant by the label in front of a base domain: acme.example.com with
// base example.com is the tenant with slug acme. Hosts under the base that are not one valid,
// unreserved label are refused (400): www.example.com, a.b.example.com. The bare base domain and
// hosts under no base are left to the next resolver. Bases are host names (example.com, localhost).
func FromSubdomain(bases ...string) Resolver {
	res := Resolver{kind: resolverSubdomain}
	if len(bases) == 0 {
		res.err = errors.New("tenancyhttp: FromSubdomain needs at least one base domain")
	}
	for _, b := range bases {
		n, err := NormalizeHost(b)
		if err != nil {
			res.err = fmt.Errorf("tenancyhttp: FromSubdomain base %q: %w", b, err)
			break
		}
		res.bases = append(res.bases, n)
	}
	return res
}

// FromDomain names the tenant by a custom domain registered in the catalog (shop.acme.com). It never
// looks up the base domains of FromSubdomain or hosts under them, nor single-label hosts; a host it
// looks up and does not find is an unknown tenant (404).
func FromDomain() Resolver { return Resolver{kind: resolverDomain} }

// FromHeader names the tenant by a request header (its slug, or its ID when the value is a UUID),
// for internal callers such as other services and jobs. It is honoured only when the connection
// comes from one of the trusted networks; the header from anywhere else is refused (400), so an
// outside client cannot pick a tenant with it. Without the header it leaves the request to the next
// resolver.
func FromHeader(name string, trusted ...netip.Prefix) Resolver {
	res := Resolver{kind: resolverHeader, header: http.CanonicalHeaderKey(name), trusted: trusted}
	switch {
	case name == "" || res.header == "Host":
		res.err = fmt.Errorf("tenancyhttp: FromHeader needs a header name other than Host, got %q", name)
	case len(trusted) == 0:
		res.err = errors.New("tenancyhttp: FromHeader needs the networks of the trusted callers (netip.MustParsePrefix(\"10.0.0.0/8\"))")
	}
	return res
}

// FromPath names the tenant by the first path segment after prefix: with prefix "/t/",
// /t/acme/projects is tenant acme, and the handler sees the path /projects. Paths outside the
// prefix are left to the next resolver.
func FromPath(prefix string) Resolver {
	res := Resolver{kind: resolverPath, prefix: prefix}
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		res.err = fmt.Errorf("tenancyhttp: FromPath prefix must start and end with a slash, got %q", prefix)
	}
	return res
}

// FromFunc names the tenant with fn, which returns a slug, or "" to leave the request to the next
// resolver, or an error to refuse it (mapped with ProblemFor).
func FromFunc(fn func(r *http.Request) (slug string, err error)) Resolver {
	res := Resolver{kind: resolverFunc, fn: fn}
	if fn == nil {
		res.err = errors.New("tenancyhttp: FromFunc needs a function")
	}
	return res
}

// resolve returns the tenant's name in q, the zero ref to pass, or an error to refuse.
func (res *Resolver) resolve(q *request) (ref, error) {
	switch res.kind {
	case resolverSubdomain:
		for _, b := range res.bases {
			if !under(q.host, b) {
				continue
			}
			label := q.host[:len(q.host)-len(b)-1]
			if !tenancy.IsLabel(label) {
				return ref{}, tenancy.ErrNoTenant // a.b.example.com
			}
			if q.slugs.IsReserved(label) {
				return ref{}, tenancy.ErrReservedSlug
			}
			return ref{refSlug, label}, nil
		}
	case resolverDomain:
		h := q.host
		if h == "" || strings.IndexByte(h, '.') < 0 {
			return ref{}, nil
		}
		for _, b := range q.bases {
			if h == b || under(h, b) {
				return ref{}, nil
			}
		}
		return ref{refDomain, h}, nil
	case resolverHeader:
		lines := q.r.Header[res.header]
		if len(lines) == 0 || lines[0] == "" {
			return ref{}, nil
		}
		if !fromTrusted(q.r, res.trusted) {
			return ref{}, errUntrustedHeader
		}
		if len(lines) > 1 {
			return ref{}, tenancy.ErrNoTenant // two names for the tenant: which one is not for us to guess
		}
		v := lines[0]
		if tenancy.IsID(v) {
			return ref{refID, strings.ToLower(v)}, nil
		}
		if !tenancy.IsLabel(v) || q.slugs.IsReserved(v) {
			return ref{}, tenancy.ErrNoTenant
		}
		return ref{refSlug, v}, nil
	case resolverPath:
		p := q.r.URL.Path
		if !strings.HasPrefix(p, res.prefix) {
			return ref{}, nil
		}
		slug, rest, _ := strings.Cut(p[len(res.prefix):], "/")
		if !tenancy.IsLabel(slug) || q.slugs.IsReserved(slug) {
			return ref{}, tenancy.ErrNoTenant
		}
		q.path = "/" + rest
		return ref{refSlug, slug}, nil
	case resolverFunc:
		slug, err := res.fn(q.r)
		if err != nil || slug == "" {
			return ref{}, err
		}
		return ref{refSlug, slug}, nil
	}
	return ref{}, nil
}

// under reports whether host is a proper subdomain of base.
func under(host, base string) bool {
	return len(host) > len(base) && strings.HasSuffix(host, base) && host[len(host)-len(base)-1] == '.'
}

// fromTrusted reports whether the connection's peer address is in one of the prefixes.
func fromTrusted(r *http.Request, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
