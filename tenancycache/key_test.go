package tenancycache_test

import (
	"strings"
	"testing"

	"github.com/gotenancy/tenancy/tenancycache"
)

func TestKeyDoesNotCollide(t *testing.T) {
	t.Parallel()
	// The reference article's f"{prefix}:{tenant}:{key}" maps both to "cache:a:b:c".
	if tenancycache.Key("a:b", "c") == tenancycache.Key("a", "b:c") {
		t.Fatal("tenant a:b key c and tenant a key b:c collide")
	}
	for _, pair := range [][4]string{
		{"a}", "x", "a", "}x"}, {"a{", "b", "a", "{b"}, {"%7D", "k", "}", "k"}, {"", ":k", ":", "k"},
	} {
		if tenancycache.Key(pair[0], pair[1]) == tenancycache.Key(pair[2], pair[3]) {
			t.Errorf("(%q, %q) and (%q, %q) collide", pair[0], pair[1], pair[2], pair[3])
		}
	}
}

// Key is injective: SplitKey recovers every (tenant, key) exactly, and the hash tag holds the
// whole tenant and only it.
func FuzzKey(f *testing.F) {
	for _, s := range [][2]string{{"a:b", "c"}, {"a", "b:c"}, {"{x}", "}"}, {"%", "%25"}, {"", ""}, {"t\x00", "\xff"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, tenant, key string) {
		stored := tenancycache.Key(tenant, key)
		gotT, gotK, err := tenancycache.SplitKey(stored)
		if err != nil || gotT != tenant || gotK != key {
			t.Fatalf("Key(%q, %q) = %q splits into (%q, %q), %v", tenant, key, stored, gotT, gotK, err)
		}
		tag := stored[1:strings.IndexByte(stored, '}')]
		if tag != tenancycache.EscapeTenant(tenant) || strings.ContainsAny(tag, "{}:") {
			t.Fatalf("hash tag %q of %q", tag, stored)
		}
	})
}
