package tenancyrate

import (
	"context"

	"github.com/gotenancy/tenancy"
)

// DefaultPlans are the limits by plan when Policy.Plans is nil: the reference article's 100
// requests a minute for the free plan, more for paid ones.
var DefaultPlans = map[string]Limit{
	"free":       PerMinute(100),
	"pro":        PerMinute(1000),
	"enterprise": PerMinute(10000),
}

// Policy chooses each tenant's limit: the tenant's own override (Tenant.RateLimit, set with
// `tenancy tenant set-limit`), else its plan's, else Default.
type Policy struct {
	// Plans maps plan names to limits. Defaults to DefaultPlans.
	Plans map[string]Limit
	// Default applies to plans not in Plans. Defaults to the "free" plan's limit.
	Default Limit
}

// For returns the limit for t. An override that does not parse is ignored for the plan's limit:
// the catalog refuses such overrides, so it can only come from a hand-edited row.
func (p *Policy) For(t *tenancy.Tenant) Limit {
	if t.RateLimit != "" {
		if l, err := ParseLimit(t.RateLimit); err == nil {
			return l
		}
	}
	plans := DefaultPlans
	if p != nil && p.Plans != nil {
		plans = p.Plans
	}
	if l, ok := plans[t.Plan]; ok {
		return l
	}
	if p != nil && p.Default.valid() {
		return p.Default
	}
	if l, ok := plans["free"]; ok {
		return l
	}
	return DefaultPlans["free"]
}

// Forget returns the function that drops a tenant's rate-limit state in l at once, keyed by the
// tenant's ID under its limit in p: for tenancycatalog.Catalog.OnDeleted, so a deleted tenant's
// state goes with it. A tenant purged before its deletion was heard comes with its ID alone, so
// its state is dropped under the default plan's limit; state under another limit is not found,
// and expires as any idle key does (within its window: the Redis key's TTL, the memory limiter's
// eviction of past keys first). It does nothing when l cannot forget (it is not a Forgetter).
func Forget(l Limiter, p *Policy) func(context.Context, *tenancy.Tenant) error {
	return func(ctx context.Context, t *tenancy.Tenant) error {
		f, ok := l.(Forgetter)
		if !ok || t == nil || t.ID == "" {
			return nil
		}
		return f.Forget(ctx, t.ID, p.For(t))
	}
}
