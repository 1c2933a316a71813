// Package lockkey is the one table of the PostgreSQL advisory-lock keys the toolkit takes. Each
// is distinct: two kinds of work under one key wait for each other, and a runner that tries the
// lock (pg_try_advisory_xact_lock) would take the other's hold for a concurrent run of its own.
package lockkey

const (
	// Catalog serializes catalog migrations (the catalog's database).
	Catalog int64 = 0x74656e616e6379 // "tenancy"
	// SharedLine serializes runs of the shared line (the catalog's database).
	SharedLine int64 = 0x74656e616e6373
	// Support serializes installations of the isolation support (a database tenant's database, or
	// a template).
	Support int64 = 0x74656e616e6374
	// Template serializes template upkeep and copies on a server (session lock in "postgres").
	Template int64 = 0x74656e616e6375
	// TenantDatabase serializes runs of the tenant line inside one tenant database. (It shared
	// Support's key until 2026-11-28: a second runner then waited on the first's tenant line
	// while installing support, and recorded a false error instead of skipping the tenant.)
	TenantDatabase int64 = 0x74656e616e6376
	// River serializes the migrations of River's tables (the catalog's database).
	River int64 = 0x74656e616e6377
)

// TenantLinePrefix starts the text whose hash (hashtextextended(prefix || target, 0)) is the key
// that serializes runs of the tenant line on one target of the catalog's database ("shared" or
// a tenant's ID): one key per target, so runners migrate different tenants at once.
const TenantLinePrefix = "tenancy.migrate."

// MovePrefix starts the text whose binding proof (64 bits of it, as tenancycatalog.ProofUnitKey
// takes them, of prefix and the tenant's id) is the key of the session lock a mover holds on a
// tenant in the catalog's database while it moves, resumes, aborts or finalizes the tenant's
// move: one mover per tenant, and a key no tenant can compute to hold another's move up.
const MovePrefix = "tenancy.move."

// All lists every key, for the test that they are distinct.
var All = map[string]int64{
	"Catalog": Catalog, "SharedLine": SharedLine, "Support": Support, "Template": Template, "TenantDatabase": TenantDatabase,
	"River": River,
}
