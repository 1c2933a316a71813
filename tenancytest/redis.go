package tenancytest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RoundTrips is a go-redis hook that counts what a client sends: a command, or a pipeline in one
// write. Add it with client.AddHook and read N.
type RoundTrips struct{ n atomic.Int64 }

// N returns the round trips counted so far.
func (c *RoundTrips) N() int64 { return c.n.Load() }

// Reset sets the count back to zero.
func (c *RoundTrips) Reset() { c.n.Store(0) }

func (c *RoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *RoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}

func (c *RoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(1); return next(ctx, cmds) }
}
