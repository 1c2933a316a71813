package tenancy

import (
	"context"
	"errors"
)

// Invalidator keeps something derived from the tenant catalog (a cached lookup, a limiter's state, a
// tenant's cache entries) current with the catalog's changes: tenancycatalog.Catalog.Watch calls it.
// tenancycache.Lookup and tenancyredis.CatalogStore implement it; so does what
// tenancycatalog.Catalog.OnDeleted returns.
type Invalidator interface {
	// Invalidate is called with the ID of a tenant that changed (created, renamed, suspended,
	// resumed, deleted, purged, or given or stripped of a domain). An error means what it keeps
	// about the tenant may be stale: the caller reports it.
	Invalidate(ctx context.Context, id string) error
	// Purge is called after every (re)connection of the listener: changes made while nobody
	// listened are unknown, so everything derived may be stale.
	Purge(ctx context.Context) error
}

// Invalidators tells each of several Invalidators, in order — a first-level lookup cache and a
// second level shared by instances, say — every one of them even when one fails; the error joins
// theirs.
type Invalidators []Invalidator

// Invalidate implements Invalidator.
func (is Invalidators) Invalidate(ctx context.Context, id string) error {
	var errs []error
	for _, i := range is {
		if err := i.Invalidate(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Purge implements Invalidator.
func (is Invalidators) Purge(ctx context.Context) error {
	var errs []error
	for _, i := range is {
		if err := i.Purge(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
