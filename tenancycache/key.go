package tenancycache

import (
	"errors"
	"strings"
)

// EscapeTenant writes a tenant ID so that it contains no brace and no colon: '%', '{', '}' and ':'
// become %25, %7B, %7D and %3A. It is injective, so the escaped ID can delimit a key and serve as
// a Redis Cluster hash tag.
func EscapeTenant(tenant string) string {
	if !strings.ContainsAny(tenant, "%{}:") {
		return tenant
	}
	var b strings.Builder
	for i := 0; i < len(tenant); i++ {
		switch c := tenant[i]; c {
		case '%':
			b.WriteString("%25")
		case '{':
			b.WriteString("%7B")
		case '}':
			b.WriteString("%7D")
		case ':':
			b.WriteString("%3A")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Key is the stored form of (tenant, key): "{" + EscapeTenant(tenant) + "}:" + key. No two
// (tenant, key) pairs share it, whatever bytes they hold — the reference article's
// prefix:tenant:key lets tenant "a:b" with key "c" and tenant "a" with key "b:c" collide; here the
// tenant ends at the only closing brace. SplitKey inverts it.
func Key(tenant, key string) string { return "{" + EscapeTenant(tenant) + "}:" + key }

var errNotAKey = errors.New("tenancycache: not a key made by Key")

// SplitKey returns the tenant and key that Key joined.
func SplitKey(stored string) (tenant, key string, err error) {
	rest, ok := strings.CutPrefix(stored, "{")
	if !ok {
		return "", "", errNotAKey
	}
	esc, key, ok := strings.Cut(rest, "}:")
	if !ok {
		return "", "", errNotAKey
	}
	var b strings.Builder
	for i := 0; i < len(esc); i++ {
		c := esc[i]
		switch {
		case c == '{' || c == '}' || c == ':':
			return "", "", errNotAKey
		case c != '%':
			b.WriteByte(c)
			continue
		case i+2 >= len(esc):
			return "", "", errNotAKey
		}
		switch esc[i+1 : i+3] {
		case "25":
			b.WriteByte('%')
		case "7B":
			b.WriteByte('{')
		case "7D":
			b.WriteByte('}')
		case "3A":
			b.WriteByte(':')
		default:
			return "", "", errNotAKey
		}
		i += 2
	}
	return b.String(), key, nil
}
