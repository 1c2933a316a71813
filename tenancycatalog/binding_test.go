package tenancycatalog

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// Proof is HMAC-SHA256 of the id under the key the pads come from, whatever the id's length.
func TestProofIsHMAC(t *testing.T) {
	k, err := newBindingKey()
	if err != nil {
		t.Fatal(err)
	}
	var raw [64]byte
	for i := range raw {
		raw[i] = k.inner[i] ^ 0x36
	}
	for _, id := range []string{"", "8e413113-e204-4d30-9569-f4429afe5e4a", strings.Repeat("x", 64), strings.Repeat("y", 200)} {
		m := hmac.New(sha256.New, raw[:])
		m.Write([]byte(id))
		if want := hex.EncodeToString(m.Sum(nil)); k.Proof(id) != want {
			t.Errorf("Proof(%d chars) = %s, want %s", len(id), k.Proof(id), want)
		}
	}
	if k2, _ := newBindingKey(); k2.Proof("a") == k.Proof("a") {
		t.Error("two random keys give the same proof")
	}
}
