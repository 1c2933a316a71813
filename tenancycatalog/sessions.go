package tenancycatalog

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"
)

// Operator sessions: the console's sign-ins, kept in the catalog so that every instance knows
// them and signing out ends a session everywhere. Only the SHA-256 of a session's secret is
// stored; the secret is the caller's (a random value in a cookie).

// StartOperatorSession records a session for secret, valid until expires (and while it is used
// at least every idle), and removes the sessions that have expired.
func (c *Catalog) StartOperatorSession(ctx context.Context, secret []byte, expires time.Time) error {
	h := sha256.Sum256(secret)
	if _, err := c.pool.Exec(ctx, `DELETE FROM tenancy.operator_sessions WHERE expires_at < now()`); err != nil {
		return fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	if _, err := c.pool.Exec(ctx, `INSERT INTO tenancy.operator_sessions (secret_hash, expires_at) VALUES ($1, $2)`, h[:], expires); err != nil {
		return fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return nil
}

// OperatorSession reports whether secret's session exists, has not expired and was used within
// idle; it records the use (at most once a minute, so a busy console does not write on every
// page).
func (c *Catalog) OperatorSession(ctx context.Context, secret []byte, idle time.Duration) (bool, error) {
	h := sha256.Sum256(secret)
	var ok bool
	err := c.pool.QueryRow(ctx, `WITH s AS (
		SELECT secret_hash, seen_at FROM tenancy.operator_sessions
		 WHERE secret_hash = $1 AND expires_at > now() AND seen_at > now() - $2::interval),
	touched AS (
		UPDATE tenancy.operator_sessions o SET seen_at = now() FROM s
		 WHERE o.secret_hash = s.secret_hash AND s.seen_at < now() - interval '1 minute')
	SELECT EXISTS (SELECT FROM s)`, h[:], idle).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return ok, nil
}

// EndOperatorSession removes secret's session: signing out.
func (c *Catalog) EndOperatorSession(ctx context.Context, secret []byte) error {
	h := sha256.Sum256(secret)
	if _, err := c.pool.Exec(ctx, `DELETE FROM tenancy.operator_sessions WHERE secret_hash = $1`, h[:]); err != nil {
		return fmt.Errorf("tenancycatalog: catalog: %w", err)
	}
	return nil
}
