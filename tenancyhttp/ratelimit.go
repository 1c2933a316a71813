package tenancyhttp

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancyrate"
)

// RateLimitConfig configures RateLimit.
type RateLimitConfig struct {
	// Limiter decides; tenancyrate.MemoryLimiter for one instance, tenancyredis.Limiter for many.
	// Required.
	Limiter tenancyrate.Limiter
	// Policy picks each tenant's limit. Defaults to &tenancyrate.Policy{} (by plan, overridable
	// per tenant).
	Policy *tenancyrate.Policy
	// Logger receives limiter errors. Defaults to slog.Default().
	Logger *slog.Logger
}

// RateLimit returns middleware that limits each tenant's request rate. It goes after Middleware:
// the key is the resolved tenant's ID, never anything the client sent, so unknown tenants never
// reach it. Every response carries RateLimit-Policy and RateLimit headers
// (draft-ietf-httpapi-ratelimit-headers); a refused request gets 429 problem+json with
// Retry-After. A request without a tenant in its context is refused (400); a limiter error is 503.
func RateLimit(cfg *RateLimitConfig) (func(http.Handler) http.Handler, error) {
	if cfg == nil || cfg.Limiter == nil {
		return nil, errors.New("tenancyhttp: RateLimit needs a Limiter")
	}
	policy, log := cfg.Policy, cfg.Logger
	if policy == nil {
		policy = &tenancyrate.Policy{}
	}
	if log == nil {
		log = slog.Default()
	}
	policies := &policyHeaders{}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t, ok := tenancy.FromContext(r.Context())
			if !ok {
				cannedNoTenant.write(w)
				return
			}
			limit := policy.For(t)
			res, err := cfg.Limiter.Allow(r.Context(), t.ID, limit)
			if err != nil {
				log.ErrorContext(r.Context(), "tenancy: rate limiter failed", "err", err)
				WriteProblem(w, &Problem{Type: ProblemUnavailable, Title: "Service unavailable",
					Status: http.StatusServiceUnavailable, Detail: "The rate limiter cannot decide; try again.", RetryAfter: 1})
				return
			}
			// Two allocations: both headers' value slices in one (each capped, so an Add to one
			// cannot write into the other), and the RateLimit value; the policy's value is
			// formatted once per limit.
			var buf [64]byte
			b := append(buf[:0], `"tenant";r=`...)
			b = strconv.AppendInt(b, int64(res.Remaining), 10)
			b = append(b, ";t="...)
			b = strconv.AppendInt(b, int64(seconds(res.ResetAfter)), 10)
			vals := []string{policies.header(limit), string(b)}
			h := w.Header()
			h["Ratelimit-Policy"] = vals[0:1:1]
			h["Ratelimit"] = vals[1:2:2]
			if !res.Allowed {
				p := cannedRateLimited.p
				p.RetryAfter = max(1, seconds(res.RetryAfter))
				WriteProblem(w, &p)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

var cannedRateLimited = newCanned(Problem{Type: ProblemRateLimited, Title: "Too many requests",
	Status: http.StatusTooManyRequests, Detail: "This tenant's request rate is over its limit; retry after the time given."})

// policyHeaders formats the RateLimit-Policy value of each limit once: the plans' limits, and
// the first tenants' own (at most maxPolicyHeaders; others are formatted each time).
type policyHeaders struct {
	m sync.Map // tenancyrate.Limit -> string
	n atomic.Int32
}

const maxPolicyHeaders = 1024

func (p *policyHeaders) header(l tenancyrate.Limit) string {
	if v, ok := p.m.Load(l); ok {
		return v.(string)
	}
	v := `"tenant";q=` + strconv.Itoa(l.Burst) + ";w=" + strconv.Itoa(seconds(l.Period))
	if p.n.Load() < maxPolicyHeaders {
		if _, loaded := p.m.LoadOrStore(l, v); !loaded {
			p.n.Add(1)
		}
	}
	return v
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// ConcurrencyConfig configures ConcurrencyLimit.
type ConcurrencyConfig struct {
	// PerTenant is how many requests of one tenant may be in flight at once. Required.
	PerTenant int
	// MaxWait is how long a request over the limit waits for a slot before 503. Defaults to 100ms.
	MaxWait time.Duration
}

// ConcurrencyLimit returns middleware that keeps at most PerTenant requests of each tenant in
// flight (a bulkhead): a tenant flooding the service waits, then gets 503 problem+json with
// Retry-After, while other tenants keep their slots and their latency. It goes after Middleware.
func ConcurrencyLimit(cfg *ConcurrencyConfig) (func(http.Handler) http.Handler, error) {
	if cfg == nil || cfg.PerTenant < 1 {
		return nil, errors.New("tenancyhttp: ConcurrencyLimit needs PerTenant of at least 1")
	}
	wait := cfg.MaxWait
	if wait < 0 {
		return nil, errors.New("tenancyhttp: MaxWait must not be negative")
	}
	if wait == 0 {
		wait = 100 * time.Millisecond
	}
	b := &bulkhead{per: cfg.PerTenant, slots: map[string]*slots{}}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t, ok := tenancy.FromContext(r.Context())
			if !ok {
				cannedNoTenant.write(w)
				return
			}
			s := b.enter(t.ID)
			defer b.leave(t.ID, s)
			select {
			case s.ch <- struct{}{}:
			default:
				timer := time.NewTimer(wait)
				select {
				case s.ch <- struct{}{}:
					timer.Stop()
				case <-timer.C:
					cannedBusy.write(w)
					return
				case <-r.Context().Done():
					timer.Stop()
					return
				}
			}
			defer func() { <-s.ch }()
			next.ServeHTTP(w, r)
		})
	}, nil
}

var cannedBusy = newCanned(Problem{Type: ProblemTenantBusy, Title: "Too many requests in flight", Status: http.StatusServiceUnavailable,
	Detail: "This tenant has too many requests in progress; retry shortly.", RetryAfter: 1})

// bulkhead holds a semaphore per tenant with requests in flight or waiting; a tenant's entry goes
// when its last request does, so memory follows the tenants active now.
type bulkhead struct {
	mu    sync.Mutex
	per   int
	slots map[string]*slots
	free  []*slots // entries whose tenant's last request left (their channel empty), for reuse
}

// maxFreeSlots bounds the entries kept for reuse.
const maxFreeSlots = 64

type slots struct {
	ch    chan struct{}
	users int
}

func (b *bulkhead) enter(id string) *slots {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.slots[id]
	if s == nil {
		if n := len(b.free); n > 0 {
			s, b.free = b.free[n-1], b.free[:n-1]
		} else {
			s = &slots{ch: make(chan struct{}, b.per)}
		}
		b.slots[id] = s
	}
	s.users++
	return s
}

func (b *bulkhead) leave(id string, s *slots) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(b.slots, id)
		if len(b.free) < maxFreeSlots { // every user has left, so every slot is back: ch is empty
			b.free = append(b.free, s)
		}
	}
}
