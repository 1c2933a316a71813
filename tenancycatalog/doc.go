// Package tenancycatalog owns the tenant catalog: the schema "tenancy" and its embedded, versioned
// migrations; tenants, their domains and placements (server, database); the ledger of the tenant
// migration line; the binding key with which tenancypgx proves each transaction's tenant; the
// servers of database tenants; accepted audit findings. Every other package reads and writes the
// catalog through this API, never with SQL of its own.
//
// MigrateCatalog applies the migrations under an advisory lock, so many instances may start at
// once; it also creates the runtime role (DefaultRole):
//
//	if _, err := tenancycatalog.MigrateCatalog(ctx, admin); err != nil { ... } // the migration role's pool
//	catalog, _ := tenancycatalog.NewCatalog(admin, nil)
//	acme, err := catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "acme", Name: "Acme Inc"})
//	key, _ := catalog.BindingKey(ctx) // for tenancypgx.Config.Key
//
// A Catalog is a tenancy.Store. Every change to a tenant or its domains is NOTIFYed at commit,
// signed with the binding key; Watch hears them on a connection of its own and tells every
// tenancy.Invalidator — the lookup caches (tenancycache.Lookup, tenancyredis.CatalogStore) and
// OnDeleted, which flushes a deleted tenant's cache entries and rate-limit state:
//
//	lookups, _ := tenancycache.NewLookup(catalog, nil)
//	go catalog.Watch(ctx, tenancy.Invalidators{lookups,
//		catalog.OnDeleted(appCache.Forget, tenancyrate.Forget(limiter, policy))}, nil)
//
// If the listener's connection breaks, every Invalidator is purged on reconnect. Tenant tables are
// made with tenancy.isolate (see tenancypgx); InstallSupport puts the same isolation support and
// binding key in a database tenant's own database.
//
// # For provisioning and migration runners
//
// Some of the API is the typed access the toolkit's own packages use instead of SQL of their own:
// placements (Place, Activate, ProvisionFailed, Remove) for tenancyprovision; the migration ledger
// (LineVersion, RecordLine, RecordLineError, LineStatus, LineBehind, ApplySharedLine,
// ApplyTenantDatabaseLine, SharedLineApplied) for tenancymigrate; placements and moves
// (Placement, StartMove, OpenMove, LastMove, RecordMove, SwitchMove, EndMove, MovesDue), the
// fences a move closes a placement with (Fence, Unfence, FenceOf) and the capture of a moving
// tenant's changes (Capture, StopCapture, TakeChanges, ClearChanges) for tenancymove; Drop for
// Uninstall. An
// application rarely needs them: Remove forgets a deleted tenant's entry but not its data, and
// Drop drops the catalog but nothing it made — tenancyprovision.Purge and Uninstall do the whole
// job.
package tenancycatalog
