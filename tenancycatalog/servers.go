package tenancycatalog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultServer is the alias of the server the catalog lives on, when no other is configured.
const DefaultServer = "default"

// Servers maps server aliases to connection strings (address and credentials) of the PostgreSQL
// servers that hold database-model tenants. The catalog stores only the alias; credentials stay
// in configuration. The database part of each connection string is ignored.
type Servers map[string]string

var serverAlias = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ParseServers reads "alias=url,alias=url" (the form of TENANCY_SERVERS).
func ParseServers(s string) (Servers, error) {
	out := Servers{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		alias, url, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("tenancycatalog: server %q: want alias=postgres://…", part)
		}
		out[strings.TrimSpace(alias)] = strings.TrimSpace(url)
	}
	return out, out.Validate()
}

// Validate checks every alias and URL: an alias of lower-case letters, digits, "-" and "_"; a
// postgres:// URL.
func (s Servers) Validate() error {
	for alias, url := range s {
		if !serverAlias.MatchString(alias) {
			return fmt.Errorf("tenancycatalog: server alias %q: use a-z, 0-9, _ and -", alias)
		}
		if _, err := pgx.ParseConfig(url); err != nil {
			return fmt.Errorf("tenancycatalog: server %s: %w", alias, err)
		}
	}
	return nil
}

// Aliases returns the aliases in order.
func (s Servers) Aliases() []string {
	out := make([]string, 0, len(s))
	for a := range s {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// ErrUnknownServer means a tenant is placed on a server alias the configuration does not name.
var ErrUnknownServer = errors.New("tenancycatalog: unknown server alias")

// PoolConfig returns a pool configuration for database on the server with this alias.
func (s Servers) PoolConfig(alias, database string) (*pgxpool.Config, error) {
	url, ok := s[alias]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %s)", ErrUnknownServer, alias, strings.Join(s.Aliases(), ", "))
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Database = database
	return cfg, nil
}

// ConnConfig returns a connection configuration for database on the server with this alias.
func (s Servers) ConnConfig(alias, database string) (*pgx.ConnConfig, error) {
	cfg, err := s.PoolConfig(alias, database)
	if err != nil {
		return nil, err
	}
	return cfg.ConnConfig, nil
}

// DatabaseName is the database of a database-model tenant: "tenant_" and the ID's 32 hex digits,
// derived from the immutable ID like SchemaName.
func DatabaseName(id string) string { return SchemaName(id) }

// Maintenance connects to the "postgres" database of the server alias with the catalog's own
// credentials (the migration role's): where databases are made and dropped, and roles looked
// after. The caller closes it.
func (c *Catalog) Maintenance(ctx context.Context, server string) (*pgx.Conn, error) {
	cfg, err := c.servers.ConnConfig(server, "postgres")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", server, err)
	}
	return conn, nil
}

// TenantDatabases returns, by server alias, the databases of the database-model tenants placed
// there (whatever their status).
func (c *Catalog) TenantDatabases(ctx context.Context) (map[string][]string, error) {
	rows, err := c.pool.Query(ctx, `SELECT coalesce(server, ''), database_name FROM tenancy.tenants WHERE database_name IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	byServer := map[string][]string{}
	var server, db string
	_, err = pgx.ForEachRow(rows, []any{&server, &db}, func() error {
		byServer[server] = append(byServer[server], db)
		return nil
	})
	return byServer, err
}
