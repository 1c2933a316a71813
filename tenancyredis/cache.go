package tenancyredis

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy/tenancycache"
)

// Keys of a tenant, all in its hash tag:
//
//	<prefix>{<tenant>}:gen            the tenant's generation (absent: 0)
//	<prefix>{<tenant>}:<gen>:<key>    an entry, under the generation it was set in
//
// FlushTenant increments the generation: one round trip and constant work on the server,
// whatever the keyspace holds; entries of older generations are never read again and expire by
// their TTL. Every value starts with its tenant, checked on every read.

var cacheGet = redis.NewScript(`
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}
`)

var cacheSet = redis.NewScript(`
local gen = ARGV[5]
if gen == '' then gen = redis.call('GET', KEYS[1]) or '0' end
redis.call('SET', ARGV[1] .. gen .. ':' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
return gen
`)

var cacheDel = redis.NewScript(`
local gen = redis.call('GET', KEYS[1]) or '0'
return redis.call('DEL', ARGV[1] .. gen .. ':' .. ARGV[2])
`)

// CacheConfig configures a Cache. A nil *CacheConfig means the defaults.
type CacheConfig struct {
	// Prefix starts every key. Defaults to "tenancy:cache:".
	Prefix string
	// DefaultTTL applies when Set is given none; every entry expires. Defaults to one hour.
	DefaultTTL time.Duration
}

// Cache is a tenancycache.Store on Redis: a Get, Set or FlushTenant is one round trip.
type Cache struct {
	rdb        cacheClient
	prefix     string
	defaultTTL time.Duration
	mismatches atomic.Uint64
}

var _ tenancycache.Store = (*Cache)(nil)

// cacheClient is what Cache needs of a client: *redis.Client, *redis.ClusterClient and
// redis.UniversalClient have it.
type cacheClient interface {
	redis.Scripter
	Del(ctx context.Context, keys ...string) *redis.IntCmd
	Incr(ctx context.Context, key string) *redis.IntCmd
}

// NewCache returns a cache on rdb (use NewClient for request-path timeouts).
func NewCache(rdb cacheClient, cfg *CacheConfig) (*Cache, error) {
	if rdb == nil {
		return nil, errors.New("tenancyredis: NewCache needs a Redis client")
	}
	c := &Cache{rdb: rdb, prefix: "tenancy:cache:", defaultTTL: time.Hour}
	if cfg != nil {
		if cfg.DefaultTTL < 0 {
			return nil, errors.New("tenancyredis: DefaultTTL must not be negative")
		}
		if cfg.Prefix != "" {
			c.prefix = cfg.Prefix
		}
		if cfg.DefaultTTL > 0 {
			c.defaultTTL = cfg.DefaultTTL
		}
	}
	return c, nil
}

// base is the tenant's key prefix: "<prefix>{<escaped tenant>}:".
func (c *Cache) base(tenant string) string {
	return c.prefix + "{" + tenancycache.EscapeTenant(tenant) + "}:"
}

// Get implements tenancycache.Store. A Redis error is returned as the error it is, never as
// another tenant's value; a value that names another tenant is a miss and is deleted.
func (c *Cache) Get(ctx context.Context, tenant, key string) ([]byte, uint64, bool, error) {
	base := c.base(tenant)
	res, err := cacheGet.Run(ctx, c.rdb, []string{base + "gen"}, base, key).Slice()
	if err != nil {
		return nil, 0, false, err
	}
	if len(res) < 1 {
		return nil, 0, false, errors.New("tenancyredis: malformed cache reply")
	}
	genStr, _ := res[0].(string)
	gen, err := strconv.ParseUint(genStr, 10, 64)
	if err != nil {
		return nil, 0, false, errors.New("tenancyredis: malformed cache generation")
	}
	if len(res) < 2 || res[1] == nil {
		return nil, gen + 1, false, nil
	}
	raw, _ := res[1].(string)
	value, owner, ok := unwrap([]byte(raw))
	if !ok || owner != tenant {
		c.mismatches.Add(1)
		c.rdb.Del(context.WithoutCancel(ctx), base+genStr+":"+key)
		return nil, gen + 1, false, nil
	}
	return value, gen + 1, true, nil
}

// Set implements tenancycache.Store.
func (c *Cache) Set(ctx context.Context, tenant, key string, value []byte, ttl time.Duration, gen uint64) error {
	if ttl <= 0 {
		ttl = c.defaultTTL
	}
	base := c.base(tenant)
	g := ""
	if gen > 0 {
		g = strconv.FormatUint(gen-1, 10)
	}
	return cacheSet.Run(ctx, c.rdb, []string{base + "gen"}, base, key, wrap(tenant, value),
		max(1, ttl.Milliseconds()), g).Err()
}

// Delete implements tenancycache.Store.
func (c *Cache) Delete(ctx context.Context, tenant, key string) error {
	base := c.base(tenant)
	return cacheDel.Run(ctx, c.rdb, []string{base + "gen"}, base, key).Err()
}

// FlushTenant implements tenancycache.Store: one INCR.
func (c *Cache) FlushTenant(ctx context.Context, tenant string) error {
	return c.rdb.Incr(ctx, c.base(tenant)+"gen").Err()
}

// Mismatches counts values found under a tenant's key that named another tenant (and were
// deleted): it stays 0 unless something wrote into the cache's keys by other means.
func (c *Cache) Mismatches() uint64 { return c.mismatches.Load() }

// wrap prefixes value with its tenant: uvarint length, then the tenant.
func wrap(tenant string, value []byte) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(tenant)+len(value)), uint64(len(tenant)))
	return append(append(b, tenant...), value...)
}

func unwrap(b []byte) (value []byte, tenant string, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, "", false
	}
	return b[k+int(n):], string(b[k : k+int(n)]), true
}
