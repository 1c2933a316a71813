package tenancycatalog_test

import (
	"context"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/tenancytest"
)

// An operator session lives until it expires, is left idle too long, or ends; another session is
// not touched by either.
func TestOperatorSessions(t *testing.T) {
	t.Parallel()
	_, c := tenancytest.NewCatalog(t)
	ctx := context.Background()
	live, expired, ended := []byte("live-session-secret-of-32-bytes!"), []byte("expired-session-secret-32-bytes!"), []byte("ended-session-secret-of-32-byte!")
	for secret, until := range map[string]time.Time{string(live): time.Now().Add(time.Hour), string(expired): time.Now().Add(-time.Second),
		string(ended): time.Now().Add(time.Hour)} {
		if err := c.StartOperatorSession(ctx, []byte(secret), until); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.EndOperatorSession(ctx, ended); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	for name, want := range map[string]bool{"live": true, "expired": false, "ended": false, "never started": false} {
		secret := map[string][]byte{"live": live, "expired": expired, "ended": ended, "never started": []byte("nobody")}[name]
		if ok, err := c.OperatorSession(ctx, secret, time.Hour); err != nil || ok != want {
			t.Fatalf("%s session: %v, %v; want %v", name, ok, err, want)
		}
	}
	if ok, err := c.OperatorSession(ctx, live, 10*time.Millisecond); err != nil || ok {
		t.Fatalf("a session idle longer than allowed: %v, %v; want refused", ok, err)
	}
}
