// Command load drives the reference service over loopback with many tenants of the three
// isolation models and reports throughput, latency percentiles and cross-tenant reads, which must
// be zero: every project a tenant lists is checked against the projects it created.
//
//	go run ./bench/load [-tenants 30] [-workers 32] [-duration 10s]
//
// It builds the tenancy command and runs `tenancy serve` as its own process, as a user deploys
// it, against the local PostgreSQL (TEST_DATABASE_URL), on a database of its own that it drops
// afterwards with everything the service made (tenancy uninstall).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
)

func main() {
	tenants := flag.Int("tenants", 30, "tenants, spread over the three isolation models")
	workers := flag.Int("workers", 32, "concurrent clients")
	duration := flag.Duration("duration", 10*time.Second, "how long to drive the service")
	flag.Parse()
	if err := run(*tenants, *workers, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type tenantState struct {
	t   *tenancy.Tenant
	mu  sync.Mutex
	ids map[string]bool // projects this tenant created, acknowledged
	// unknown are listed projects not yet acknowledged to this tenant when listed (a create in
	// flight on another worker); they are settled against every tenant's projects at the end.
	unknown []string
}

func run(nTenants, workers int, duration time.Duration) error {
	admin := os.Getenv("TEST_DATABASE_URL")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	name := fmt.Sprintf("tenancy_load_%d", time.Now().UnixNano())
	u, err := url.Parse(admin)
	if err != nil {
		return err
	}
	u.Path = "/" + name
	dbURL := u.String()
	svc, err := startService(dbURL)
	if err != nil {
		return err
	}
	defer svc.stop()
	base := "http://" + svc.addr
	models := []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationSchema, tenancy.IsolationDatabase}
	states := make([]*tenantState, nTenants)
	for i := range states {
		t, err := svc.createTenant(fmt.Sprintf("load-%d", i), models[i%3])
		if err != nil {
			return err
		}
		states[i] = &tenantState{t: t, ids: map[string]bool{}}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}

	var (
		lat                         = make([][]time.Duration, workers)
		requests, failures, crossed atomic.Int64
		wg                          sync.WaitGroup
		until                       = time.Now().Add(duration)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(until) {
				st := states[rng.IntN(len(states))]
				host := st.t.Slug + ".localhost"
				start := time.Now()
				var err error
				if rng.IntN(10) < 3 {
					err = create(client, base, host, st)
				} else {
					err = list(client, base, host, st)
				}
				lat[w] = append(lat[w], time.Since(start))
				requests.Add(1)
				if err != nil {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// Settle: a listed project that another tenant created is a cross-tenant read.
	owner := map[string]*tenantState{}
	for _, st := range states {
		for id := range st.ids {
			owner[id] = st
		}
	}
	for _, st := range states {
		for _, id := range st.unknown {
			if o := owner[id]; o != st {
				crossed.Add(1)
			}
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p int) time.Duration { return all[len(all)*p/100] }
	fmt.Printf("load: %d tenants (shared, schema, database), %d workers, %v\n", nTenants, workers, duration)
	fmt.Printf("load: %d requests, %.0f req/s, p50 %v, p99 %v, %d failed, %d cross-tenant reads\n",
		requests.Load(), float64(requests.Load())/duration.Seconds(), pct(50).Round(time.Microsecond),
		pct(99).Round(time.Microsecond), failures.Load(), crossed.Load())
	if crossed.Load() != 0 {
		return fmt.Errorf("%d CROSS-TENANT READS", crossed.Load())
	}
	if failures.Load() != 0 {
		return fmt.Errorf("%d requests failed", failures.Load())
	}
	return nil
}

// service is the reference service, run as its own process from the tenancy binary, on a
// database of its own: what a user deploys, every guard on.
type service struct {
	bin, dbURL, token, addr string
	cmd                     *exec.Cmd
	dir                     string
}

// startService builds the tenancy command, starts `tenancy serve` on dbURL (made if absent) with
// the reference service's migrations and a rate limit the load does not reach, and waits until it
// serves.
func startService(dbURL string) (*service, error) {
	dir, err := os.MkdirTemp("", "tenancy-load")
	if err != nil {
		return nil, err
	}
	s := &service{bin: filepath.Join(dir, "tenancy"), dbURL: dbURL, token: "load-token", dir: dir}
	build := exec.Command("go", "build", "-o", s.bin, "github.com/gotenancy/tenancy/cmd/tenancy")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build the tenancy command: %w", err)
	}
	s.cmd = exec.Command(s.bin, "serve", "--database-url", dbURL, "--migrations", "demo", "--addr", "127.0.0.1:0",
		"--admin-token", s.token, "--plan-limits", "free=1000000/s")
	s.cmd.Stderr = os.Stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// "tenancy: serving on 127.0.0.1:PORT (try: …)"
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "tenancy: serving on "); ok {
			s.addr, _, _ = strings.Cut(rest, " ")
			break
		}
	}
	if s.addr == "" {
		s.stop()
		return nil, errors.New("tenancy serve stopped before serving")
	}
	go io.Copy(io.Discard, out)
	return s, nil
}

// createTenant creates and provisions a tenant through the admin API.
func (s *service) createTenant(slug string, iso tenancy.Isolation) (*tenancy.Tenant, error) {
	body, _ := json.Marshal(map[string]string{"slug": slug, "isolation": string(iso)})
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/admin/tenants", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var t tenancy.Tenant
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&t) != nil || t.Status != tenancy.StatusActive {
		return nil, fmt.Errorf("create tenant %s: %s", slug, resp.Status)
	}
	return &t, nil
}

// stop ends the service, then removes everything it made: its tenants' schemas and databases,
// its templates and catalog (tenancy uninstall), and its database.
func (s *service) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		_ = s.cmd.Wait()
	}
	un := exec.Command(s.bin, "uninstall", "--yes", "--database-url", s.dbURL)
	un.Stdout, un.Stderr = io.Discard, os.Stderr
	_ = un.Run()
	admin := os.Getenv("TEST_DATABASE_URL")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	if conn, err := pgx.Connect(context.Background(), admin); err == nil {
		u, _ := url.Parse(s.dbURL)
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+" WITH (FORCE)")
		conn.Close(context.Background())
	}
	os.RemoveAll(s.dir)
}

func create(c *http.Client, base, host string, st *tenantState) error {
	req, _ := http.NewRequest("POST", base+"/projects", strings.NewReader(`{"name":"load"}`))
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var p struct{ ID string }
	if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&p) != nil {
		return fmt.Errorf("POST %s: %d", host, resp.StatusCode)
	}
	st.mu.Lock()
	st.ids[p.ID] = true
	st.mu.Unlock()
	return nil
}

// list lists the tenant's projects and keeps those not (yet) known to be its own for settling.
func list(c *http.Client, base, host string, st *tenantState) error {
	req, _ := http.NewRequest("GET", base+"/projects", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var ps []struct{ ID string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &ps) != nil {
		return fmt.Errorf("GET %s: %d", host, resp.StatusCode)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, p := range ps {
		if !st.ids[p.ID] {
			st.unknown = append(st.unknown, p.ID)
		}
	}
	return nil
}
