package tenancypgx

import (
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
			return nil, fmt.Errorf("tenancypgx: server %q: want alias=postgres://…", part)
		}
		out[strings.TrimSpace(alias)] = strings.TrimSpace(url)
	}
	return out, out.validate()
}

func (s Servers) validate() error {
	for alias, url := range s {
		if !serverAlias.MatchString(alias) {
			return fmt.Errorf("tenancypgx: server alias %q: use a-z, 0-9, _ and -", alias)
		}
		if _, err := pgx.ParseConfig(url); err != nil {
			return fmt.Errorf("tenancypgx: server %s: %w", alias, err)
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
var ErrUnknownServer = errors.New("tenancypgx: unknown server alias")

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
