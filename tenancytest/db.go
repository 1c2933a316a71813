package tenancytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDatabaseURL is the local PostgreSQL as superuser, used when TEST_DATABASE_URL is unset.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// DefaultRedisURL is the local Redis, used when TEST_REDIS_URL is unset.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// AdminURL returns TEST_DATABASE_URL, or DefaultDatabaseURL. It names a role that may create
// databases and roles.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDatabaseURL
}

// RedisURL returns TEST_REDIS_URL, or DefaultRedisURL.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return DefaultRedisURL
}

// UniqueName returns prefix followed by an underscore and 12 random hex digits: a name for a
// database, schema or key prefix that no parallel test shares.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + "_" + hex.EncodeToString(b)
}

// NewDatabase creates an empty database for t on the server of AdminURL and drops it (closing any
// connection still open to it) when t ends. It returns the new database's URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	name := UniqueName("tenancy_test")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("tenancytest: connect to %s (set TEST_DATABASE_URL): %v", redact(AdminURL()), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("tenancytest: create database %s: %v", name, err)
	}
	t.Cleanup(func() { DropDatabase(t, name) })
	return WithDatabase(AdminURL(), name)
}

// DropDatabase drops the named database on the server of AdminURL, ending its sessions first.
func DropDatabase(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Errorf("tenancytest: drop %s: %v", name, err)
		return
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("tenancytest: drop %s: %v", name, err)
	}
}

// WithDatabase returns connString with its database replaced by name.
func WithDatabase(connString, name string) string {
	u, err := url.Parse(connString)
	if err != nil || u.Scheme == "" {
		panic("tenancytest: TEST_DATABASE_URL must be a postgres:// URL, got " + redact(connString))
	}
	u.Path = "/" + name
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
