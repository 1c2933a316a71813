// Package migration applies a line of versioned SQL files (NNNN_name.sql) to one database, in one
// transaction, under an advisory lock, recording each applied version in a ledger table. The
// catalog and the shared line of the reference service use it.
package migration

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

// Migration is one versioned SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Read reads every NNNN_name.sql file in dir of fsys, in version order. Versions must be positive
// and unique.
func Read(fsys fs.FS, dir string) ([]Migration, error) {
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

// Line is a sequence of migrations and where its progress is kept.
type Line struct {
	Migrations []Migration
	// Ledger is the table (schema-qualified, already a safe identifier) that records applied versions.
	Ledger pgx.Identifier
	// Lock is the advisory lock key that serializes runs of this line.
	Lock int64
	// SearchPath, when set, is the transaction's search_path while the migrations run (a quoted
	// schema list), so unqualified names land there.
	SearchPath string
	// TryLock makes Apply return ErrLocked at once when another run holds the lock, instead of
	// waiting for it.
	TryLock bool
}

// ErrLocked means another run of the line holds its lock.
var ErrLocked = errors.New("another run holds the migration lock")

// Beginner is what Apply runs on: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Apply applies the pending migrations of line in one transaction under its advisory lock, so
// concurrent callers wait for each other and find nothing left to do. It returns the versions it
// applied. The ledger's schema must exist or be created by the first migration's caller.
func Apply(ctx context.Context, db Beginner, line Line) ([]int, error) {
	var applied []int
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if line.TryLock {
			var locked bool
			if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", line.Lock).Scan(&locked); err != nil {
				return err
			}
			if !locked {
				return ErrLocked
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
