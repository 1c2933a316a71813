package clock

import (
	"testing"
	"time"
)

func TestNowIsCurrent(t *testing.T) {
	for range 3 {
		before := time.Now().UnixNano()
		got := Now()
		after := time.Now().UnixNano()
		// The first read sets the time itself; later reads may lag by a tick and a scheduling delay.
		if got > after || got < before-int64(100*time.Millisecond) {
			t.Fatalf("Now() = %d, want within [%d-100ms, %d]", got, before, after)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNowAdvances(t *testing.T) {
	first := Now()
	deadline := time.Now().Add(5 * time.Second)
	for Now() == first {
		if time.Now().After(deadline) {
			t.Fatal("the clock did not advance")
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkNow(b *testing.B) {
	for range b.N {
		Now()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for range b.N {
		time.Now()
	}
}
