package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/bench/internal/refsvc"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// benchE2E drives the reference service — the tenancy binary's `tenancy serve`, every guard on:
// tenant resolution, a rate limit the load does not reach, the per-tenant bulkhead, scoped
// transactions — and a hand-written baseline service (e2e_baseline.go) over loopback, against
// the same tables and rows, with the same closed-loop load: N clients, each sending its next
// request when the last is answered. For each isolation model and each of GET /projects/{id}
// and POST /projects it alternates rounds between the two services and reports time per request
// (the inverse of requests/s: a cost, like every figure here) and p50/p99 latency.
func benchE2E(ctx context.Context, e *env) ([]result, error) {
	perModel, projects, rounds, round, workers := 5, 20, 3, 3*time.Second, 16
	if e.quick {
		perModel, projects, rounds, round, workers = 2, 10, 2, time.Second, 8
	}
	fmt.Fprintf(e.log, "e2e: starting the reference service (tenancy serve) and making %d tenants of each model\n", perModel)
	args := []string{"--plan-limits", "free=1000000/s"}
	// With TENANCY_BENCH_PROFILE_DIR set, the service's CPU is profiled during one extra round of
	// each model's GET and POST, written there as e2e-MODEL-OP.pprof.
	profileDir, pprofAddr := os.Getenv("TENANCY_BENCH_PROFILE_DIR"), ""
	var err error
	if profileDir != "" {
		if pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "--pprof-addr", pprofAddr)
	}
	svc, err := refsvc.Start(refsvc.DatabaseURL(uniqueName("tenancy_bench_e2e")), args...)
	if err != nil {
		return nil, err
	}
	defer svc.Stop()
	models := []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationSchema, tenancy.IsolationDatabase}
	type e2eTenant struct {
		t   *tenancy.Tenant
		ids []string // its projects
	}
	byModel := map[tenancy.Isolation][]*e2eTenant{}
	cfg := baselineConfig{Database: svc.DBURL}
	seed := &http.Client{}
	for _, m := range models {
		for i := range perModel {
			t, err := svc.CreateTenant(fmt.Sprintf("%s-%d", m, i), m)
			if err != nil {
				return nil, err
			}
			et := &e2eTenant{t: t}
			for j := range projects {
				p, code, err := postProject(seed, svc.Addr, t.Slug, fmt.Sprintf("seed %d", j))
				if err != nil || code != http.StatusCreated {
					return nil, fmt.Errorf("seed %s: %d %v", t.Slug, code, err)
				}
				et.ids = append(et.ids, p)
			}
			byModel[m] = append(byModel[m], et)
			bt := baselineTenant{Slug: t.Slug, ID: t.ID, Isolation: string(m)}
			switch m {
			case tenancy.IsolationSchema:
				bt.Schema = tenancycatalog.SchemaName(t.ID)
			case tenancy.IsolationDatabase:
				bt.Database = refsvc.DatabaseURL(t.Database)
			}
			cfg.Tenants = append(cfg.Tenants, bt)
		}
	}
	base, stopBase, err := startBaseline(cfg)
	if err != nil {
		return nil, err
	}
	defer stopBase()

	// Same answers before timing: each service returns a tenant's project, and the reference
	// service does not return it to another tenant.
	a, b := byModel[tenancy.IsolationShared][0], byModel[tenancy.IsolationShared][1]
	for _, addr := range []string{svc.Addr, base} {
		if code, err := getProject(seed, addr, a.t.Slug, a.ids[0]); err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("GET a project at %s: %d %v", addr, code, err)
		}
	}
	if code, _ := getProject(seed, svc.Addr, b.t.Slug, a.ids[0]); code != http.StatusNotFound {
		return nil, fmt.Errorf("another tenant's project: %d, want 404", code)
	}

	var out []result
	for _, m := range models {
		for _, op := range []string{"get", "post"} {
			tenants := byModel[m]
			call := func(c *http.Client, addr string, rng *rand.Rand) error {
				t := tenants[rng.IntN(len(tenants))]
				if op == "get" {
					code, err := getProject(c, addr, t.t.Slug, t.ids[rng.IntN(len(t.ids))])
					if err == nil && code != http.StatusOK {
						err = fmt.Errorf("GET: %d", code)
					}
					return err
				}
				_, code, err := postProject(c, addr, t.t.Slug, "load")
				if err == nil && code != http.StatusCreated {
					err = fmt.Errorf("POST: %d", code)
				}
				return err
			}
			var ours, theirs loadStats
			for r := range rounds {
				order := []*loadStats{&ours, &theirs}
				addrs := []string{svc.Addr, base}
				if r%2 == 1 {
					order[0], order[1], addrs[0], addrs[1] = order[1], order[0], addrs[1], addrs[0]
				}
				for k := range order {
					if err := drive(order[k], addrs[k], workers, round, call); err != nil {
						return nil, fmt.Errorf("%s %s: %w", m, op, err)
					}
				}
			}
			metric := fmt.Sprintf("%s-%s", m, op)
			if profileDir != "" {
				if err := profileRound(filepath.Join(profileDir, "e2e-"+metric+".pprof"), pprofAddr, svc.Addr, workers, round, call); err != nil {
					return nil, err
				}
			}
			fmt.Fprintf(e.log, "e2e: %-15s ours %7.0f req/s (p50 %5.2f ms, p99 %5.2f ms), baseline %7.0f req/s (p50 %5.2f ms, p99 %5.2f ms): %.2f× the baseline's throughput\n",
				metric, ours.rps(), ours.pct(50), ours.pct(99), theirs.rps(), theirs.pct(50), theirs.pct(99), ours.rps()/theirs.rps())
			name := fmt.Sprintf("hand-written service, %d clients (tenant from a map by Host, WHERE tenant_id by hand, plain pgxpool)", workers)
			out = append(out,
				result{Scenario: "e2e", Metric: metric, Unit: "µs/req", Ours: 1e6 / ours.rps(), Baseline: 1e6 / theirs.rps(), BaselineName: name},
				result{Scenario: "e2e", Metric: metric + "-p50", Unit: "ms", Ours: ours.pct(50), Baseline: theirs.pct(50), BaselineName: name},
				result{Scenario: "e2e", Metric: metric + "-p99", Unit: "ms", Ours: ours.pct(99), Baseline: theirs.pct(99), BaselineName: name})
		}
	}
	return out, nil
}

// freeAddr returns a loopback address with a port free now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// profileRound drives the service at addr for a round while its profiler (pprofAddr) records the
// CPU, and writes the profile to path.
func profileRound(path, pprofAddr, addr string, workers int, d time.Duration, call func(*http.Client, string, *rand.Rand) error) error {
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, max(1, int(d.Seconds()))))
		if err != nil {
			got <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err == nil {
			_, err = io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		got <- err
	}()
	var s loadStats
	if err := drive(&s, addr, workers, d+200*time.Millisecond, call); err != nil {
		return err
	}
	return <-got
}

// loadStats gathers what rounds of load against one service measured.
type loadStats struct {
	requests int
	elapsed  time.Duration
	lat      []time.Duration
}

func (s *loadStats) rps() float64 { return float64(s.requests) / s.elapsed.Seconds() }

func (s *loadStats) pct(p int) float64 {
	slices.Sort(s.lat)
	return float64(s.lat[(len(s.lat)-1)*p/100].Microseconds()) / 1000
}

// drive runs workers closed-loop clients against addr for d, each on a keep-alive connection of
// its own, and adds what they did to s. Any failed request fails the round.
func drive(s *loadStats, addr string, workers int, d time.Duration, call func(*http.Client, string, *rand.Rand) error) error {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	defer c.CloseIdleConnections()
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	start := time.Now()
	until := start.Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			var lat []time.Duration
			for time.Now().Before(until) {
				t0 := time.Now()
				if err := call(c, addr, rng); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			s.lat = append(s.lat, lat...)
			s.requests += len(lat)
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.elapsed += time.Since(start)
	return failed
}

func getProject(c *http.Client, addr, slug, id string) (int, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/projects/"+id, nil)
	req.Host = slug + ".localhost"
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func postProject(c *http.Client, addr, slug, name string) (string, int, error) {
	req, _ := http.NewRequest("POST", "http://"+addr+"/projects", strings.NewReader(`{"name":"`+name+`"}`))
	req.Host = slug + ".localhost"
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var p struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil && resp.StatusCode == http.StatusCreated {
		return "", resp.StatusCode, err
	}
	return p.ID, resp.StatusCode, nil
}

// startBaseline runs this binary again as the baseline service on cfg, and returns its address
// and a function that stops it.
func startBaseline(cfg baselineConfig) (string, func(), error) {
	dir, err := os.MkdirTemp("", "tenancy-e2e-baseline")
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "config.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), baselineEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if addr, ok := strings.CutPrefix(lines.Text(), "baseline: serving on "); ok {
			go io.Copy(io.Discard, out)
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, errors.New("the baseline service stopped before serving")
}
