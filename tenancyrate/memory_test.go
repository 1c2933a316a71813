package tenancyrate_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancytest"
)

func TestMemoryLimiterSuite(t *testing.T) {
	t.Parallel()
	tenancytest.LimiterSuite(t, func(t *testing.T) tenancyrate.Limiter {
		l, err := tenancyrate.NewMemoryLimiter(nil)
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// GCRA to the nanosecond, with injected time.
func TestMemoryLimiterExact(t *testing.T) {
	t.Parallel()
	l, _ := tenancyrate.NewMemoryLimiter(nil)
	t0 := time.Unix(1_700_000_000, 0)
	limit := tenancyrate.Limit{Rate: 10, Period: time.Second, Burst: 3} // one event per 100ms, 3 at once
	at := func(d time.Duration, n int) tenancyrate.Result {
		t.Helper()
		r, err := l.AllowAt(t0.Add(d), "k", limit, n)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	want := func(got tenancyrate.Result, allowed bool, remaining int, retry, reset time.Duration) {
		t.Helper()
		if got.Allowed != allowed || got.Remaining != remaining || got.RetryAfter != retry || got.ResetAfter != reset {
			t.Fatalf("got %+v; want allowed=%v remaining=%d retry=%v reset=%v", got, allowed, remaining, retry, reset)
		}
	}
	want(at(0, 1), true, 2, 0, 100*time.Millisecond)
	want(at(0, 1), true, 1, 0, 200*time.Millisecond)
	want(at(0, 1), true, 0, 0, 300*time.Millisecond)
	want(at(0, 1), false, 0, 100*time.Millisecond, 300*time.Millisecond) // burst spent
	want(at(99*time.Millisecond, 1), false, 0, time.Millisecond, 201*time.Millisecond)
	want(at(100*time.Millisecond, 1), true, 0, 0, 300*time.Millisecond) // one came back
	want(at(150*time.Millisecond, 2), false, 0, 150*time.Millisecond, 250*time.Millisecond)
	// Steady rate: one event every 100ms is always allowed.
	for i := 2; i < 20; i++ {
		if r := at(time.Duration(i)*100*time.Millisecond, 1); !r.Allowed {
			t.Fatalf("steady event %d refused: %+v", i, r)
		}
	}
	// After a long pause the full burst is back.
	want(at(time.Hour, 3), true, 0, 0, 300*time.Millisecond)
}

// A million distinct keys leave at most the cap's worth of memory behind: the keys (Len) and
// the maps that hold them, whose buckets Len does not see, so the heap is measured. The heap is
// the process's, and the package's other tests allocate and free in it at the same time; so the
// measurement runs alone, in a child process of the test binary that runs only this test.
func TestMemoryLimiterIsBounded(t *testing.T) {
	if os.Getenv(aloneEnv) == "" {
		t.Parallel()
		runAlone(t)
		return
	}
	l, _ := tenancyrate.NewMemoryLimiter(&tenancyrate.MemoryConfig{MaxKeys: 64 * 1000})
	t0 := time.Unix(1_700_000_000, 0)
	limit := tenancyrate.PerHour(10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keys := 1_000_000
	if testing.Short() {
		keys = 200_000
	}
	buf := []byte("tenant-0000000")
	for i := range keys {
		for j, k := len(buf)-1, i; j >= len(buf)-7; j, k = j-1, k/10 {
			buf[j] = byte('0' + k%10)
		}
		if r, _ := l.AllowAt(t0.Add(time.Duration(i)), string(buf), limit, 1); !r.Allowed {
			t.Fatalf("new key %q was refused: %+v; want it allowed", buf, r)
		}
	}
	if n := l.Len(); n > 64*1000 {
		t.Fatalf("%d distinct keys left %d in memory; want at most the cap, 64000", keys, n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if grown > 8<<20 {
		t.Fatalf("heap grew by %d bytes for a cap of 64,000 keys; want at most 8 MiB", grown)
	}
	t.Logf("%d distinct keys: %d kept, the heap grew by %d bytes", keys, l.Len(), grown)
	// The control: a key seen recently is still limited.
	for range 9 {
		l.AllowAt(t0.Add(time.Duration(keys)), "hot", limit, 1)
	}
	if r, _ := l.AllowAt(t0.Add(time.Duration(keys)), "hot", limit, 2); r.Allowed {
		t.Fatal("a limited key forgot its state: after 9 events under 10/h, 2 more were allowed at once; want them refused")
	}
}

func TestMemoryLimiterDoesNotAllocate(t *testing.T) {
	l, _ := tenancyrate.NewMemoryLimiter(nil)
	limit := tenancyrate.PerSecond(1_000_000)
	ctx := t.Context()
	l.Allow(ctx, "tenant", limit)
	if n := testing.AllocsPerRun(1000, func() { l.Allow(ctx, "tenant", limit) }); n != 0 {
		t.Fatalf("%v allocations per decision", n)
	}
}

func TestParseLimit(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]tenancyrate.Limit{
		"100/min":          tenancyrate.PerMinute(100),
		"5/s":              tenancyrate.PerSecond(5),
		"1000/h":           tenancyrate.PerHour(1000),
		"50/10s":           {Rate: 50, Period: 10 * time.Second, Burst: 50},
		"500/min,burst=50": {Rate: 500, Period: time.Minute, Burst: 50},
	} {
		got, err := tenancyrate.ParseLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if back, err := tenancyrate.ParseLimit(got.String()); err != nil || back != got {
			t.Errorf("%q does not round-trip through String (%q): %+v, %v", in, got.String(), back, err)
		}
	}
	for _, bad := range []string{"", "100", "0/min", "-5/s", "x/min", "5/fortnight", "5/min,burst=0", "5/min,bursts=3", "5/-1s",
		"2000000000/s", "1/h,burst=999999999"} { // faster than a nanosecond an event; a burst spanning 114,000 years
		if _, err := tenancyrate.ParseLimit(bad); err == nil {
			t.Errorf("ParseLimit(%q) accepted", bad)
		}
	}
	// The limiter refuses such limits built by hand, with an error, rather than dividing by zero
	// or overflowing; the largest sound ones work.
	l, _ := tenancyrate.NewMemoryLimiter(nil)
	for _, bad := range []tenancyrate.Limit{tenancyrate.PerSecond(1 << 30), {Rate: 1, Period: time.Hour, Burst: 1 << 40}} {
		if _, err := l.Allow(context.Background(), "k", bad); !errors.Is(err, tenancyrate.ErrInvalidLimit) {
			t.Errorf("Allow under %+v: %v, want ErrInvalidLimit", bad, err)
		}
	}
	for _, good := range []tenancyrate.Limit{tenancyrate.PerSecond(1_000_000_000), {Rate: 1, Period: time.Hour, Burst: 700_000}} {
		if res, err := l.Allow(context.Background(), "k", good); err != nil || !res.Allowed {
			t.Errorf("Allow under %+v: %+v, %v; want allowed", good, res, err)
		}
	}
}

func TestMemoryLimiterForget(t *testing.T) {
	t.Parallel()
	l, _ := tenancyrate.NewMemoryLimiter(nil)
	tenancytest.ForgetterSuite(t, l)
}

// aloneEnv is set in the environment of a child process started by runAlone.
const aloneEnv = "TENANCYRATE_TEST_ALONE"

// runAlone runs t's test again in a child process of the test binary that runs nothing else, and
// fails t unless it passed there. A test calls it when aloneEnv is not set, and otherwise does
// what it measures.
func runAlone(t *testing.T) {
	t.Helper()
	args := []string{"-test.run=^" + t.Name() + "$", "-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	if deadline, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(deadline).String())
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), aloneEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s alone in a child process: %v; want it to pass. Its output:\n%s", t.Name(), err, out)
	}
	// A child that matched no test would pass too, having checked nothing.
	if !strings.Contains(string(out), "--- PASS: "+t.Name()+" (") {
		t.Fatalf("the child process did not run %s; want it to pass there. Its output:\n%s", t.Name(), out)
	}
}
