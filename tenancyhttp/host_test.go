package tenancyhttp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gotenancy/tenancy/tenancyhttp"
)

func TestNormalizeHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string // want "" means ErrInvalidHost
	}{
		{"acme.example.com", "acme.example.com"},
		{"ACME.Example.COM", "acme.example.com"},
		{"acme.example.com:8080", "acme.example.com"},
		{"acme.example.com.", "acme.example.com"},
		{"acme.example.com.:443", "acme.example.com"},
		{"acme.example.com:", "acme.example.com"},
		{"localhost", "localhost"},
		{"localhost:8080", "localhost"},
		{"bücher.example.com", "xn--bcher-kva.example.com"},
		{"BÜCHER.example.com", "xn--bcher-kva.example.com"},
		{"xn--bcher-kva.example.com", "xn--bcher-kva.example.com"},
		{"a-b.c", "a-b.c"},
		{"", ""},
		{".", ""},
		{":8080", ""},
		{"acme..example.com", ""},
		{".acme.example.com", ""},
		{"acme.example.com..", ""},
		{"-acme.example.com", ""},
		{"acme-.example.com", ""},
		{"acme_1.example.com", ""},
		{"acme example.com", ""},
		{"acme.example.com:80:80", ""},
		{"acme.example.com:http", ""},
		{"acme.example.com:123456", ""},
		{"acme.example.com:99999", ""},
		{"acme.example.com:65536", ""},
		{"acme.example.com:0", ""},
		{"acme.example.com:00000", ""},
		{"acme.example.com:65535", "acme.example.com"},
		{"acme.example.com:1", "acme.example.com"},
		{"127.0.0.1", ""},
		{"127.0.0.1:8080", ""},
		{"10.1", ""},
		{"0x7f.1", ""},
		{"[::1]", ""},
		{"[::1]:8080", ""},
		{"::1", ""},
		{"acme.example.com/evil", ""},
		{"acme.example.com\x00", ""},
		{"acme.example.com\r\nX: y", ""},
		{"\xff.example.com", ""},
		{"<script>.example.com", ""},
		{"user@acme.example.com", ""},
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},
		{strings.Repeat("abcdefghi.", 26) + "com", ""}, // 263 characters
	}
	for _, tt := range tests {
		got, err := tenancyhttp.NormalizeHost(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, tenancyhttp.ErrInvalidHost) {
				t.Errorf("NormalizeHost(%q) = %q, %v; want ErrInvalidHost", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeHostDoesNotAllocate(t *testing.T) {
	for _, h := range []string{"acme.example.com", "acme.localhost:8080"} {
		if n := testing.AllocsPerRun(100, func() { tenancyhttp.NormalizeHost(h) }); n != 0 {
			t.Errorf("NormalizeHost(%q) allocates %v times", h, n)
		}
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"acme.example.com", "ACME.example.com:8080", "bücher.de.", "[::1]:80", "1.2.3.4", "a..b", "xn--zz", "\u0130.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := tenancyhttp.NormalizeHost(in)
		if err != nil {
			if !errors.Is(err, tenancyhttp.ErrInvalidHost) {
				t.Fatalf("NormalizeHost(%q): %v does not wrap ErrInvalidHost", in, err)
			}
			return
		}
		// The result is a lower-case ASCII DNS name that is not an IP literal ...
		if h == "" || len(h) > 253 || strings.HasSuffix(h, ".") {
			t.Fatalf("NormalizeHost(%q) = %q", in, h)
		}
		labels := strings.Split(h, ".")
		for _, l := range labels {
			if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
				t.Fatalf("NormalizeHost(%q) = %q: bad label %q", in, h, l)
			}
			for _, c := range []byte(l) {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
					t.Fatalf("NormalizeHost(%q) = %q: bad byte %q", in, h, c)
				}
			}
		}
		if last := labels[len(labels)-1]; last[0] >= '0' && last[0] <= '9' {
			t.Fatalf("NormalizeHost(%q) = %q: looks like an IP literal", in, h)
		}
		// ... and normalizing is idempotent.
		if again, err := tenancyhttp.NormalizeHost(h); err != nil || again != h {
			t.Fatalf("NormalizeHost(%q) = %q, but NormalizeHost(%q) = %q, %v", in, h, h, again, err)
		}
	})
}
