package lockkey

import "testing"

func TestKeysAreDistinct(t *testing.T) {
	seen := map[int64]string{}
	for name, key := range All {
		if other, ok := seen[key]; ok {
			t.Fatalf("%s and %s share the advisory-lock key %#x", name, other, key)
		}
		seen[key] = name
	}
	if len(seen) != 6 {
		t.Fatalf("%d keys, want 6", len(seen))
	}
}
