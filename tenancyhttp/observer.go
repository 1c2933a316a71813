package tenancyhttp

import "github.com/gotenancy/tenancy"

// Observer is a ResponseWriter that wants to know, for metrics, the tenant a request resolved to
// and the problem it was refused with: tenancymetrics' middleware wraps the response writer in
// one. Middleware tells it the tenant once resolved (also a suspended or unready one it refuses), and every problem response (Middleware's
// refusals, RateLimit's, ConcurrencyLimit's, WriteProblem) its type. A ResponseWriter that is not
// one costs a type assertion.
type Observer interface {
	ObserveTenant(t *tenancy.Tenant)
	ObserveProblem(problemType string)
}
