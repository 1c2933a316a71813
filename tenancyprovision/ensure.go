package tenancyprovision

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// databaseName is what EnsureDatabase accepts as a database name: a plain identifier.
var databaseName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// EnsureDatabase creates the database that connString names if it does not exist, connecting to
// the server's "postgres" database with the same credentials. Concurrent callers are safe: one
// creates it, the others find it. It reports whether it created the database.
func EnsureDatabase(ctx context.Context, connString string) (bool, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return false, fmt.Errorf("tenancyprovision: database URL: %w", err)
	}
	name := cfg.Database
	if !databaseName.MatchString(name) {
		return false, fmt.Errorf("tenancyprovision: database name %q: use lower-case letters, digits and underscores", name)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		conn.Close(ctx)
		return false, nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name: no such database
		return false, fmt.Errorf("tenancyprovision: connect to %s: %w", name, err)
	}
	maint := cfg.Copy()
	maint.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, maint)
	if err != nil {
		return false, fmt.Errorf("tenancyprovision: connect to create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") { // created meanwhile
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tenancyprovision: create database %s: %w", name, err)
	}
	return true, nil
}
