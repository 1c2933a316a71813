package tenancy

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultReservedSlugs are the labels no tenant may take: names a SaaS uses for itself, for mail and
// DNS, for well-known services, and names that invite phishing. SlugRules.Reserved replaces them.
var DefaultReservedSlugs = []string{
	"about", "account", "accounts", "admin", "administrator", "api", "app", "apps", "assets", "auth",
	"autoconfig", "autodiscover", "billing", "blog", "cdn", "dashboard", "dev", "docs", "email", "ftp",
	"help", "imap", "internal", "localhost", "login", "logout", "mail", "manage", "mx", "news", "ns",
	"ns1", "ns2", "oauth", "pop", "pop3", "portal", "root", "security", "signin", "signup", "smtp",
	"sso", "staging", "static", "status", "support", "system", "test", "webmail", "www",
}

// SlugRules validates slugs: a DNS label ([a-z0-9], inner hyphens, 1 to 63 characters) that is not
// reserved. The zero value reserves DefaultReservedSlugs.
type SlugRules struct {
	reserved map[string]struct{}
}

// NewSlugRules returns rules that reserve the given labels (compared lower-case). A nil slice means
// DefaultReservedSlugs; an empty non-nil slice reserves nothing.
func NewSlugRules(reserved []string) *SlugRules {
	if reserved == nil {
		reserved = DefaultReservedSlugs
	}
	r := &SlugRules{reserved: make(map[string]struct{}, len(reserved))}
	for _, s := range reserved {
		r.reserved[strings.ToLower(s)] = struct{}{}
	}
	return r
}

var defaultSlugRules = NewSlugRules(nil)

// ValidateSlug checks slug against the default rules. See SlugRules.Validate.
func ValidateSlug(slug string) error { return defaultSlugRules.Validate(slug) }

// IsReserved reports whether label is reserved.
func (r *SlugRules) IsReserved(label string) bool {
	if r == nil || r.reserved == nil {
		r = defaultSlugRules
	}
	_, ok := r.reserved[label]
	return ok
}

// Validate returns nil for a usable slug, or a *SlugError that wraps ErrInvalidSlug (and says which
// DNS label rule failed) or ErrReservedSlug. Slugs are not folded: "Acme" is invalid, not "acme".
func (r *SlugRules) Validate(slug string) error {
	if rule := labelRule(slug); rule != "" {
		return &SlugError{Slug: slug, Rule: rule, err: ErrInvalidSlug}
	}
	if idnaReserved(slug) {
		return &SlugError{Slug: slug, Rule: "must not have hyphens in the third and fourth places (xn-- and the like are IDNA's: such a host shows as another name)", err: ErrInvalidSlug}
	}
	if r.IsReserved(slug) {
		return &SlugError{Slug: slug, Rule: "is reserved", err: ErrReservedSlug}
	}
	return nil
}

// IsLabel reports whether s is a lower-case DNS label (a-z, 0-9, inner hyphens, 1 to 63
// characters), the form of every slug and of each label of a domain. Unlike Validate it ignores the reserved list and does not
// allocate.
func IsLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// idnaReserved reports whether s has "--" in its third and fourth places, which IDNA reserves
// (xn-- is punycode: xn--cme-gna.example shows as another name than its letters).
func idnaReserved(s string) bool { return len(s) >= 4 && s[2] == '-' && s[3] == '-' }

// labelRule returns "" when s is a lower-case DNS label, or the rule it breaks.
func labelRule(s string) string {
	if IsLabel(s) {
		return ""
	}
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > 63:
		return "must be at most 63 characters"
	case s[0] == '-':
		return "must not start with a hyphen"
	case s[len(s)-1] == '-':
		return "must not end with a hyphen"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Sprintf("must hold only a-z, 0-9 and hyphens (byte %d is %q)", i, c)
		}
	}
	return ""
}

// SlugError says why a slug was refused. It wraps ErrInvalidSlug or ErrReservedSlug.
type SlugError struct {
	Slug string
	Rule string // the rule that failed, e.g. "must not start with a hyphen"
	err  error
}

func (e *SlugError) Error() string {
	if errors.Is(e.err, ErrReservedSlug) {
		return fmt.Sprintf("slug %q is reserved", e.Slug)
	}
	return fmt.Sprintf("%v %q: %s", e.err, e.Slug, e.Rule)
}

func (e *SlugError) Unwrap() error { return e.err }

// ValidateDomain checks that d is a custom domain in normal form: lower-case ASCII (IDNA names in
// their xn-- form), at least two dot-separated labels, each a DNS label, at most 253 characters, no
// trailing dot, not an IP address. It returns an error wrapping ErrInvalidDomain that says why.
// tenancyhttp.NormalizeHost turns what users type into this form.
func ValidateDomain(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("%w %q: must be 1 to 253 characters", ErrInvalidDomain, d)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%w %q: must have at least two labels (shop.example.com)", ErrInvalidDomain, d)
	}
	for _, l := range labels {
		if rule := labelRule(l); rule != "" {
			return fmt.Errorf("%w %q: label %q %s", ErrInvalidDomain, d, l, rule)
		}
	}
	last := labels[len(labels)-1]
	if last[0] >= '0' && last[0] <= '9' {
		return fmt.Errorf("%w %q: the last label must not start with a digit (IP addresses are not domains)", ErrInvalidDomain, d)
	}
	return nil
}
