package tenancytest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PgBouncer is a PgBouncer of the test's own on loopback, in transaction mode, in front of the
// PostgreSQL server of a URL: the pooler the README says the runtime URL may point at.
type PgBouncer struct {
	dir  string
	port int
	cmd  *exec.Cmd
}

// PgBouncerOpts tunes StartPgBouncer. A nil *PgBouncerOpts means the defaults.
type PgBouncerOpts struct {
	// PoolSize is the server connections per database and user. Defaults to 10.
	PoolSize int
	// Users may log in through it (trust authentication, as the server's). Defaults to
	// tenancy_app and postgres.
	Users []string
	// ConnectQuery runs on every server connection it opens. Defaults to SessionCheckQuery, as
	// the README's configuration has it.
	ConnectQuery string
}

// SessionCheckQuery is the connect_query the README gives PgBouncer: a server connection that
// started with session defaults of the runtime role ends itself (tenancy.check_session), and so
// does one where the check fails for any other reason; in a database without the check (the
// maintenance database "postgres") it does nothing.
const SessionCheckQuery = "SET exit_on_error = on; DO $d$BEGIN IF pg_catalog.to_regprocedure($p$tenancy.check_session()$p$) IS NOT NULL THEN PERFORM tenancy.check_session(); END IF; END$d$; RESET exit_on_error"

// StartPgBouncer starts a PgBouncer in transaction mode that sends every database to the server
// of upstream (a postgres:// URL), skipping t when pgbouncer is not installed (Debian's
// `pgbouncer` package; CI installs it). It is stopped when t ends. As root it runs as the postgres
// user, since PgBouncer refuses to run as root.
func StartPgBouncer(t testing.TB, upstream string, opts *PgBouncerOpts) *PgBouncer {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Skip("pgbouncer is not installed (apt-get install pgbouncer)")
	}
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("tenancytest: upstream URL: %v", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	o := PgBouncerOpts{PoolSize: 10, Users: []string{"tenancy_app", "postgres"}, ConnectQuery: SessionCheckQuery}
	if opts != nil {
		if opts.ConnectQuery != "" {
			o.ConnectQuery = opts.ConnectQuery
		}
		if opts.PoolSize > 0 {
			o.PoolSize = opts.PoolSize
		}
		if len(opts.Users) > 0 {
			o.Users = opts.Users
		}
	}
	dir, err := os.MkdirTemp("", "tenancy-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	b := &PgBouncer{dir: dir}
	t.Cleanup(func() { b.stop(); os.RemoveAll(dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var users strings.Builder
	for _, name := range o.Users {
		fmt.Fprintf(&users, "%q \"\"\n", name)
	}
	conf := fmt.Sprintf(`[databases]
* = host=%s port=%s connect_query='%s'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
server_login_retry = 1
default_pool_size = %d
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, host, port, o.ConnectQuery, b.port, filepath.Join(dir, "users.txt"), o.PoolSize, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	for name, body := range map[string]string{"users.txt": users.String(), "pgbouncer.ini": conf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.cmd = exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root without a postgres user to run PgBouncer as")
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		b.cmd = exec.Command("runuser", "-u", "postgres", "--", bin, filepath.Join(dir, "pgbouncer.ini"))
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("tenancytest: start pgbouncer: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.Addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("tenancytest: pgbouncer did not start: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is host:port.
func (b *PgBouncer) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// URL returns a URL of database through the pooler, logging in as user.
func (b *PgBouncer) URL(user, database string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", url.User(user).String(), b.Addr(), database)
}

// Log returns what PgBouncer has logged.
func (b *PgBouncer) Log() string {
	log, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	return string(log)
}

// stop ends PgBouncer at once (SIGTERM to the pid it wrote: under runuser the command's own
// process is not PgBouncer's).
func (b *PgBouncer) stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	if pid, err := os.ReadFile(filepath.Join(b.dir, "pgbouncer.pid")); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
			syscall.Kill(n, syscall.SIGTERM)
		}
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-done
	}
	b.cmd = nil
}
