package service

import (
	"embed"
	"io/fs"

	"github.com/gotenancy/tenancy/tenancymigrate"
)

//go:embed sql/tenant/*.sql
var referenceSQL embed.FS

// ReferenceLines are the reference service's migration lines: no shared line, and a tenant line
// that makes the projects and tasks tables (in the shared schema and in each schema tenant's).
func ReferenceLines() *tenancymigrate.Config {
	tenant, err := fs.Sub(referenceSQL, "sql/tenant")
	if err != nil {
		panic(err) // the directory is embedded: it exists
	}
	return &tenancymigrate.Config{Tenant: tenant}
}
