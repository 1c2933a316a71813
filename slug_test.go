package tenancy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gotenancy/tenancy"
)

func TestValidateSlug(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, slug string
		want       error
		rule       string
	}{
		{"simple", "acme", nil, ""},
		{"digits and inner hyphen", "acme-2", nil, ""},
		{"one char", "a", nil, ""},
		{"63 chars", strings.Repeat("a", 63), nil, ""},
		{"empty", "", tenancy.ErrInvalidSlug, "must not be empty"},
		{"64 chars", strings.Repeat("a", 64), tenancy.ErrInvalidSlug, "at most 63"},
		{"leading hyphen", "-acme", tenancy.ErrInvalidSlug, "start with a hyphen"},
		{"trailing hyphen", "acme-", tenancy.ErrInvalidSlug, "end with a hyphen"},
		{"upper case", "Acme", tenancy.ErrInvalidSlug, "only a-z"},
		{"dot", "a.b", tenancy.ErrInvalidSlug, "only a-z"},
		{"underscore", "a_b", tenancy.ErrInvalidSlug, "only a-z"},
		{"space", "a b", tenancy.ErrInvalidSlug, "only a-z"},
		{"unicode", "acmé", tenancy.ErrInvalidSlug, "only a-z"},
		{"nul", "a\x00", tenancy.ErrInvalidSlug, "only a-z"},
		{"punycode", "xn--cme-gna", tenancy.ErrInvalidSlug, "third and fourth"},
		{"IDNA-reserved hyphens", "ab--c", tenancy.ErrInvalidSlug, "third and fourth"},
		{"hyphens elsewhere", "a--b", nil, ""},
		{"hyphens later", "abc--d", nil, ""},
		{"reserved www", "www", tenancy.ErrReservedSlug, "reserved"},
		{"reserved api", "api", tenancy.ErrReservedSlug, "reserved"},
		{"reserved admin", "admin", tenancy.ErrReservedSlug, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tenancy.ValidateSlug(tt.slug)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("ValidateSlug(%q) = %v, want %v", tt.slug, err, tt.want)
			}
			if err == nil {
				return
			}
			var se *tenancy.SlugError
			if !errors.As(err, &se) || !strings.Contains(se.Rule, tt.rule) {
				t.Fatalf("ValidateSlug(%q) = %v, want a SlugError with rule containing %q", tt.slug, err, tt.rule)
			}
			if !strings.Contains(err.Error(), tt.rule) {
				t.Errorf("message %q does not say which rule failed (%q)", err, tt.rule)
			}
		})
	}
}

func TestSlugRulesCustomReserved(t *testing.T) {
	t.Parallel()
	r := tenancy.NewSlugRules([]string{"Billing", "acme"})
	if err := r.Validate("acme"); !errors.Is(err, tenancy.ErrReservedSlug) {
		t.Errorf("acme: got %v, want ErrReservedSlug", err)
	}
	if err := r.Validate("billing"); !errors.Is(err, tenancy.ErrReservedSlug) {
		t.Errorf("billing (reserved as Billing): got %v, want ErrReservedSlug", err)
	}
	if err := r.Validate("www"); err != nil {
		t.Errorf("www is not in the custom list: got %v, want nil", err)
	}
	if err := tenancy.NewSlugRules([]string{}).Validate("admin"); err != nil {
		t.Errorf("an empty list reserves nothing: got %v", err)
	}
}

func FuzzValidateSlug(f *testing.F) {
	for _, s := range []string{"acme", "", "-", "a-b", "Ab", "a.b", strings.Repeat("z", 64), "wWw", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := tenancy.ValidateSlug(s)
		if label := err == nil || errors.Is(err, tenancy.ErrReservedSlug); tenancy.IsLabel(s) != label {
			t.Fatalf("IsLabel(%q) = %v, but ValidateSlug says %v", s, !label, err)
		}
		if err != nil {
			if !errors.Is(err, tenancy.ErrInvalidSlug) && !errors.Is(err, tenancy.ErrReservedSlug) {
				t.Fatalf("ValidateSlug(%q) = %v: neither sentinel", s, err)
			}
			return
		}
		// A valid slug is a lower-case DNS label.
		if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || strings.ToLower(s) != s {
			t.Fatalf("ValidateSlug(%q) accepted a non-label", s)
		}
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Fatalf("ValidateSlug(%q) accepted %q", s, r)
			}
		}
	})
}

func TestParse(t *testing.T) {
	t.Parallel()
	if iso, err := tenancy.ParseIsolation("schema"); err != nil || iso != tenancy.IsolationSchema {
		t.Errorf("ParseIsolation(schema) = %q, %v", iso, err)
	}
	if _, err := tenancy.ParseIsolation("rows"); !errors.Is(err, tenancy.ErrInvalidIsolation) {
		t.Errorf("ParseIsolation(rows) = %v, want ErrInvalidIsolation", err)
	}
	if st, err := tenancy.ParseStatus("suspended"); err != nil || st != tenancy.StatusSuspended {
		t.Errorf("ParseStatus(suspended) = %q, %v", st, err)
	}
	if _, err := tenancy.ParseStatus("paused"); !errors.Is(err, tenancy.ErrInvalidStatus) {
		t.Errorf("ParseStatus(paused) = %v, want ErrInvalidStatus", err)
	}
}

func TestTenantErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status tenancy.Status
		want   error
	}{
		{tenancy.StatusActive, nil},
		{tenancy.StatusSuspended, tenancy.ErrTenantSuspended},
		{tenancy.StatusDeleted, tenancy.ErrTenantNotFound},
		{tenancy.StatusProvisioning, tenancy.ErrTenantNotReady},
		{"", tenancy.ErrTenantNotFound},
	}
	for _, tt := range tests {
		if got := (&tenancy.Tenant{Status: tt.status}).Err(); got != tt.want {
			t.Errorf("status %q: Err() = %v, want %v", tt.status, got, tt.want)
		}
	}
	var nilTenant *tenancy.Tenant
	if got := nilTenant.Err(); got != tenancy.ErrNoTenant {
		t.Errorf("nil tenant: Err() = %v, want ErrNoTenant", got)
	}
}
