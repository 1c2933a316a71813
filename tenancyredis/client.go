package tenancyredis

import (
	"fmt"
	"runtime"
	"strings"
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
	requestPathTimeouts(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.PoolTimeout)
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

// Connect returns a client for url with NewClient's timeouts: redis:// or rediss:// is one server
// (NewClient); redis+cluster:// or rediss+cluster:// is a Redis Cluster (or Valkey cluster) given by
// seed nodes — comma-separated in the URL's host, redis+cluster://10.0.0.1:7000,10.0.0.2:7000, or
// as go-redis's addr= parameters. Every key the toolkit keeps of a tenant carries the tenant in a
// {hash tag}, so each script and each operation works on one slot.
func Connect(url string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok || (scheme != "redis+cluster" && scheme != "rediss+cluster") {
		return NewClient(url)
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	seeds := strings.Split(hosts, ",")
	if seeds[0] == "" {
		return nil, fmt.Errorf("tenancyredis: a cluster URL names at least one node: %s://host:port[,host:port…]", scheme)
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" && path != "/0" {
		return nil, fmt.Errorf("tenancyredis: a Redis Cluster has only database 0, not %s", strings.TrimPrefix(path, "/"))
	}
	params := []string{}
	if query != "" {
		params = append(params, query)
	}
	for _, seed := range seeds[1:] {
		params = append(params, "addr="+seed)
	}
	u := strings.TrimSuffix(scheme, "+cluster") + "://" + userinfo + seeds[0]
	if len(params) > 0 {
		u += "?" + strings.Join(params, "&")
	}
	opts, err := redis.ParseClusterURL(u)
	if err != nil {
		return nil, fmt.Errorf("tenancyredis: %w", err)
	}
	requestPathTimeouts(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.PoolTimeout)
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1 // as NewClient; MOVED and ASK redirections are followed still (MaxRedirects)
	return redis.NewClusterClient(opts), nil
}

// requestPathTimeouts sets the timeouts a URL left at go-redis's defaults (or unset) to ones fit
// for a request path: milliseconds, not seconds.
func requestPathTimeouts(dial, read, write, pool *time.Duration) {
	if *dial == 0 || *dial == 5*time.Second {
		*dial = 250 * time.Millisecond
	}
	if *read == 0 || *read == 3*time.Second {
		*read = 100 * time.Millisecond
	}
	if *write == 0 || *write == 3*time.Second {
		*write = 100 * time.Millisecond
	}
	if *pool == 0 {
		*pool = 100 * time.Millisecond
	}
}
