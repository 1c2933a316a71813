package tenancycatalog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// AuditIgnore is a finding of the isolation audit (tenancyaudit) an operator accepted, with the
// reason written down. It names the finding by kind and object, in whichever database.
type AuditIgnore struct {
	Kind       string `json:"kind"`
	Object     string `json:"object"`
	Reason     string `json:"reason"`
	AcceptedBy string `json:"accepted_by,omitempty"`
}

var auditKind = regexp.MustCompile(`^[a-z][a-z-]*$`)

// ErrInvalidIgnore means an accepted finding was not named KIND:OBJECT or had no reason.
var ErrInvalidIgnore = errors.New("tenancycatalog: invalid accepted finding")

// ParseAuditKey splits KIND:OBJECT, as `tenancy doctor --ignore` takes it.
func ParseAuditKey(s string) (kind, object string, err error) {
	kind, object, ok := strings.Cut(s, ":")
	if !ok || !auditKind.MatchString(kind) || strings.TrimSpace(object) == "" {
		return "", "", fmt.Errorf("%w: %q is not KIND:OBJECT (e.g. readable-table:public.plans)", ErrInvalidIgnore, s)
	}
	return kind, object, nil
}

// IgnoreFinding records that the finding kind:object is accepted, for reason (required), so the
// audit reports it as accepted instead of failing; a second call replaces the reason.
func (c *Catalog) IgnoreFinding(ctx context.Context, kind, object, reason string) error {
	if !auditKind.MatchString(kind) || strings.TrimSpace(object) == "" {
		return fmt.Errorf("%w: kind %q, object %q", ErrInvalidIgnore, kind, object)
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: accepting %s:%s needs a written reason", ErrInvalidIgnore, kind, object)
	}
	_, err := c.pool.Exec(ctx, `INSERT INTO tenancy.audit_ignores (kind, object, reason) VALUES ($1, $2, $3)
		ON CONFLICT (kind, object) DO UPDATE SET reason = EXCLUDED.reason, accepted_by = EXCLUDED.accepted_by, accepted_at = now()`,
		kind, object, reason)
	if err != nil {
		return fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return nil
}

// UnignoreFinding takes an accepted finding back; it reports whether there was one.
func (c *Catalog) UnignoreFinding(ctx context.Context, kind, object string) (bool, error) {
	tag, err := c.pool.Exec(ctx, `DELETE FROM tenancy.audit_ignores WHERE kind = $1 AND object = $2`, kind, object)
	if err != nil {
		return false, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// AuditIgnores returns the accepted findings, by kind and object.
func (c *Catalog) AuditIgnores(ctx context.Context) ([]AuditIgnore, error) {
	rows, err := c.pool.Query(ctx, `SELECT kind, object, reason, accepted_by FROM tenancy.audit_ignores ORDER BY kind, object`)
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ig AuditIgnore, err error) {
		err = r.Scan(&ig.Kind, &ig.Object, &ig.Reason, &ig.AcceptedBy)
		return ig, err
	})
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return out, nil
}

// Servers returns the servers database-model tenants are placed on (CatalogConfig.Servers).
func (c *Catalog) Servers() Servers { return c.servers }
