// Package pgsession keeps runtime sessions safe to share between tenants, for the two packages
// that hand them out: tenancypgx (the shared pool) and tenancyrouter (the tenant databases' pools).
// It checks a runtime pool's login role and binding key (Check, CheckOnce), prepares its
// configuration (PrepareRuntimeConfig: start-up guards, pooler detection, role defaults refused)
// and removes the session defaults SQL inside a unit of work may give the role (Janitor).
package pgsession
