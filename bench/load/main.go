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
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/bench/internal/refsvc"
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
	svc, err := refsvc.Start(refsvc.DatabaseURL(fmt.Sprintf("tenancy_load_%d", time.Now().UnixNano())), "--plan-limits", "free=1000000/s")
	if err != nil {
		return err
	}
	defer svc.Stop()
	base := "http://" + svc.Addr
	models := []tenancy.Isolation{tenancy.IsolationShared, tenancy.IsolationSchema, tenancy.IsolationDatabase}
	states := make([]*tenantState, nTenants)
	for i := range states {
		t, err := svc.CreateTenant(fmt.Sprintf("load-%d", i), models[i%3])
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
