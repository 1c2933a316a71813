package cli

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancymigrate"
)

// DemoMigrations names the reference service's lines for --migrations.
const DemoMigrations = "demo"

func migrationsFlag(fs *flag.FlagSet) *string {
	return fs.String("migrations", env("TENANCY_MIGRATIONS", ""),
		"directory with shared/ and tenant/ migration lines, or \"demo\" for the reference service's (env TENANCY_MIGRATIONS); default: none, the catalog only")
}

// noLinesNote is said once by a command that applies no migration lines of the user's.
const noLinesNote = "tenancy: no --migrations given: only the catalog is applied (--migrations DIR for your own lines, --migrations demo for the reference service's)"

// newMigrator returns a migrator on pool for the lines in dir (see loadLines) and the servers of f.
func newMigrator(pool *pgxpool.Pool, dir string, f dbFlags) (*tenancymigrate.Migrator, error) {
	lines, err := loadLines(dir)
	if err != nil {
		return nil, err
	}
	if lines.Servers, err = f.serverMap(); err != nil {
		return nil, err
	}
	return tenancymigrate.New(pool, lines)
}

// loadLines returns the lines in dir/shared and dir/tenant, the reference service's for "demo",
// and none for "" (the catalog only).
func loadLines(dir string) (*tenancymigrate.Config, error) {
	switch dir {
	case "":
		return &tenancymigrate.Config{}, nil
	case DemoMigrations:
		return service.ReferenceLines(), nil
	}
	cfg := &tenancymigrate.Config{}
	for name, dst := range map[string]*fs.FS{"shared": &cfg.Shared, "tenant": &cfg.Tenant} {
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, err
		case !info.IsDir():
			return nil, fmt.Errorf("migrations: %s is not a directory", path)
		}
		*dst = os.DirFS(path)
	}
	if cfg.Shared == nil && cfg.Tenant == nil {
		return nil, fmt.Errorf("migrations: %s has neither a shared/ nor a tenant/ directory", dir)
	}
	return cfg, nil
}
