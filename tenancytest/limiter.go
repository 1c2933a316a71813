package tenancytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/tenancyrate"
)

// LimiterSuite checks the behaviour every tenancyrate.Limiter must have, whatever keeps its
// state: bursts, all-or-nothing AllowN, independent keys, remaining and retry figures, and exact
// counting under concurrency. newLimiter returns a limiter whose keys no other test shares. The
// limits used are hours long, so the suite holds on a real clock.
func LimiterSuite(t *testing.T, newLimiter func(t *testing.T) tenancyrate.Limiter) {
	ctx := context.Background()
	hourly := tenancyrate.PerHour(5)

	t.Run("burst then refused", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		for i := range 5 {
			r, err := l.Allow(ctx, "k", hourly)
			if err != nil || !r.Allowed || r.Remaining != 4-i {
				t.Fatalf("event %d: %+v, %v; want allowed with %d remaining", i, r, err, 4-i)
			}
		}
		r, err := l.Allow(ctx, "k", hourly)
		if err != nil || r.Allowed || r.Remaining != 0 {
			t.Fatalf("sixth event: %+v, %v; want refused", r, err)
		}
		// One event costs 12 minutes: the next is allowed within that, give or take the clock.
		if r.RetryAfter <= 11*time.Minute || r.RetryAfter > 12*time.Minute {
			t.Fatalf("RetryAfter %v, want about 12m", r.RetryAfter)
		}
		if r.ResetAfter <= 59*time.Minute || r.ResetAfter > time.Hour {
			t.Fatalf("ResetAfter %v, want about 1h", r.ResetAfter)
		}
	})
	t.Run("keys are independent", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		for range 5 {
			l.Allow(ctx, "a", hourly)
		}
		if r, _ := l.Allow(ctx, "a", hourly); r.Allowed {
			t.Fatal("control: a is exhausted")
		}
		for _, k := range []string{"b", "a:", "A", "{a}", "a\x00"} {
			if r, err := l.Allow(ctx, k, hourly); err != nil || !r.Allowed || r.Remaining != 4 {
				t.Fatalf("%q after a was exhausted: %+v, %v", k, r, err)
			}
		}
	})
	t.Run("AllowN is all or nothing", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		if r, err := tenancyrate.Limiter(l).AllowN(ctx, "k", hourly, 3); err != nil || !r.Allowed || r.Remaining != 2 {
			t.Fatalf("3 of 5: %+v, %v", r, err)
		}
		if r, _ := l.AllowN(ctx, "k", hourly, 3); r.Allowed {
			t.Fatalf("3 more of the 2 left was allowed: %+v", r)
		}
		if r, _ := l.AllowN(ctx, "k", hourly, 2); !r.Allowed || r.Remaining != 0 {
			t.Fatalf("the refused 3 consumed something: %+v", r)
		}
		if r, err := l.AllowN(ctx, "other", hourly, 6); err != nil || r.Allowed {
			t.Fatalf("more than the burst: %+v, %v; want refused", r, err)
		}
	})
	t.Run("invalid limits", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		for _, bad := range []tenancyrate.Limit{{}, {Rate: 1}, {Rate: 1, Period: time.Second}, {Rate: -1, Period: time.Second, Burst: 1}} {
			if _, err := l.Allow(ctx, "k", bad); !errors.Is(err, tenancyrate.ErrInvalidLimit) {
				t.Errorf("%+v: %v, want ErrInvalidLimit", bad, err)
			}
		}
		if _, err := l.AllowN(ctx, "k", hourly, 0); !errors.Is(err, tenancyrate.ErrInvalidLimit) {
			t.Errorf("n = 0: %v", err)
		}
	})
	t.Run("exact under concurrency", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		limit := tenancyrate.PerHour(50)
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := l.Allow(ctx, "shared", limit)
				if err != nil {
					t.Error(err)
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := allowed.Load(); n != 50 {
			t.Fatalf("200 concurrent requests under 50/h: %d allowed, want exactly 50", n)
		}
	})
	t.Run("many keys", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		for i := range 300 {
			if r, err := l.Allow(ctx, fmt.Sprintf("tenant-%d", i), hourly); err != nil || !r.Allowed {
				t.Fatalf("key %d: %+v, %v", i, r, err)
			}
		}
	})
}

// ForgetterSuite checks that Forget gives a key a fresh start and touches no other key.
func ForgetterSuite(t *testing.T, l interface {
	tenancyrate.Limiter
	tenancyrate.Forgetter
}) {
	ctx := context.Background()
	limit := tenancyrate.PerHour(2)
	for _, k := range []string{"gone", "kept"} {
		l.Allow(ctx, k, limit)
		l.Allow(ctx, k, limit)
		if r, _ := l.Allow(ctx, k, limit); r.Allowed {
			t.Fatalf("control: %s is exhausted", k)
		}
	}
	if err := l.Forget(ctx, "gone", limit); err != nil {
		t.Fatal(err)
	}
	if r, _ := l.Allow(ctx, "gone", limit); !r.Allowed {
		t.Fatal("a forgotten key is still limited")
	}
	if r, _ := l.Allow(ctx, "kept", limit); r.Allowed {
		t.Fatal("Forget freed another key")
	}
}
