package tenancytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// PrivatePostgres is a PostgreSQL server of the test's own, in a temporary directory on a free
// port, so a test can restart it without touching the server other tests share.
type PrivatePostgres struct {
	t    testing.TB // nil for NewPostgres
	bin  string
	dir  string
	port int
	opts string
}

// StartPostgres initializes and starts a private PostgreSQL (skipping t when its binaries are not
// installed); it is stopped and removed when t ends. As root it runs the server as the postgres
// user, since PostgreSQL refuses to run as root.
func StartPostgres(t testing.TB) *PrivatePostgres {
	t.Helper()
	p, err := NewPostgres()
	if errors.Is(err, ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("tenancytest: %v", err)
	}
	p.t = t
	t.Cleanup(p.Stop)
	return p
}

// ErrNoPostgres means the PostgreSQL server binaries (initdb, pg_ctl) are not installed, or, as
// root, there is no postgres user to run them as.
var ErrNoPostgres = errors.New("tenancytest: cannot run a private PostgreSQL here")

// NewPostgres is StartPostgres for a program that is not a test (a benchmark): Stop stops and
// removes the server.
func NewPostgres() (*PrivatePostgres, error) {
	bin := postgresBin()
	if bin == "" {
		return nil, fmt.Errorf("%w: the server binaries (initdb, pg_ctl) are not installed", ErrNoPostgres)
	}
	dir, err := os.MkdirTemp("", "tenancy-pg-")
	if err != nil {
		return nil, err
	}
	p := &PrivatePostgres{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%w: running as root without a postgres user to run PostgreSQL as", ErrNoPostgres)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if out, err := p.run("initdb", "-D", dir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"); err != nil {
		p.Stop()
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.Stop()
		return nil, err
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p.opts = fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off", p.port, dir)
	if out, err := p.run("pg_ctl", "-D", dir, "-l", filepath.Join(dir, "log"), "-o", p.opts, "-w", "start"); err != nil {
		p.Stop()
		return nil, fmt.Errorf("start PostgreSQL: %w\n%s", err, out)
	}
	return p, nil
}

// Stop stops the server at once and removes its files.
func (p *PrivatePostgres) Stop() {
	p.run("pg_ctl", "-D", p.dir, "-m", "immediate", "-w", "stop")
	os.RemoveAll(p.dir)
}

func postgresBin() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Strings(matches)
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1])
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path)
	}
	return ""
}

// run runs a PostgreSQL tool and returns its output. The output goes through a file, not a pipe:
// a server the tool starts must not hold the test's pipe open.
func (p *PrivatePostgres) run(tool string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, tool), args...)
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	}
	out, err := os.CreateTemp("", "tenancy-pg-out-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	return b, err
}

// Restart stops the server (fast: sessions are ended) and starts it again on the same port.
func (p *PrivatePostgres) Restart() {
	p.t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.dir, "-l", filepath.Join(p.dir, "log"), "-m", "fast", "-w", "restart", "-o", p.opts); err != nil {
		p.t.Fatalf("tenancytest: restart PostgreSQL: %v\n%s", err, out)
	}
}

// Down stops the server at once, as a crash would, keeping its files; Up starts it again.
func (p *PrivatePostgres) Down() {
	p.t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.dir, "-m", "immediate", "-w", "stop"); err != nil {
		p.t.Fatalf("tenancytest: stop PostgreSQL: %v\n%s", err, out)
	}
}

// Up starts a server Down stopped, on the same port.
func (p *PrivatePostgres) Up() {
	p.t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.dir, "-l", filepath.Join(p.dir, "log"), "-o", p.opts, "-w", "start"); err != nil {
		p.t.Fatalf("tenancytest: start PostgreSQL: %v\n%s", err, out)
	}
}

// Port is the port the server listens on (on 127.0.0.1).
func (p *PrivatePostgres) Port() int { return p.port }

// URL returns the URL of database on the server, as postgres.
func (p *PrivatePostgres) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, database)
}
