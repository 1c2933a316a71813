package tenancymove

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// site is one placement of a tenant being moved: a privileged pool on its database and what its
// tenant tables are.
type site struct {
	p       tenancycatalog.Placement
	pool    *pgxpool.Pool
	schema  string // the schema its tenant tables are in; "" in a tenant's database: any but tenancy
	replica bool   // the pool's role may set session_replication_role (user triggers stay quiet)
}

// sessionParams make the text of every value the same on both sites: what COPY writes and the
// checksums hash.
var sessionParams = map[string]string{
	"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
	"extra_float_digits": "3", "bytea_output": "hex", "standard_conforming_strings": "on", "application_name": "tenancy move",
}

// openSite opens a pool on placement p of tenant t with the catalog's (the migration role's)
// credentials.
func (mv *Mover) openSite(ctx context.Context, t *tenancy.Tenant, p tenancycatalog.Placement) (*site, error) {
	var cfg *pgxpool.Config
	s := &site{p: p}
	switch p.Isolation {
	case tenancy.IsolationDatabase:
		var err error
		if cfg, err = mv.c.Servers().PoolConfig(p.Server, tenancycatalog.DatabaseName(t.ID)); err != nil {
			return nil, err
		}
	case tenancy.IsolationSchema:
		cfg = mv.c.Pool().Config().Copy()
		s.schema = tenancycatalog.SchemaName(t.ID)
	default:
		cfg = mv.c.Pool().Config().Copy()
		s.schema = mv.m.SharedSchema()
	}
	cfg.MaxConns, cfg.MinConns = 4, 0
	cfg.BeforeConnect, cfg.AfterConnect, cfg.BeforeAcquire, cfg.AfterRelease = nil, nil, nil, nil
	for k, v := range sessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.QueryRow(ctx, `SELECT rolsuper OR has_parameter_privilege(current_user, 'session_replication_role', 'SET')
		FROM pg_roles WHERE rolname = current_user`).Scan(&s.replica); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	s.pool = pool
	return s, nil
}

func (s *site) close() {
	if s != nil && s.pool != nil {
		s.pool.Close()
	}
}

// table is a tenant table as a move sees it, on one site.
type table struct {
	label   string         // its name, the same on every site
	ident   pgx.Identifier // schema and name there
	cols    []string       // the columns copied: all but generated ones
	types   map[string]string
	pk      []string
	parents []string          // labels of the tenant tables its foreign keys reference
	seqs    map[string]string // column → its sequence (identity or serial), qualified
}

// tables reads the site's tenant tables (those tenancy.isolate made: with the tenant_isolation
// policy), parents first.
func (s *site) tables(ctx context.Context) ([]*table, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
		   AND EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation')
		   AND CASE WHEN $1::text = '' THEN n.nspname NOT IN ('tenancy', 'pg_catalog', 'information_schema') AND n.nspname !~ '^tenant_[0-9a-f]{32}$'
		            ELSE n.nspname = $1 END
		 ORDER BY c.relname`, s.schema)
	if err != nil {
		return nil, err
	}
	type rel struct {
		oid          uint32
		schema, name string
	}
	rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (x rel, err error) {
		err = r.Scan(&x.oid, &x.schema, &x.name)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: tenant tables: %w", s.p, err)
	}
	byOID := map[uint32]*table{}
	var out []*table
	for _, r := range rels {
		if slices.ContainsFunc(out, func(t *table) bool { return t.label == r.name }) {
			return nil, fmt.Errorf("%s: two tenant tables are named %s (schemas %s and another): a move matches tables by name", s.p, r.name, r.schema)
		}
		t := &table{label: r.name, ident: pgx.Identifier{r.schema, r.name}, types: map[string]string{}, seqs: map[string]string{}}
		err := s.pool.QueryRow(ctx, `
			SELECT coalesce(array_agg(pa.attname::text ORDER BY k.ord), '{}')
			  FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
			  JOIN pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = k.attnum
			 WHERE i.indrelid = $1::oid AND i.indisprimary`, r.oid).Scan(&t.pk)
		if err != nil {
			return nil, fmt.Errorf("%s: table %s: %w", s.p, r.name, err)
		}
		var types, seqCols, seqs []string
		if err := s.pool.QueryRow(ctx, `
			SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}'),
			       -- A type of the table's own schema is named without it: a schema tenant's enum is
			       -- tenant_….mood where the shared tables' is mood.
			       coalesce(array_agg(replace(format_type(a.atttypid, a.atttypmod),
			           (SELECT quote_ident(n.nspname) || '.' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid), '')
			         ORDER BY a.attnum), '{}'),
			       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE s.seq IS NOT NULL), '{}'),
			       coalesce(array_agg(s.seq ORDER BY a.attnum) FILTER (WHERE s.seq IS NOT NULL), '{}')
			  FROM pg_attribute a, LATERAL (SELECT pg_get_serial_sequence($1::oid::regclass::text, a.attname) AS seq) s
			 WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''`, r.oid).Scan(&t.cols, &types, &seqCols, &seqs); err != nil {
			return nil, fmt.Errorf("%s: table %s: %w", s.p, r.name, err)
		}
		for i, c := range t.cols {
			t.types[c] = types[i]
		}
		for i, c := range seqCols {
			t.seqs[c] = seqs[i]
		}
		if len(t.pk) == 0 {
			return nil, fmt.Errorf("%w: %s has no primary key: a live move finds the rows that change by their key", ErrUnmovable, r.name)
		}
		byOID[r.oid] = t
		out = append(out, t)
	}
	fks, err := s.pool.Query(ctx, `SELECT conrelid, confrelid FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY($1)`, keys(byOID))
	if err != nil {
		return nil, err
	}
	var child, parent uint32
	if _, err := pgx.ForEachRow(fks, []any{&child, &parent}, func() error {
		if p := byOID[parent]; p != nil && parent != child {
			byOID[child].parents = append(byOID[child].parents, p.label)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return parentsFirst(out)
}

func keys(m map[uint32]*table) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// parentsFirst orders tables so that each comes after the tables its foreign keys reference.
func parentsFirst(ts []*table) ([]*table, error) {
	byLabel := map[string]*table{}
	for _, t := range ts {
		byLabel[t.label] = t
	}
	var out []*table
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(t *table) error
	visit = func(t *table) error {
		switch state[t.label] {
		case 1:
			return fmt.Errorf("%w: the foreign keys of %s form a cycle", ErrUnmovable, t.label)
		case 2:
			return nil
		}
		state[t.label] = 1
		for _, p := range t.parents {
			if err := visit(byLabel[p]); err != nil {
				return err
			}
		}
		state[t.label] = 2
		out = append(out, t)
		return nil
	}
	for _, t := range ts {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ErrUnmovable means a tenant's tables cannot be moved live as they are (no primary key, a cycle
// of foreign keys, tables that differ between the placements); the error says which and why.
var ErrUnmovable = errors.New("tenancymove: the tenant's tables cannot be moved")

// pair is a tenant table on the source and the target.
type pair struct {
	src, tgt *table
}

// match pairs the source's tenant tables with the target's by name, in the source's order, and
// checks that they have the same columns of the same types and the same primary key.
func match(src, tgt []*table) ([]pair, error) {
	byLabel := map[string]*table{}
	for _, t := range tgt {
		byLabel[t.label] = t
	}
	var out []pair
	var problems []string
	for _, s := range src {
		t := byLabel[s.label]
		if t == nil {
			problems = append(problems, s.label+" is missing in the new placement")
			continue
		}
		delete(byLabel, s.label)
		for _, c := range s.cols {
			if tt, ok := t.types[c]; !ok {
				problems = append(problems, fmt.Sprintf("%s.%s is missing in the new placement", s.label, c))
			} else if tt != s.types[c] {
				problems = append(problems, fmt.Sprintf("%s.%s is %s here and %s there", s.label, c, s.types[c], tt))
			}
		}
		for _, c := range t.cols {
			if _, ok := s.types[c]; !ok {
				problems = append(problems, fmt.Sprintf("%s.%s exists only in the new placement", s.label, c))
			}
		}
		if !slices.Equal(s.pk, t.pk) {
			problems = append(problems, fmt.Sprintf("%s's primary key is (%s) here and (%s) there", s.label, strings.Join(s.pk, ", "), strings.Join(t.pk, ", ")))
		}
		out = append(out, pair{s, t})
	}
	for label := range byLabel {
		problems = append(problems, label+" exists only in the new placement")
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("%w: the placements differ (run tenancy migrate): %s", ErrUnmovable, strings.Join(problems, "; "))
	}
	return out, nil
}

// columnList is cols quoted, for SQL, each prefixed with alias and a dot when alias is not "".
func columnList(alias string, cols []string) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		if alias != "" {
			b.WriteString(alias + ".")
		}
		b.WriteString(pgx.Identifier{c}.Sanitize())
	}
	return b.String()
}
