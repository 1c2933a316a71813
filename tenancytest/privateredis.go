package tenancytest

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// PrivateRedis is a redis-server of the test's own on a free port, so a test can stop it and start
// it again without touching the Redis other tests share.
type PrivateRedis struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server (skipping t when none is installed); it is stopped
// when t ends.
func StartRedis(t testing.TB) *PrivateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &PrivateRedis{t: t, port: ln.Addr().(*net.TCPAddr).Port}
	ln.Close()
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start starts the server (again) on its port and waits until it answers.
func (p *PrivateRedis) Start() {
	p.t.Helper()
	p.cmd = exec.Command("redis-server", "--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr()})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			p.t.Fatal("tenancytest: the private redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server, as a crash would.
func (p *PrivateRedis) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

// Addr is host:port.
func (p *PrivateRedis) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// URL is a redis:// URL of the server.
func (p *PrivateRedis) URL() string { return "redis://" + p.Addr() + "/0" }
