// Package tenancyprovision makes and removes what tenants live in, outside the catalog's rows:
// a schema tenant's schema (tenant_ and its ID's hex), a database tenant's database (a copy of a
// template database that carries the whole tenant line, so the copy is one file copy), and, on
// purge, a shared tenant's rows.
//
//	t, _ := catalog.Create(ctx, &tenancycatalog.CreateOpts{Slug: "globex", Isolation: tenancy.IsolationSchema})
//	t, err := tenancyprovision.Provision(ctx, catalog, t.ID, migrator, nil) // migrator: tenancymigrate
//
// Provision marks the tenant active only once its schema or database carries the tenant line;
// when a step fails it removes what it made, records why (Tenant.ProvisionError) and leaves the
// tenant provisioning, refused to requests: calling Provision again resumes. Purge removes a
// deleted tenant for good; Uninstall removes everything a catalog made, then the catalog.
// EnsureDatabase creates the database a URL names when it is missing.
package tenancyprovision
