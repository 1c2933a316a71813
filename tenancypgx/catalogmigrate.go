package tenancypgx

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed sql/catalog/*.sql
var catalogSQL embed.FS

// catalogLockKey is the advisory lock that serializes catalog migrations across processes.
const catalogLockKey int64 = 0x74656e616e6379 // "tenancy"

// Migration is one versioned SQL file: NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// readMigrations reads every NNNN_name.sql file in dir of fsys, in version order.
func readMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("tenancypgx: migration %s: name must be NNNN_description.sql", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("tenancypgx: migrations %s and %s share version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// MigrateCatalog creates or upgrades the catalog schema "tenancy" to the version this package
// embeds. It runs in one transaction under an advisory lock: concurrent callers (many instances
// starting at once) wait for each other and the later ones find nothing to do. It returns the
// versions it applied.
func MigrateCatalog(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	ms, err := readMigrations(catalogSQL, "sql/catalog")
	if err != nil {
		return nil, err
	}
	var applied []int
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", catalogLockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS tenancy;
			CREATE TABLE IF NOT EXISTS tenancy.catalog_migrations (
				version    int         PRIMARY KEY,
				name       text        NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		done := map[int]bool{}
		rows, err := tx.Query(ctx, "SELECT version FROM tenancy.catalog_migrations")
		if err != nil {
			return err
		}
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return err
		}
		for _, v := range versions {
			done[v] = true
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("catalog migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO tenancy.catalog_migrations (version, name) VALUES ($1, $2)",
				m.version, m.name); err != nil {
				return err
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tenancypgx: migrate catalog: %w", err)
	}
	return applied, nil
}
