package tenancytest

import (
	"sync"
	"time"
)

// Clock is a settable time source for the toolkit's Now options (tenancycache.LookupConfig.Now,
// tenancyrouter.Config.Now, MemoryConfig.Now), so tests move time instead of sleeping. The zero Clock
// starts at 2023-11-14 22:13:20 UTC.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		c.t = time.Unix(1_700_000_000, 0)
	}
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
