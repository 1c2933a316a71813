package tenancyredis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy/internal/clock"
	"github.com/gotenancy/tenancy/tenancyrate"
)

// gcraScript is tenancyrate's GCRA, in microseconds, on Redis's own clock (TIME), so application
// clocks cannot skew it. One key, one round trip (EVALSHA). It returns {allowed, reset_after_us,
// retry_after_us}; the state is stored only when the events are allowed, and expires when a new
// key would behave the same.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * n
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, new_tat - now, 0}
`)

// FailurePolicy is what the Redis limiter decides while Redis cannot answer.
type FailurePolicy int

const (
	// FallbackLocal decides in process memory with the limit divided by LimiterConfig.Instances,
	// so that the instances together allow about the limit. The default.
	FallbackLocal FailurePolicy = iota
	// FailOpen allows every request: availability over enforcement.
	FailOpen
	// FailClosed refuses every request: enforcement over availability.
	FailClosed
)

// LimiterConfig configures a Limiter. A nil *LimiterConfig means the defaults.
type LimiterConfig struct {
	// Prefix starts every key. Defaults to "tenancy:rl:".
	Prefix string
	// OnFailure is the policy while Redis cannot answer. Defaults to FallbackLocal.
	OnFailure FailurePolicy
	// Instances is how many service instances share the limit, for FallbackLocal. Defaults to 1.
	Instances int
	// Timeout bounds one decision's round trip. Defaults to 50 milliseconds.
	Timeout time.Duration
	// RetryAfter is how long after a failure Redis is left alone (decisions follow OnFailure)
	// before it is asked again, so an outage does not cost every request a timeout. Defaults to
	// one second.
	RetryAfter time.Duration
}

// Limiter is a distributed GCRA limiter on Redis, for limits shared by many service instances.
// Keys carry a {hash tag}, so it works on Redis Cluster and Valkey.
type Limiter struct {
	rdb       redis.Scripter
	prefix    string
	policy    FailurePolicy
	instances int
	timeout   time.Duration
	retry     int64
	local     *tenancyrate.MemoryLimiter

	downUntil atomic.Int64 // unix nanoseconds: Redis is not asked before then
	failures  atomic.Uint64
	fallbacks atomic.Uint64
}

var _ tenancyrate.Limiter = (*Limiter)(nil)

// NewLimiter returns a limiter on rdb (a *redis.Client, *redis.ClusterClient or any
// redis.UniversalClient). Use NewClient for timeouts fit for request paths.
func NewLimiter(rdb redis.Scripter, cfg *LimiterConfig) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("tenancyredis: NewLimiter needs a Redis client")
	}
	l := &Limiter{rdb: rdb, prefix: "tenancy:rl:", instances: 1, timeout: 50 * time.Millisecond, retry: int64(time.Second)}
	if cfg != nil {
		if cfg.Instances < 0 || cfg.Timeout < 0 || cfg.RetryAfter < 0 {
			return nil, errors.New("tenancyredis: LimiterConfig fields must not be negative")
		}
		if cfg.Prefix != "" {
			l.prefix = cfg.Prefix
		}
		l.policy = cfg.OnFailure
		if cfg.Instances > 0 {
			l.instances = cfg.Instances
		}
		if cfg.Timeout > 0 {
			l.timeout = cfg.Timeout
		}
		if cfg.RetryAfter > 0 {
			l.retry = int64(cfg.RetryAfter)
		}
	}
	local, err := tenancyrate.NewMemoryLimiter(nil)
	if err != nil {
		return nil, err
	}
	l.local = local
	return l, nil
}

// Allow implements tenancyrate.Limiter.
func (l *Limiter) Allow(ctx context.Context, key string, limit tenancyrate.Limit) (tenancyrate.Result, error) {
	return l.AllowN(ctx, key, limit, 1)
}

// AllowN implements tenancyrate.Limiter. While Redis cannot answer, the decision follows the
// failure policy and is counted (Stats); the error is then nil. Enforcement on Redis resumes by
// itself when Redis answers again.
func (l *Limiter) AllowN(ctx context.Context, key string, limit tenancyrate.Limit, n int) (tenancyrate.Result, error) {
	if limit.Check() != nil || n < 1 {
		return l.local.AllowN(ctx, key, limit, n) // the memory limiter words the error
	}
	if n > limit.Burst {
		return tenancyrate.Result{Limit: limit}, nil
	}
	if clock.Now() < l.downUntil.Load() {
		return l.onFailure(ctx, key, limit, n)
	}
	interval := max(1, limit.Period.Microseconds()/int64(limit.Rate))
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	vals, err := gcraScript.Run(rctx, l.rdb, []string{l.Key(key, limit)}, interval, interval*int64(limit.Burst), n).Int64Slice()
	cancel()
	if err != nil || len(vals) != 3 {
		if ctx.Err() != nil {
			return tenancyrate.Result{}, ctx.Err() // the caller gave up: not Redis's failure
		}
		l.failures.Add(1)
		l.downUntil.Store(clock.Now() + l.retry)
		return l.onFailure(ctx, key, limit, n)
	}
	res := tenancyrate.Result{Limit: limit, Allowed: vals[0] == 1,
		ResetAfter: time.Duration(vals[1]) * time.Microsecond, RetryAfter: time.Duration(vals[2]) * time.Microsecond}
	if headroom := interval*int64(limit.Burst) - vals[1]; headroom > 0 {
		res.Remaining = int(headroom / interval)
	}
	return res, nil
}

// Forget drops key's state under limit: the key starts afresh.
func (l *Limiter) Forget(ctx context.Context, key string, limit tenancyrate.Limit) error {
	if c, ok := l.rdb.(interface {
		Del(context.Context, ...string) *redis.IntCmd
	}); ok {
		return c.Del(ctx, l.Key(key, limit)).Err()
	}
	return errors.New("tenancyredis: the client cannot delete keys")
}

// Key returns the Redis key that holds key's state under limit: the prefix, the key in a hash tag,
// and the limit — when a tenant's limit changes, its state starts afresh under the new one.
func (l *Limiter) Key(key string, limit tenancyrate.Limit) string {
	b := make([]byte, 0, len(l.prefix)+len(key)+40)
	b = append(append(append(b, l.prefix...), '{'), key...)
	b = strconv.AppendInt(append(b, "}:"...), int64(limit.Rate), 10)
	b = strconv.AppendInt(append(b, '/'), int64(limit.Period), 10)
	b = strconv.AppendInt(append(b, ",burst="...), int64(limit.Burst), 10)
	return string(b)
}

func (l *Limiter) onFailure(ctx context.Context, key string, limit tenancyrate.Limit, n int) (tenancyrate.Result, error) {
	l.fallbacks.Add(1)
	switch l.policy {
	case FailOpen:
		return tenancyrate.Result{Allowed: true, Limit: limit, Remaining: limit.Burst - n}, nil
	case FailClosed:
		return tenancyrate.Result{Limit: limit, RetryAfter: time.Duration(l.retry)}, nil
	}
	share := limit
	share.Rate = max(1, limit.Rate/l.instances)
	share.Burst = max(1, limit.Burst/l.instances)
	if n > share.Burst {
		return tenancyrate.Result{Limit: limit}, nil
	}
	return l.local.AllowN(ctx, key, share, n)
}

// LimiterStats counts the limiter's trouble with Redis.
type LimiterStats struct {
	RedisFailures uint64 `json:"redis_failures"` // round trips that failed or timed out
	Fallbacks     uint64 `json:"fallbacks"`      // decisions taken by the failure policy instead of Redis
}

// Stats returns the counters.
func (l *Limiter) Stats() LimiterStats {
	return LimiterStats{RedisFailures: l.failures.Load(), Fallbacks: l.fallbacks.Load()}
}

// String describes the policy, for logs.
func (p FailurePolicy) String() string {
	switch p {
	case FallbackLocal:
		return "fallback-local"
	case FailOpen:
		return "fail-open"
	case FailClosed:
		return "fail-closed"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}
