package tenancyhttp

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalidHost means a Host (or X-Forwarded-Host) value is not a DNS host name: empty, malformed,
// an IP literal, or a label or name too long. Such a host never names a tenant.
var ErrInvalidHost = errors.New("tenancyhttp: invalid host")

// NormalizeHost turns a Host header value into the form tenants are looked up by: the port and one
// trailing dot removed, lower case, internationalized names in their ASCII (xn--) form, every label
// a DNS label (letters, digits, inner hyphens; 1 to 63 characters), at most 253 characters.
// IP literals (1.2.3.4, [::1]) and anything malformed return an error wrapping ErrInvalidHost.
//
// A host that is already normal (the usual case) is returned without allocating.
func NormalizeHost(raw string) (string, error) {
	h := raw
	if strings.HasPrefix(h, "[") {
		return "", fmt.Errorf("%w: IP literals name no tenant", ErrInvalidHost)
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		port := h[i+1:]
		if strings.IndexByte(port, ':') >= 0 {
			return "", fmt.Errorf("%w: IP literals name no tenant", ErrInvalidHost)
		}
		if !validPort(port) {
			return "", fmt.Errorf("%w: malformed port", ErrInvalidHost)
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if normal(h) {
		return h, nil
	}
	if h == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidHost)
	}
	switch asciiState(h) {
	case asciiLower:
	case asciiUpper:
		h = strings.ToLower(h)
	default:
		if !utf8.ValidString(h) {
			return "", fmt.Errorf("%w: not UTF-8", ErrInvalidHost)
		}
		a, err := idna.Lookup.ToASCII(h)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrInvalidHost, err)
		}
		h = a
		if asciiState(h) != asciiLower {
			return "", fmt.Errorf("%w: bad character", ErrInvalidHost)
		}
	}
	if err := checkLabels(h); err != nil {
		return "", err
	}
	return h, nil
}

// normal reports, in one pass, whether h is already a valid lower-case host name: the fast path.
// The slow path after it says why a host is not.
func normal(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	start := 0 // of the current label
	for i := 0; i <= len(h); i++ {
		if i == len(h) || h[i] == '.' {
			n := i - start
			if n == 0 || n > 63 || h[start] == '-' || h[i-1] == '-' {
				return false
			}
			if i == len(h) {
				return h[start] > '9' // a last label starting with a digit is an IP literal
			}
			start = i + 1
			continue
		}
		if c := h[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return false
}

// validPort reports whether p is a TCP port, 1 to 65535, or empty ("host:" is allowed by RFC 3986).
func validPort(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n >= 1 && n <= 65535
}

type hostChars int

const (
	asciiLower hostChars = iota // only a-z 0-9 - .
	asciiUpper                  // the same plus A-Z
	other                       // anything else: non-ASCII goes through IDNA, the rest fails there
)

func asciiState(s string) hostChars {
	st := asciiLower
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
		case 'A' <= c && c <= 'Z':
			st = asciiUpper
		default:
			return other
		}
	}
	return st
}

// checkLabels validates a lower-case ASCII host name.
func checkLabels(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("%w: longer than 253 characters", ErrInvalidHost)
	}
	last := ""
	for rest := h; ; {
		label, after, more := strings.Cut(rest, ".")
		switch {
		case label == "":
			return fmt.Errorf("%w: empty label", ErrInvalidHost)
		case len(label) > 63:
			return fmt.Errorf("%w: label longer than 63 characters", ErrInvalidHost)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("%w: label starts or ends with a hyphen", ErrInvalidHost)
		}
		last = label
		if !more {
			break
		}
		rest = after
	}
	if last[0] >= '0' && last[0] <= '9' {
		// No top-level domain starts with a digit: this is an IPv4 literal (or an attempt at one).
		return fmt.Errorf("%w: IP literals name no tenant", ErrInvalidHost)
	}
	return nil
}
