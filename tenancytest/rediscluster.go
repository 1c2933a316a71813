package tenancytest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of the test's own: three masters (no replicas) on loopback,
// each on a free port, started from the installed redis-server and joined with redis-cli.
type RedisCluster struct {
	Addrs []string // host:port of each master
	cmds  []*exec.Cmd
	dir   string
}

// StartRedisCluster starts a three-master Redis Cluster (skipping t when redis-server or
// redis-cli is not installed); it is stopped and removed when t ends.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool + " is not installed")
		}
	}
	dir, err := os.MkdirTemp("", "tenancy-redis-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &RedisCluster{dir: dir}
	t.Cleanup(c.stop)
	for range 3 {
		port, err := clusterPort()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"), "--dir", dir,
			"--save", "", "--appendonly", "no", "--cluster-node-timeout", "2000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.cmds = append(c.cmds, cmd)
		c.Addrs = append(c.Addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	ctx := context.Background()
	for _, addr := range c.Addrs {
		waitRedis(t, addr, func(rdb *redis.Client) bool { return rdb.Ping(ctx).Err() == nil })
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	if out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("tenancytest: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range c.Addrs {
		waitRedis(t, addr, func(rdb *redis.Client) bool {
			info, err := rdb.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}
	return c
}

// clusterPort returns a free port whose cluster bus port (10000 above) is free too.
func clusterPort() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, fmt.Errorf("tenancytest: no free port pair for a cluster node")
}

func waitRedis(t testing.TB, addr string, ready func(*redis.Client) bool) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !ready(rdb) {
		if time.Now().After(deadline) {
			t.Fatalf("tenancytest: the Redis Cluster node %s did not come up", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the cluster as tenancyredis.Connect (and serve --redis-url) takes it.
func (c *RedisCluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs, ",") }

// Client returns a cluster client with generous timeouts, closed when t ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func (c *RedisCluster) stop() {
	for _, cmd := range c.cmds {
		if cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	os.RemoveAll(c.dir)
}
