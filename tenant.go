package tenancy

import (
	"fmt"
	"time"
)

// Status is where a tenant is in its life. Only an active tenant reaches data.
type Status string

const (
	// StatusActive tenants are served.
	StatusActive Status = "active"
	// StatusSuspended tenants are refused (HTTP 403) but keep their data; resume makes them active again.
	StatusSuspended Status = "suspended"
	// StatusDeleted tenants are refused as if unknown (HTTP 404). Deletion is soft: the data stays
	// until it is purged.
	StatusDeleted Status = "deleted"
	// StatusProvisioning tenants are being set up (their schema or database made and migrated) and
	// are refused (HTTP 503) until provisioning ends; a provisioning that failed can be resumed.
	StatusProvisioning Status = "provisioning"
)

// ParseStatus returns the Status named s, or ErrInvalidStatus.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusActive, StatusSuspended, StatusDeleted, StatusProvisioning:
		return st, nil
	}
	return "", fmt.Errorf("%w: %q (want active, suspended, deleted or provisioning)", ErrInvalidStatus, s)
}

// Isolation is where a tenant's rows live. It is chosen per tenant.
type Isolation string

const (
	// IsolationShared keeps the tenant's rows in the shared tables, separated by row-level security.
	IsolationShared Isolation = "shared"
	// IsolationSchema gives the tenant a PostgreSQL schema of its own (row-level security stays on).
	IsolationSchema Isolation = "schema"
	// IsolationDatabase gives the tenant a database of its own (row-level security stays on).
	IsolationDatabase Isolation = "database"
)

// ParseIsolation returns the Isolation named s, or ErrInvalidIsolation.
func ParseIsolation(s string) (Isolation, error) {
	switch iso := Isolation(s); iso {
	case IsolationShared, IsolationSchema, IsolationDatabase:
		return iso, nil
	}
	return "", fmt.Errorf("%w: %q (want shared, schema or database)", ErrInvalidIsolation, s)
}

// Tenant is one customer of the system.
//
// A Tenant handed out by a Store or carried in a context is shared between goroutines: treat it as
// read-only. Its ID never changes; the slug, name and plan may (a rename is a new Tenant value).
type Tenant struct {
	// ID is the opaque, immutable identifier (a UUID). It is what the database stores in tenant_id.
	ID string `json:"id"`
	// Slug is the DNS label that names the tenant in URLs (acme in acme.example.com).
	Slug string `json:"slug"`
	// Name is the display name.
	Name string `json:"name"`
	// Plan names the commercial plan (free, pro, ...); limits are chosen by plan.
	Plan string `json:"plan"`
	// Status says whether the tenant is served.
	Status Status `json:"status"`
	// Isolation says where the tenant's rows live.
	Isolation Isolation `json:"isolation"`
	// Domains are the custom domains that name the tenant besides its subdomain.
	Domains []string `json:"domains"`
	// Schema places a schema-model tenant: its schema's name (set by the catalog).
	Schema string `json:"schema,omitempty"`
	// Server and Database place a database-model tenant: the alias of the server (its address and
	// credentials come from configuration, never from the catalog) and the database's name.
	Server   string `json:"server,omitempty"`
	Database string `json:"database,omitempty"`
	// RateLimit overrides the plan's request rate for this tenant ("500/min"); "" means the
	// plan's. See tenancyrate.Policy.
	RateLimit string `json:"rate_limit,omitempty"`
	// ProvisionError says why the last provisioning failed, while Status is provisioning.
	ProvisionError string `json:"provision_error,omitempty"`
	// CreatedAt and UpdatedAt are set by the catalog.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Err returns nil when the tenant may be served, ErrTenantSuspended when it is suspended,
// ErrTenantNotReady while it is being provisioned, and ErrTenantNotFound when it is deleted (a
// deleted tenant is indistinguishable from an unknown one). A nil tenant is ErrNoTenant.
func (t *Tenant) Err() error {
	if t == nil {
		return ErrNoTenant
	}
	switch t.Status {
	case StatusActive:
		return nil
	case StatusSuspended:
		return ErrTenantSuspended
	case StatusProvisioning:
		return ErrTenantNotReady
	default:
		return ErrTenantNotFound
	}
}

// String returns the slug and ID, for logs.
func (t *Tenant) String() string {
	if t == nil {
		return "<no tenant>"
	}
	return t.Slug + " (" + t.ID + ")"
}

// IsID reports whether s has the form of a tenant ID: a UUID in its canonical text form
// (8-4-4-4-12 hex digits, either case). It says nothing of whether such a tenant exists.
func IsID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
