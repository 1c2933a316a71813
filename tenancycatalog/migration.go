package tenancycatalog

// A migration line is a sequence of versioned SQL files (NNNN_name.sql), applied to one database
// in one transaction, under an advisory lock, each applied version recorded in a ledger table:
// the catalog's own line, the isolation support, the shared line and a tenant database's line.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Migration is one versioned SQL file of a migration line.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// ReadMigrations reads every NNNN_name.sql file in dir of fsys, in version order. Versions must be positive
// and unique.
func ReadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// migrationLine is a sequence of migrations and where its progress is kept.
type migrationLine struct {
	Migrations []Migration
	// Ledger is the table (schema-qualified, already a safe identifier) that records applied versions.
	Ledger pgx.Identifier
	// Lock is the advisory lock key that serializes runs of this line.
	Lock int64
	// SearchPath, when set, is the transaction's search_path while the migrations run (a quoted
	// schema list), so unqualified names land there.
	SearchPath string
	// TryLock makes apply return ErrLineLocked at once when another run holds the lock, instead of
	// waiting for it.
	TryLock bool
}

// ErrLineLocked means another run of a migration line holds its lock: ApplyTenantDatabaseLine
// with tryLock skips the database instead of waiting.
var ErrLineLocked = errors.New("another run holds the migration lock")

// apply applies the pending migrations of line in one transaction under its advisory lock, so
// concurrent callers wait for each other and find nothing left to do. It returns the versions it
// applied. The ledger's schema must exist or be created by the first migration's caller.
func apply(ctx context.Context, db Beginner, line migrationLine) ([]int, error) {
	var applied []int
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if line.TryLock {
			var locked bool
			if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", line.Lock).Scan(&locked); err != nil {
				return err
			}
			if !locked {
				return ErrLineLocked
			}
		} else if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", line.Lock); err != nil {
			return err
		}
		ledger := line.Ledger.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{line.Ledger[0]}.Sanitize()+`;
			CREATE TABLE IF NOT EXISTS `+ledger+` (
				version    int         PRIMARY KEY,
				name       text        NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT version FROM "+ledger)
		if err != nil {
			return err
		}
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return err
		}
		done := make(map[int]bool, len(versions))
		for _, v := range versions {
			done[v] = true
		}
		if line.SearchPath != "" {
			if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", line.SearchPath); err != nil {
				return err
			}
		}
		for _, m := range line.Migrations {
			if done[m.Version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+ledger+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return err
			}
			applied = append(applied, m.Version)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}
