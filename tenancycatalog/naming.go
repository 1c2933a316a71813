package tenancycatalog

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
)

// SchemaName is the schema of a schema-model tenant: "tenant_" and the ID's 32 hex digits. It is
// derived from the immutable ID, never from a slug or other input, so it never changes and never
// collides. It returns "" for a string that is not a tenant ID.
func SchemaName(id string) string {
	if !tenancy.IsID(id) {
		return ""
	}
	return "tenant_" + strings.ToLower(strings.ReplaceAll(id, "-", ""))
}

// schemaPattern is what a tenant schema name must look like before it is quoted into SQL.
var schemaPattern = regexp.MustCompile(`^tenant_[0-9a-f]{32}$`)

// QuotedSchema returns the quoted schema of the tenant id, or an error if the name breaks the
// pattern: what is put into SQL.
func QuotedSchema(id string) (string, error) {
	name := SchemaName(id)
	if !schemaPattern.MatchString(name) {
		return "", fmt.Errorf("tenancyprovision: no schema name for tenant id %q", id)
	}
	return pgx.Identifier{name}.Sanitize(), nil
}
