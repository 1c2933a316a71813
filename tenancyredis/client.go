package tenancyredis

import (
	"fmt"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient returns a client for a redis:// URL with timeouts fit for a request path: a Redis
// that hangs costs a request milliseconds, not go-redis's default seconds, and the policy for
// failures (LimiterConfig.OnFailure) applies at once. Settings in the URL win.
func NewClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("tenancyredis: %w", err)
	}
	if opts.DialTimeout == 5*time.Second { // go-redis's default: the URL did not set it
		opts.DialTimeout = 250 * time.Millisecond
	}
	if opts.ReadTimeout == 0 || opts.ReadTimeout == 3*time.Second {
		opts.ReadTimeout = 100 * time.Millisecond
	}
	if opts.WriteTimeout == 0 || opts.WriteTimeout == 3*time.Second {
		opts.WriteTimeout = 100 * time.Millisecond
	}
	if opts.PoolTimeout == 0 {
		opts.PoolTimeout = 100 * time.Millisecond
	}
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1 // a retry's backoff (8 to 512 ms) costs more than the failure policy
	if opts.DialerRetries == 0 {
		opts.DialerRetries, opts.DialerRetryTimeout = 1, 5*time.Millisecond // go-redis: 5 dials, 100 ms apart
	}
	if opts.PoolSize == 10*runtime.GOMAXPROCS(0) || opts.PoolSize == 0 {
		opts.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	return redis.NewClient(opts), nil
}
