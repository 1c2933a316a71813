package tenancymove

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/gotenancy/tenancy/tenancycatalog"
)

// quoteID is a tenant ID as an SQL literal: COPY takes no parameters. The ID was checked
// (tenancy.IsID), so it holds only hex digits and dashes.
func quoteID(id string) string { return "'" + id + "'" }

// beginTarget begins a transaction on the target in which user triggers (and the foreign keys'
// own) stay quiet when the role may ask for it: rows arrive as they were, parents or children first.
func beginTarget(ctx context.Context, s *site) (pgx.Tx, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if s.replica {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			_ = tx.Rollback(ctx)
			return nil, err
		}
	}
	return tx, nil
}

// lineCounter counts the rows COPY's text format writes through it (one line each: newlines in
// values are escaped) and reports each thousand.
type lineCounter struct {
	w      io.Writer
	n      int64
	report func(int64)
}

func (c *lineCounter) Write(p []byte) (int, error) {
	before := c.n / 1000
	c.n += int64(bytes.Count(p, []byte{'\n'}))
	if c.report != nil && c.n/1000 != before {
		c.report(c.n)
	}
	return c.w.Write(p)
}

// copyAll copies every row of tenant id from src to tgt, table by table in one snapshot of the
// source and one transaction on the target, with COPY. It returns the rows copied per table.
func (mv *Mover) copyAll(ctx context.Context, id string, src, tgt *site, pairs []pair, prog *progress) error {
	stx, err := src.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("%s: %w", src.p, err)
	}
	defer stx.Rollback(context.WithoutCancel(ctx))
	for i, p := range pairs {
		var n int64
		if err := stx.QueryRow(ctx, "SELECT count(*) FROM "+p.src.ident.Sanitize()+" WHERE tenant_id = $1", id).Scan(&n); err != nil {
			return fmt.Errorf("%s: count %s: %w", src.p, p.src.label, err)
		}
		prog.setTotal(i, n)
	}
	ttx, err := beginTarget(ctx, tgt)
	if err != nil {
		return fmt.Errorf("%s: %w", tgt.p, err)
	}
	defer ttx.Rollback(context.WithoutCancel(ctx))
	for i, p := range pairs {
		out := fmt.Sprintf("COPY (SELECT %s FROM %s WHERE tenant_id = %s) TO STDOUT", columnList("", p.src.cols), p.src.ident.Sanitize(), quoteID(id))
		in := fmt.Sprintf("COPY %s (%s) FROM STDIN", p.tgt.ident.Sanitize(), columnList("", p.src.cols))
		pr, pw := io.Pipe()
		counter := &lineCounter{w: pw, report: func(n int64) { prog.setCopied(i, n) }}
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			_, err := stx.Conn().PgConn().CopyTo(gctx, counter, out)
			pw.CloseWithError(err)
			return err
		})
		g.Go(func() error {
			_, err := ttx.Conn().PgConn().CopyFrom(gctx, pr, in)
			pr.CloseWithError(err)
			return err
		})
		if err := g.Wait(); err != nil {
			return fmt.Errorf("copy %s: %w", p.src.label, err)
		}
		prog.setCopied(i, counter.n)
	}
	if err := ttx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: %w", tgt.p, err)
	}
	return nil
}

// catchUp copies again, from the source's current state, the rows whose changes the capture
// triggers recorded (at most limit changes): on the target each is deleted and, if the source
// still has it, inserted. The changes are taken in the same snapshot as the rows are read, and
// taken for good only once the target committed. It returns how many changes it took.
func (mv *Mover) catchUp(ctx context.Context, id string, moveID int64, src, tgt *site, pairs []pair, limit int) (int, error) {
	stx, err := src.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", src.p, err)
	}
	defer stx.Rollback(context.WithoutCancel(ctx))
	changes, err := tenancycatalog.TakeChanges(ctx, stx, moveID, limit)
	if err != nil || len(changes) == 0 {
		return 0, err
	}
	keys := map[string]map[string]bool{}
	for _, c := range changes {
		if keys[c.Table] == nil {
			keys[c.Table] = map[string]bool{}
		}
		keys[c.Table][string(c.Key)] = true
	}
	type batch struct {
		p          pair
		keys, rows []byte
	}
	var batches []batch
	for _, p := range pairs {
		set := keys[p.src.label]
		if len(set) == 0 {
			continue
		}
		list := make([]string, 0, len(set))
		for k := range set {
			list = append(list, k)
		}
		sort.Strings(list)
		b := batch{p: p, keys: []byte("[" + strings.Join(list, ",") + "]")}
		q := fmt.Sprintf(`SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]') FROM (SELECT %s FROM %s s WHERE s.tenant_id = $1
			AND (%s) IN (SELECT %s FROM jsonb_populate_recordset(NULL::%s, $2) k)) r`,
			columnList("s", p.src.cols), p.src.ident.Sanitize(), columnList("s", p.src.pk), columnList("k", p.src.pk), p.src.ident.Sanitize())
		if err := stx.QueryRow(ctx, q, id, b.keys).Scan(&b.rows); err != nil {
			return 0, fmt.Errorf("%s: read changed rows of %s: %w", src.p, p.src.label, err)
		}
		batches = append(batches, b)
	}
	ttx, err := beginTarget(ctx, tgt)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", tgt.p, err)
	}
	defer ttx.Rollback(context.WithoutCancel(ctx))
	for i := len(batches) - 1; i >= 0; i-- { // children first
		b := batches[i]
		tbl := b.p.tgt.ident.Sanitize()
		q := fmt.Sprintf(`DELETE FROM %s t WHERE t.tenant_id = $1 AND (%s) IN (SELECT %s FROM jsonb_populate_recordset(NULL::%s, $2) k)`,
			tbl, columnList("t", b.p.src.pk), columnList("k", b.p.src.pk), tbl)
		if _, err := ttx.Exec(ctx, q, id, b.keys); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", tgt.p, b.p.src.label, err)
		}
	}
	for _, b := range batches { // parents first
		tbl := b.p.tgt.ident.Sanitize()
		q := fmt.Sprintf(`INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_populate_recordset(NULL::%s, $1) r`,
			tbl, columnList("", b.p.src.cols), columnList("r", b.p.src.cols), tbl)
		if _, err := ttx.Exec(ctx, q, b.rows); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", tgt.p, b.p.src.label, err)
		}
	}
	if err := ttx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("%s: %w", tgt.p, err)
	}
	// Should this commit fail, the changes are taken again: copying a row again changes nothing.
	if err := stx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("%s: %w", src.p, err)
	}
	return len(changes), nil
}

// TableCheck is one table's rows of the moving tenant on both placements at the switch: how many
// and an order-independent checksum (the sum of a 64-bit hash of each row's text).
type TableCheck struct {
	Table    string `json:"table"`
	Rows     int64  `json:"rows"`
	Checksum string `json:"checksum"`
}

// checksum reads the count and checksum of tenant id's rows of t on s.
func checksum(ctx context.Context, s *site, t *table, cols []string, id string) (TableCheck, error) {
	c := TableCheck{Table: t.label}
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce(sum(hashtextextended(ROW(%s)::text, 0)::numeric), 0)::text
		FROM %s r WHERE r.tenant_id = $1`, columnList("r", cols), t.ident.Sanitize()), id).Scan(&c.Rows, &c.Checksum)
	return c, err
}

// ErrMismatch means the rows a move copied differ from the source's at the switch: the move did
// not switch, and is abandoned.
var ErrMismatch = fmt.Errorf("tenancymove: the copy differs from the source")

// verify compares, table by table, the tenant's rows on both sites: their count and checksum. Both
// sites are read at once.
func verify(ctx context.Context, id string, src, tgt *site, pairs []pair) ([]TableCheck, error) {
	srcChecks := make([]TableCheck, len(pairs))
	tgtChecks := make([]TableCheck, len(pairs))
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range pairs {
		g.Go(func() (err error) {
			srcChecks[i], err = checksum(gctx, src, p.src, p.src.cols, id)
			return err
		})
		g.Go(func() (err error) {
			tgtChecks[i], err = checksum(gctx, tgt, p.tgt, p.src.cols, id)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	var diffs []string
	for i := range pairs {
		if srcChecks[i] != tgtChecks[i] {
			diffs = append(diffs, fmt.Sprintf("%s: %d rows (checksum %s) in %s, %d (%s) in %s", pairs[i].src.label,
				srcChecks[i].Rows, srcChecks[i].Checksum, src.p, tgtChecks[i].Rows, tgtChecks[i].Checksum, tgt.p))
		}
	}
	if len(diffs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrMismatch, strings.Join(diffs, "; "))
	}
	return srcChecks, nil
}

// advanceSequences moves every identity or serial sequence of the target's tables past the rows it
// holds now, and past where the source's sequence was: new rows never take a moved row's value,
// nor one the tenant used before.
func advanceSequences(ctx context.Context, src, tgt *site, pairs []pair) error {
	for _, p := range pairs {
		for col, seq := range p.tgt.seqs {
			var max, srcLast int64
			if err := tgt.pool.QueryRow(ctx, fmt.Sprintf("SELECT coalesce(max(%s), 0)::bigint FROM %s", pgx.Identifier{col}.Sanitize(),
				p.tgt.ident.Sanitize())).Scan(&max); err != nil {
				return fmt.Errorf("%s: %s.%s: %w", tgt.p, p.tgt.label, col, err)
			}
			if s, ok := p.src.seqs[col]; ok {
				if err := src.pool.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM "+s).Scan(&srcLast); err != nil {
					return fmt.Errorf("%s: %s: %w", src.p, s, err)
				}
			}
			if _, err := tgt.pool.Exec(ctx, fmt.Sprintf(`SELECT setval($1::regclass, v) FROM (
				SELECT greatest($2::bigint, $3::bigint, CASE WHEN is_called THEN last_value ELSE last_value - 1 END) AS v FROM %s) s
				WHERE v >= (SELECT seqmin FROM pg_sequence WHERE seqrelid = $1::regclass)`, seq), seq, max, srcLast); err != nil {
				return fmt.Errorf("%s: %s: %w", tgt.p, seq, err)
			}
		}
	}
	return nil
}
