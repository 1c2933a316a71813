package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/tenancytest"
)

// The reference service with its runtime URL on PgBouncer in transaction mode (a real one, on
// loopback, with fewer server connections than the service has clients): it starts, and serves
// tenants of all three models under sustained concurrent load with no error and no row of one
// tenant in another's answers. The catalog, its listener, migrations and provisioning use the
// direct URL.
func TestServeBehindPgBouncer(t *testing.T) {
	t.Parallel()
	direct := newDatabaseURL(t)
	u, _ := url.Parse(direct)
	dbname := strings.TrimPrefix(u.Path, "/")
	bouncer := tenancytest.StartPgBouncer(t, direct, &tenancytest.PgBouncerOpts{PoolSize: 4})
	addr, stop := startServe(t, "--demo", "--database-url", direct, "--runtime-url", bouncer.URL("tenancy_app", dbname),
		"--plan-limits", "free=1000000/min;pro=1000000/min", "--concurrency", "256")
	defer stop()

	slugs := []string{"acme", "globex", "initech"}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	do := func(method, slug, path, body string) (int, []byte, error) {
		req, _ := http.NewRequest(method, "http://"+addr+path, bytes.NewBufferString(body))
		req.Host = slug + ".localhost"
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	var (
		mu       sync.Mutex
		owner    = map[string]string{} // project id -> slug that made it
		requests atomic.Int64
		failures atomic.Int64
		foreign  atomic.Int64
		firstErr atomic.Value
	)
	fail := func(format string, args ...any) {
		if failures.Add(1) == 1 {
			firstErr.Store(fmt.Sprintf(format, args...))
		}
	}
	deadline := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				slug := slugs[(w+i)%len(slugs)]
				requests.Add(1)
				switch i % 4 {
				case 0: // create
					code, b, err := do("POST", slug, "/projects", fmt.Sprintf(`{"name":"p %d %d"}`, w, i))
					var p struct{ ID string }
					if err != nil || code != 201 || json.Unmarshal(b, &p) != nil {
						fail("POST /projects as %s: %d %s %v", slug, code, b, err)
						continue
					}
					mu.Lock()
					owner[p.ID] = slug
					mu.Unlock()
				case 1, 2: // list, and check every row is the tenant's own
					code, b, err := do("GET", slug, "/projects", "")
					var ps []struct{ ID string }
					if err != nil || code != 200 || json.Unmarshal(b, &ps) != nil {
						fail("GET /projects as %s: %d %s %v", slug, code, b, err)
						continue
					}
					mu.Lock()
					for _, p := range ps {
						if o, ok := owner[p.ID]; ok && o != slug {
							foreign.Add(1)
						}
					}
					mu.Unlock()
				case 3: // a transaction (list tasks of a project) and the cached stats
					if code, b, err := do("GET", slug, "/stats", ""); err != nil || code != 200 {
						fail("GET /stats as %s: %d %s %v", slug, code, b, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests over PgBouncer (4 server connections per database), %d failed, %d foreign rows", requests.Load(), failures.Load(), foreign.Load())
	if n := failures.Load(); n > 0 {
		t.Errorf("%d requests failed behind PgBouncer; first: %v", n, firstErr.Load())
	}
	if n := foreign.Load(); n > 0 {
		t.Errorf("ISOLATION BREACH: %d rows of another tenant listed", n)
	}
	// The positive controls: every model was served, and through the pooler, not around it.
	for _, slug := range slugs {
		code, b, err := do("GET", slug, "/projects", "")
		mu.Lock()
		n := 0
		for id, o := range owner {
			if o == slug && strings.Contains(string(b), id) {
				n++
			}
		}
		mu.Unlock()
		if err != nil || code != 200 || n == 0 {
			t.Errorf("%s lists none of the projects it made: %d %v", slug, code, err)
		}
	}
	log := bouncer.Log()
	if !strings.Contains(log, "db="+dbname+" user=tenancy_app") || !strings.Contains(log, "db=tenant_") {
		t.Errorf("the runtime role did not reach the catalog's database and a tenant database through PgBouncer:\n%s", log)
	}
}
