package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymove"
)

// moveFlags are the flags of tenant move.
type moveFlags struct {
	to, server              *string
	resume, abort, finalize *bool
	grace, maxPause         *time.Duration
}

// moveAction says what a tenant move call asks for, checked before the database is touched.
func (f moveFlags) action() (string, error) {
	n := 0
	action := "move"
	for name, set := range map[string]bool{"resume": *f.resume, "abort": *f.abort, "finalize": *f.finalize} {
		if set {
			n++
			action = name
		}
	}
	switch {
	case n > 1:
		return "", usagef("tenant move takes one of --resume, --abort and --finalize")
	case n == 1 && *f.to != "":
		return "", usagef("--to starts a move; --%s works on the move in progress", action)
	case n == 0 && *f.to == "":
		return "", usagef("tenant move needs --to shared|schema|database (or --resume, --abort, --finalize)")
	case n == 0:
		iso, err := tenancy.ParseIsolation(*f.to)
		if err != nil {
			return "", usagef("%s", oneLine(err))
		}
		if iso != tenancy.IsolationDatabase && *f.server != "" {
			return "", usagef("--server places a database tenant; --to %s takes none", iso)
		}
	}
	return action, nil
}

// moveTenant runs tenant move for t.
func moveTenant(ctx context.Context, cat *tenancycatalog.Catalog, t *tenancy.Tenant, f moveFlags, migrations string, dbf dbFlags,
	stdout, stderr io.Writer, asJSON bool) error {
	m, err := newMigrator(cat.Pool(), migrations, dbf)
	if err != nil {
		return err
	}
	// Its steps are the bar's (or the JSON's); its warnings go to stderr.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mover, err := tenancymove.New(cat, &tenancymove.Config{Migrator: m, Grace: *f.grace, MaxPause: *f.maxPause, Logger: logger})
	if err != nil {
		return err
	}
	action, _ := f.action()
	var bar *progressBar
	if !asJSON {
		bar = newProgressBar(stderr)
	}
	var res *tenancymove.Result
	switch action {
	case "move":
		iso, _ := tenancy.ParseIsolation(*f.to)
		to := tenancycatalog.Placement{Isolation: iso, Server: *f.server}
		if iso == tenancy.IsolationDatabase && to.Server == "" {
			to.Server = tenancycatalog.DefaultServer
		}
		res, err = mover.Move(ctx, t.ID, &tenancymove.Opts{To: to, Progress: bar.show})
	case "resume":
		res, err = mover.Resume(ctx, t.ID, bar.show)
	case "abort", "finalize":
		var mv *tenancycatalog.Move
		if action == "abort" {
			mv, err = mover.Abort(ctx, t.ID)
		} else {
			mv, err = mover.Finalize(ctx, t.ID)
		}
		if err != nil {
			return moveErr(err, t.Slug)
		}
		if asJSON {
			return writeJSON(stdout, mv)
		}
		printMove(stdout, mv)
		return nil
	}
	bar.done()
	if err != nil {
		return moveErr(err, t.Slug)
	}
	if asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "moved %s from %s to %s: %d rows in %d tables copied in %s, %d changes caught up, writes paused %s (switch attempts: %d), %s in all\n",
		t.Slug, res.Move.From, res.Move.To, rowsOf(res.Tables), len(res.Tables), res.Copy.Round(time.Millisecond), res.Changes,
		res.Pause.Round(time.Millisecond), res.Attempts, res.Total.Round(time.Millisecond))
	for _, c := range res.Tables {
		fmt.Fprintf(stdout, "  %-24s %10d rows  checksum %s (same in both)\n", c.Table, c.Rows, c.Checksum)
	}
	if res.Move.FinalizeAfter != nil {
		fmt.Fprintf(stdout, "the old placement's data stays until %s (tenancy tenant move %s --finalize removes it now; moving back is a move)\n",
			res.Move.FinalizeAfter.UTC().Format(time.RFC3339), t.Slug)
	}
	return nil
}

func rowsOf(cs []tenancymove.TableCheck) int64 {
	var n int64
	for _, c := range cs {
		n += c.Rows
	}
	return n
}

// moveErr adds what to do to a move's errors.
func moveErr(err error, slug string) error {
	switch {
	case errors.Is(err, tenancymove.ErrNoMove):
		return &cliRefusal{fmt.Sprintf("%s has no move to work on: %v", slug, err), err}
	case errors.Is(err, tenancymove.ErrSamePlacement), errors.Is(err, tenancymove.ErrMoveInProgress), errors.Is(err, tenancymove.ErrSwitched),
		errors.Is(err, tenancymove.ErrNotMovable):
		return err
	case errors.Is(err, tenancymove.ErrMismatch):
		return fmt.Errorf("%w; the move was undone: %s is served from where it was", err, slug)
	}
	return fmt.Errorf("%w; %s is served from exactly one placement: tenancy tenant move %s --resume finishes the move, --abort undoes it", err, slug, slug)
}

// printMove prints a move's state, for tenant show and the ends of a move.
func printMove(w io.Writer, m *tenancycatalog.Move) {
	fmt.Fprintf(w, "move %d:\t%s → %s, %s", m.ID, m.From, m.To, m.State)
	if m.State == tenancycatalog.MoveCopying {
		fmt.Fprintf(w, " (step: %s)", m.Step)
	}
	fmt.Fprintf(w, ", started %s", m.StartedAt.UTC().Format(time.RFC3339))
	if m.SwitchedAt != nil {
		fmt.Fprintf(w, ", switched %s", m.SwitchedAt.UTC().Format(time.RFC3339))
	}
	if m.State == tenancycatalog.MoveSwitched && m.FinalizeAfter != nil {
		fmt.Fprintf(w, ", old data kept until %s", m.FinalizeAfter.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if m.LastError != "" {
		fmt.Fprintf(w, "move stopped:\t%s (--resume finishes it, --abort undoes it)\n", m.LastError)
	}
}

// progressBar draws a move's progress on a terminal (a line redrawn in place), or writes one
// line per step elsewhere.
type progressBar struct {
	w        io.Writer
	terminal bool
	step     string
	drawn    bool
}

func newProgressBar(w io.Writer) *progressBar {
	b := &progressBar{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.terminal = true
		}
	}
	return b
}

func (b *progressBar) show(p tenancymove.Progress) {
	if b == nil {
		return
	}
	var copied, total int64
	for _, t := range p.Tables {
		copied, total = copied+t.Copied, total+t.Total
	}
	if !b.terminal {
		if p.Step != b.step {
			b.step = p.Step
			fmt.Fprintf(b.w, "%s", p.Step)
			if p.Step == "catch up" || p.Step == "switch" {
				fmt.Fprintf(b.w, " (%d rows copied)", copied)
			}
			fmt.Fprintln(b.w)
		}
		return
	}
	const width = 30
	filled := width
	if total > 0 {
		filled = int(int64(width) * min(copied, total) / total)
	}
	table := ""
	for _, t := range p.Tables {
		if t.Copied < t.Total {
			table = t.Table
			break
		}
	}
	fmt.Fprintf(b.w, "\r\033[K%-9s [%s%s] %d/%d rows %s", p.Step, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), copied, total, table)
	if p.Changes > 0 {
		fmt.Fprintf(b.w, " · %d changes caught up", p.Changes)
	}
	b.drawn = true
}

func (b *progressBar) done() {
	if b != nil && b.drawn {
		fmt.Fprintln(b.w)
	}
}
