package tenancymove

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/big"
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

// pipeCopy streams COPY out (… TO STDOUT) on stx into COPY in (… FROM STDIN) on ttx, through
// counter when it is given.
func pipeCopy(ctx context.Context, stx, ttx pgx.Tx, out, in string, counter ...*lineCounter) error {
	pr, pw := io.Pipe()
	var w io.Writer = pw
	if len(counter) > 0 {
		counter[0].w = pw
		w = counter[0]
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := stx.Conn().PgConn().CopyTo(gctx, w, out)
		pw.CloseWithError(err)
		return err
	})
	g.Go(func() error {
		_, err := ttx.Conn().PgConn().CopyFrom(gctx, pr, in)
		pr.CloseWithError(err)
		return err
	})
	return g.Wait()
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
		counter := &lineCounter{report: func(n int64) { prog.setCopied(i, n) }}
		if err := pipeCopy(ctx, stx, ttx, out, in, counter); err != nil {
			return fmt.Errorf("copy %s: %w", p.src.label, err)
		}
		prog.setCopied(i, counter.n)
	}
	if err := ttx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: %w", tgt.p, err)
	}
	return nil
}

// roundHooks let a catch-up round do more inside its transactions: beforeApply runs on the
// target's transaction before the round's rows are written there, with the keys of the round by
// table (JSON objects); inSnapshot runs after the target committed, inside the source's
// transaction — in the snapshot the round read the rows in — when the round took every change
// recorded in it.
type roundHooks struct {
	beforeApply func(ctx context.Context, ttx pgx.Tx, keys map[string][]string) error
	inSnapshot  func(ctx context.Context, stx pgx.Tx) error
}

// catchUp copies again, from the source's current state, the rows whose changes the capture
// triggers recorded (at most limit changes): on the target each is deleted and, if the source
// still has it, inserted. The changes are taken in the same snapshot as the rows are read, and
// taken for good only once the target committed. It returns how many changes it took.
func (mv *Mover) catchUp(ctx context.Context, id string, moveID int64, src, tgt *site, pairs []pair, limit int, hooks *roundHooks) (int, error) {
	if hooks == nil {
		hooks = &roundHooks{}
	}
	stx, err := src.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", src.p, err)
	}
	defer stx.Rollback(context.WithoutCancel(ctx))
	changes, err := tenancycatalog.TakeChanges(ctx, stx, moveID, limit)
	if err != nil {
		return 0, err
	}
	if len(changes) == 0 {
		if hooks.inSnapshot != nil {
			if err := hooks.inSnapshot(ctx, stx); err != nil {
				return 0, err
			}
		}
		return 0, stx.Commit(ctx)
	}
	keys := map[string][]string{}
	seen := map[string]bool{}
	for _, c := range changes {
		if k := c.Table + "\x00" + string(c.Key); !seen[k] {
			seen[k] = true
			keys[c.Table] = append(keys[c.Table], string(c.Key))
		}
	}
	type batch struct {
		p    pair
		keys []byte
	}
	var batches []batch
	for _, p := range pairs {
		if list := keys[p.src.label]; len(list) > 0 {
			sort.Strings(list)
			batches = append(batches, batch{p: p, keys: keyArray(list)})
		}
	}
	ttx, err := beginTarget(ctx, tgt)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", tgt.p, err)
	}
	defer ttx.Rollback(context.WithoutCancel(ctx))
	if hooks.beforeApply != nil {
		if err := hooks.beforeApply(ctx, ttx, keys); err != nil {
			return 0, err
		}
	}
	for i := len(batches) - 1; i >= 0; i-- { // children first
		b := batches[i]
		tbl := b.p.tgt.ident.Sanitize()
		q := fmt.Sprintf(`DELETE FROM %s t WHERE t.tenant_id = $1 AND (%s) IN (SELECT %s FROM jsonb_populate_recordset(NULL::%s, $2) k)`,
			tbl, columnList("t", b.p.src.pk), columnList("k", b.p.src.pk), tbl)
		if _, err := ttx.Exec(ctx, q, id, b.keys); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", tgt.p, b.p.src.label, err)
		}
	}
	for _, b := range batches { // parents first: the rows as the source has them now, with COPY
		// COPY takes no parameters: the keys are a literal (standard_conforming_strings is on in
		// the mover's sessions, so doubling quotes is all the quoting there is).
		src := b.p.src.ident.Sanitize()
		out := fmt.Sprintf(`COPY (SELECT %s FROM %s s WHERE s.tenant_id = %s AND (%s) IN (SELECT %s FROM jsonb_populate_recordset(NULL::%s, %s::jsonb) k)) TO STDOUT`,
			columnList("s", b.p.src.cols), src, quoteID(id), columnList("s", b.p.src.pk), columnList("k", b.p.src.pk), src,
			"'"+strings.ReplaceAll(string(b.keys), "'", "''")+"'")
		in := fmt.Sprintf("COPY %s (%s) FROM STDIN", b.p.tgt.ident.Sanitize(), columnList("", b.p.src.cols))
		if err := pipeCopy(ctx, stx, ttx, out, in); err != nil {
			return 0, fmt.Errorf("copy changed rows of %s: %w", b.p.src.label, err)
		}
	}
	if err := ttx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("%s: %w", tgt.p, err)
	}
	if hooks.inSnapshot != nil && len(changes) < limit {
		if err := hooks.inSnapshot(ctx, stx); err != nil {
			return 0, err
		}
	}
	// Should this commit fail, the changes are taken again: copying a row again changes nothing.
	if err := stx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("%s: %w", src.p, err)
	}
	return len(changes), nil
}

// keyArray is keys (JSON objects) as one JSON array.
func keyArray(keys []string) []byte { return []byte("[" + strings.Join(keys, ",") + "]") }

// TableCheck is one table's rows of the moving tenant on both placements at the switch: how many
// and an order-independent checksum (the sum of a 64-bit hash of each row's text).
type TableCheck struct {
	Table    string `json:"table"`
	Rows     int64  `json:"rows"`
	Checksum string `json:"checksum"`
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// checksum reads the count and checksum of tenant id's rows of t on q — of those whose keys are in
// keys (a JSON array of key objects) when keys is not nil.
func checksum(ctx context.Context, q querier, t *table, cols []string, id string, keys []byte) (TableCheck, error) {
	c := TableCheck{Table: t.label}
	where, args := "", []any{id}
	if keys != nil {
		where = fmt.Sprintf(" AND (%s) IN (SELECT %s FROM jsonb_populate_recordset(NULL::%s, $2) k)",
			columnList("r", t.pk), columnList("k", t.pk), t.ident.Sanitize())
		args = append(args, keys)
	}
	err := q.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce(sum(hashtextextended(ROW(%s)::text, 0)::numeric), 0)::text
		FROM %s r WHERE r.tenant_id = $1%s`, columnList("r", cols), t.ident.Sanitize(), where), args...).Scan(&c.Rows, &c.Checksum)
	if err != nil {
		return c, fmt.Errorf("checksum %s: %w", t.label, err)
	}
	return c, nil
}

// plus returns c with d's rows added and o's taken away: checksums are sums, so the checksum of a
// table after some rows changed is the one before, less the changed rows' before, plus their after.
func (c TableCheck) plus(d, o TableCheck) TableCheck {
	sum, _ := new(big.Int).SetString(c.Checksum, 10)
	add, _ := new(big.Int).SetString(d.Checksum, 10)
	sub, _ := new(big.Int).SetString(o.Checksum, 10)
	if sum == nil || add == nil || sub == nil {
		return TableCheck{Table: c.Table, Rows: -1, Checksum: "invalid"}
	}
	return TableCheck{Table: c.Table, Rows: c.Rows + d.Rows - o.Rows, Checksum: sum.Add(sum, add).Sub(sum, sub).String()}
}

// ErrMismatch means the rows a move copied differ from the source's: the move did not switch,
// and is undone.
var ErrMismatch = fmt.Errorf("tenancymove: the copy differs from the source")

// mismatch says how srcChecks and tgtChecks (of pairs, in order) differ, or returns nil.
func mismatch(what string, src, tgt *site, pairs []pair, srcChecks, tgtChecks []TableCheck) error {
	var diffs []string
	for i := range pairs {
		if srcChecks[i] != tgtChecks[i] {
			diffs = append(diffs, fmt.Sprintf("%s: %d rows (checksum %s) in %s, %d (%s) in %s", pairs[i].src.label,
				srcChecks[i].Rows, srcChecks[i].Checksum, src.p, tgtChecks[i].Rows, tgtChecks[i].Checksum, tgt.p))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w (%s): %s", ErrMismatch, what, strings.Join(diffs, "; "))
	}
	return nil
}

// settle brings the target to the source's state in one snapshot of the source — catch-up rounds
// until one takes every change recorded in its snapshot — and compares both there, table by table
// (row counts and checksums, the source's read in that snapshot, the target's at once beside
// them), while the tenant's writes go on. It returns the tables' checks at that snapshot.
func (mv *Mover) settle(ctx context.Context, id string, moveID int64, src, tgt *site, pairs []pair, prog *progress) ([]TableCheck, error) {
	srcChecks := make([]TableCheck, len(pairs))
	tgtChecks := make([]TableCheck, len(pairs))
	compared := false
	hooks := &roundHooks{inSnapshot: func(ctx context.Context, stx pgx.Tx) error {
		// One after the other, not at once: a move takes one core at a time from the tenants served
		// meanwhile.
		for i, p := range pairs {
			var err error
			if srcChecks[i], err = checksum(ctx, stx, p.src, p.src.cols, id, nil); err != nil {
				return fmt.Errorf("%s: %w", src.p, err)
			}
			if tgtChecks[i], err = checksum(ctx, tgt.pool, p.tgt, p.src.cols, id, nil); err != nil {
				return fmt.Errorf("%s: %w", tgt.p, err)
			}
		}
		compared = true
		return mismatch("before the switch", src, tgt, pairs, srcChecks, tgtChecks)
	}}
	for !compared {
		n, err := mv.catchUp(ctx, id, moveID, src, tgt, pairs, 50000, hooks)
		if err != nil {
			return nil, err
		}
		prog.changed(n)
	}
	return srcChecks, nil
}

// advanceSequences moves every identity or serial sequence of the target's tables past the moved
// rows, and past where the source's sequence was (never back): new rows never take a moved row's
// value, nor one the tenant used before.
func advanceSequences(ctx context.Context, id string, src, tgt *site, pairs []pair) error {
	for _, p := range pairs {
		for col, seq := range p.tgt.seqs {
			var max, srcLast int64
			if err := tgt.pool.QueryRow(ctx, fmt.Sprintf("SELECT coalesce(max(%s), 0)::bigint FROM %s WHERE tenant_id = $1", pgx.Identifier{col}.Sanitize(),
				p.tgt.ident.Sanitize()), id).Scan(&max); err != nil {
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
