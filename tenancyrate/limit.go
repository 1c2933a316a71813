package tenancyrate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit is a rate: Rate events per Period, with bursts of up to Burst events at once. The zero
// Limit allows nothing.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// PerSecond returns n per second with a burst of n.
func PerSecond(n int) Limit { return Limit{Rate: n, Period: time.Second, Burst: n} }

// PerMinute returns n per minute with a burst of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute, Burst: n} }

// PerHour returns n per hour with a burst of n.
func PerHour(n int) Limit { return Limit{Rate: n, Period: time.Hour, Burst: n} }

// String returns the limit as ParseLimit reads it: "100/min", "5/s", "1000/h", with ",burst=N"
// when the burst is not the rate.
func (l Limit) String() string {
	unit := l.Period.String()
	switch l.Period {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "min"
	case time.Hour:
		unit = "h"
	}
	s := strconv.Itoa(l.Rate) + "/" + unit
	if l.Burst != l.Rate {
		s += ",burst=" + strconv.Itoa(l.Burst)
	}
	return s
}

// ErrInvalidLimit means a limit cannot be parsed or makes no sense.
var ErrInvalidLimit = errors.New("tenancyrate: invalid limit")

// ParseLimit reads "N/s", "N/min", "N/h" or "N/<duration>" (500/10s), optionally followed by
// ",burst=M" (the burst defaults to N).
func ParseLimit(s string) (Limit, error) {
	rate, rest, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Limit{}, fmt.Errorf("%w %q: want N/s, N/min, N/h or N/<duration>, e.g. 500/min", ErrInvalidLimit, s)
	}
	unit, burst, hasBurst := strings.Cut(rest, ",")
	n, err := strconv.Atoi(rate)
	if err != nil || n <= 0 {
		return Limit{}, fmt.Errorf("%w %q: the rate must be a positive whole number", ErrInvalidLimit, s)
	}
	l := Limit{Rate: n, Burst: n}
	switch unit {
	case "s", "sec", "second":
		l.Period = time.Second
	case "m", "min", "minute":
		l.Period = time.Minute
	case "h", "hour":
		l.Period = time.Hour
	default:
		d, err := time.ParseDuration(unit)
		if err != nil || d <= 0 {
			return Limit{}, fmt.Errorf("%w %q: unknown period %q", ErrInvalidLimit, s, unit)
		}
		l.Period = d
	}
	if hasBurst {
		v, ok := strings.CutPrefix(strings.TrimSpace(burst), "burst=")
		b, err := strconv.Atoi(v)
		if !ok || err != nil || b <= 0 {
			return Limit{}, fmt.Errorf("%w %q: want ,burst=N with N positive", ErrInvalidLimit, s)
		}
		l.Burst = b
	}
	if why := l.problem(); why != "" {
		return Limit{}, fmt.Errorf("%w %q: %s", ErrInvalidLimit, s, why)
	}
	return l, nil
}

// maxWindow bounds how far ahead of now a full burst reaches (Period / Rate × Burst), so the
// limiters' arithmetic in unix nanoseconds never overflows.
const maxWindow = 90 * 365 * 24 * time.Hour

// Check says why l cannot be enforced, or returns nil: rate, period and burst must be positive,
// one event may cost no less than a nanosecond (Period / Rate), and a full burst may span no
// more than 90 years.
func (l Limit) Check() error {
	if why := l.problem(); why != "" {
		return fmt.Errorf("%w %s: %s", ErrInvalidLimit, l, why)
	}
	return nil
}

func (l Limit) problem() string {
	switch {
	case l.Rate <= 0 || l.Period <= 0 || l.Burst <= 0:
		return "the rate, period and burst must be positive"
	case int64(l.Period)/int64(l.Rate) == 0:
		return "more than one event a nanosecond"
	case int64(l.Period)/int64(l.Rate) > int64(maxWindow)/int64(l.Burst):
		return "a full burst would span more than 90 years"
	}
	return ""
}

// valid reports whether l can be enforced.
func (l Limit) valid() bool { return l.problem() == "" }

// interval is the time one event costs: Period / Rate, in nanoseconds.
func (l Limit) interval() int64 { return int64(l.Period) / int64(l.Rate) }

// Result is a limiter's decision.
type Result struct {
	// Allowed says whether the events may happen. When false, nothing was consumed.
	Allowed bool
	// Limit is the limit the decision applied.
	Limit Limit
	// Remaining is how many more events would be allowed right now.
	Remaining int
	// RetryAfter is how long until the refused events would be allowed (0 when allowed).
	RetryAfter time.Duration
	// ResetAfter is how long until the limiter is back to a full burst.
	ResetAfter time.Duration
}

// Limiter decides whether events under key may happen now.
type Limiter interface {
	// Allow is AllowN with n = 1.
	Allow(ctx context.Context, key string, limit Limit) (Result, error)
	// AllowN consumes n events under key if the limit allows all of them, else none.
	AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error)
}

// Forgetter is a Limiter that can drop a key's state at once: for a deleted tenant.
type Forgetter interface {
	Forget(ctx context.Context, key string, limit Limit) error
}

// gcra decides n events at now against a key whose theoretical arrival time is tat (unix
// nanoseconds; 0 or past means a full burst). It returns the decision and the new tat, which the
// caller stores only when allowed. This is the whole algorithm, shared by every limiter here; the
// Redis limiter runs the same arithmetic in Lua.
func gcra(l Limit, tat, now int64, n int) (Result, int64) {
	interval := l.interval()
	tolerance := interval * int64(l.Burst) // how far ahead of now the tat may run
	if tat < now {
		tat = now
	}
	newTat := tat + interval*int64(n)
	allowAt := newTat - tolerance
	res := Result{Limit: l}
	if allowAt > now {
		res.RetryAfter = time.Duration(allowAt - now)
		res.ResetAfter = time.Duration(tat - now)
		res.Remaining = remaining(tolerance-(tat-now), interval)
		return res, tat
	}
	res.Allowed = true
	res.ResetAfter = time.Duration(newTat - now)
	res.Remaining = remaining(tolerance-(newTat-now), interval)
	return res, newTat
}

func remaining(headroom, interval int64) int {
	if headroom < 0 {
		return 0
	}
	return int(headroom / interval)
}
