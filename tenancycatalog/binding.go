package tenancycatalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BindingKey is the secret that binds a transaction to its tenant. Every transaction of a DB sets
// app.tenant_id and app.tenant_proof, the HMAC-SHA256 of the tenant's id under this key; the
// policies of tenant tables trust app.tenant_id only through tenancy.current_tenant(), which
// checks the proof against the key kept in the database (table tenancy.binding_key, readable by
// its owner alone). SQL inside a transaction runs as the runtime role, which can set both
// settings but cannot read the key, so it cannot bind itself to another tenant.
//
// MigrateCatalog makes the key; Catalog.BindingKey reads it through the catalog's privileged
// pool; InstallSupport copies it into each database tenant's own database. Treat it as a
// password: it is never logged or printed.
type BindingKey struct {
	inner, outer [64]byte // the key XOR the HMAC pads, as the database stores it
}

// String hides the key.
func (*BindingKey) String() string { return "tenancycatalog.BindingKey(redacted)" }

// GoString hides the key from %#v.
func (*BindingKey) GoString() string { return "tenancycatalog.BindingKey(redacted)" }

// ErrNoBindingKey means the catalog has no binding key: MigrateCatalog has not run on it.
var ErrNoBindingKey = errors.New("tenancycatalog: the catalog has no binding key: run MigrateCatalog (tenancy migrate)")

// newBindingKey returns a random key.
func newBindingKey() (*BindingKey, error) {
	var k [64]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, err
	}
	b := &BindingKey{}
	for i := range k {
		b.inner[i], b.outer[i] = k[i]^0x36, k[i]^0x5c
	}
	return b, nil
}

// Proof returns what app.tenant_proof must hold for app.tenant_id = id to be trusted: the hex
// HMAC-SHA256 of id under the key. DB sets both in every transaction it runs; Proof is for code
// that must bind a connection of its own (a COPY on a raw connection, a psql session while
// debugging), with set_config(…, true), as the runtime role.
func (k *BindingKey) Proof(id string) string {
	var buf [64 + 64]byte
	var in [sha256.Size]byte
	if len(id) <= 64 { // a tenant id: 36 characters, hashed from the stack
		copy(buf[:64], k.inner[:])
		n := 64 + copy(buf[64:], id)
		in = sha256.Sum256(buf[:n])
	} else {
		h := sha256.New()
		h.Write(k.inner[:])
		h.Write([]byte(id))
		h.Sum(in[:0])
	}
	copy(buf[:64], k.outer[:])
	copy(buf[64:], in[:])
	out := sha256.Sum256(buf[:64+sha256.Size])
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], out[:])
	return string(hx[:])
}

// fingerprint identifies the key without revealing it (templates are kept per key).
func (k *BindingKey) fingerprint() string {
	h := sha256.New()
	h.Write([]byte("tenancy binding key fingerprint\x00"))
	h.Write(k.inner[:])
	h.Write(k.outer[:])
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Bind binds tx to the tenant id, proven with k, as tenancypgx binds its transactions: for the
// rest of tx, row-level security on tenant tables shows and accepts only that tenant's rows (for
// a role it applies to). For upkeep on the tenant's rows outside tenancypgx (purging them).
func (k *BindingKey) Bind(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true)", id, k.Proof(id))
	return err
}

// querier is a pool, a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readBindingKey reads the key of the database behind q; ErrNoBindingKey when it has none.
func readBindingKey(ctx context.Context, q querier) (*BindingKey, error) {
	var inner, outer []byte
	err := q.QueryRow(ctx, `SELECT inner_key, outer_key FROM tenancy.binding_key`).Scan(&inner, &outer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoBindingKey
	}
	if err != nil {
		return nil, fmt.Errorf("tenancycatalog: read the binding key: %w", err)
	}
	if len(inner) != 64 || len(outer) != 64 {
		return nil, errors.New("tenancycatalog: the binding key in tenancy.binding_key is malformed")
	}
	k := &BindingKey{}
	copy(k.inner[:], inner)
	copy(k.outer[:], outer)
	return k, nil
}

// storeBindingKey writes k as the key of the database behind q: only where there is none yet
// (replace false: MigrateCatalog), or over any other (replace true: InstallSupport copying the
// catalog's key into a tenant database).
func storeBindingKey(ctx context.Context, q querier, k *BindingKey, replace bool) error {
	conflict := "DO NOTHING"
	if replace {
		conflict = "DO UPDATE SET inner_key = EXCLUDED.inner_key, outer_key = EXCLUDED.outer_key, created_at = now()" +
			" WHERE (tenancy.binding_key.inner_key, tenancy.binding_key.outer_key) IS DISTINCT FROM (EXCLUDED.inner_key, EXCLUDED.outer_key)"
	}
	var one int
	err := q.QueryRow(ctx, `WITH w AS (INSERT INTO tenancy.binding_key (inner_key, outer_key) VALUES ($1, $2)
		ON CONFLICT (singleton) `+conflict+` RETURNING 1) SELECT count(*) FROM w`, k.inner[:], k.outer[:]).Scan(&one)
	if err != nil {
		return fmt.Errorf("tenancycatalog: store the binding key: %w", err)
	}
	return nil
}

// BindingKey returns the catalog's binding key, for tenancypgx.Config.Key. It reads it through
// the catalog's pool, whose login role owns the catalog (the runtime role cannot), once.
func (c *Catalog) BindingKey(ctx context.Context) (*BindingKey, error) {
	if k := c.key.Load(); k != nil {
		return k, nil
	}
	k, err := ReadBindingKey(ctx, c.pool)
	if err != nil {
		return nil, err
	}
	c.key.Store(k)
	return k, nil
}

// ReadBindingKey reads the binding key of the catalog behind pool, which must log in as the
// migration role (Catalog.BindingKey is the same, cached).
func ReadBindingKey(ctx context.Context, pool *pgxpool.Pool) (*BindingKey, error) {
	return readBindingKey(ctx, pool)
}

// CurrentTenantSQL returns the statement that defines tenancy.current_tenant() as the catalog
// migrations install it, and the function's body (its prosrc): the audit compares the function
// in each database with it, and offers the statement to restore it.
func CurrentTenantSQL() (statement, body string, err error) {
	b, err := catalogSQL.ReadFile("sql/catalog/0006_binding.sql")
	if err != nil {
		return "", "", err
	}
	src := string(b)
	start := strings.Index(src, "CREATE FUNCTION tenancy.current_tenant()")
	open := strings.Index(src[max(start, 0):], "AS $$")
	if start < 0 || open < 0 {
		return "", "", errors.New("tenancycatalog: tenancy.current_tenant() is missing from the catalog migrations")
	}
	open += start + len("AS $$")
	end := strings.Index(src[open:], "$$;")
	if end < 0 {
		return "", "", errors.New("tenancycatalog: tenancy.current_tenant() is malformed in the catalog migrations")
	}
	body = src[open : open+end]
	statement = "CREATE OR REPLACE" + strings.TrimPrefix(src[start:open+end+3], "CREATE")
	return statement, body, nil
}
