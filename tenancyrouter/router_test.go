package tenancyrouter_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyrouter"
	"github.com/gotenancy/tenancy/tenancytest"
)

// tenantDatabases creates n empty databases named like tenant databases and returns tenants
// placed on them; they are dropped when t ends.
func tenantDatabases(t *testing.T, n int) []*tenancy.Tenant {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, tenancytest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	tenants := make([]*tenancy.Tenant, n)
	for i := range tenants {
		id := fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rand.Uint32(), rand.Uint32()&0xffff, rand.Uint32()&0xfff, rand.Uint32()&0xfff, rand.Uint64()&0xffffffffffff)
		tn := &tenancy.Tenant{ID: id, Slug: fmt.Sprintf("db-%d", i), Status: tenancy.StatusActive,
			Isolation: tenancy.IsolationDatabase, Server: tenancycatalog.DefaultServer, Database: tenancycatalog.DatabaseName(id)}
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+tn.Database+" STRATEGY FILE_COPY"); err != nil {
			t.Fatal(err)
		}
		name := tn.Database
		t.Cleanup(func() { tenancytest.DropDatabase(t, name) })
		tenants[i] = tn
	}
	return tenants
}

// backends counts the server's sessions on the given databases.
func backends(t *testing.T, dbs []string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), tenancytest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1)`, dbs).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func ping(ctx context.Context, r *tenancyrouter.Router, tn *tenancy.Tenant) error {
	lease, err := r.Lease(ctx, tn)
	if err != nil {
		return err
	}
	var one int
	err = lease.Pool().QueryRow(ctx, "SELECT 1").Scan(&one)
	lease.Done(err)
	return err
}

// Many goroutines churn through many tenant databases; the caps hold at every sample, nothing
// fails but with the capacity error, and closed pools leave no backend behind.
func TestRouterChurnKeepsItsCaps(t *testing.T) {
	t.Parallel()
	// Ten times the pools the router may hold: every lease of a tenant not among the open ones
	// evicts one. (500 took two minutes of the suite's ten, most of it creating the databases.)
	n := 200
	if testing.Short() {
		n = 60
	}
	tenants := tenantDatabases(t, n)
	dbs := make([]string, n)
	for i, tn := range tenants {
		dbs[i] = tn.Database
	}
	const maxPools, budget = 20, 40
	r := tenancytest.NewRouter(t, tenancyrouter.Config{MaxPools: maxPools, MaxConns: budget, MaxConnsPerPool: 2, AcquireTimeout: 5 * time.Second})
	ctx := context.Background()
	stop := make(chan struct{})
	var violations, capacity, other, ok atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			s := r.Stats()
			if s.Pools > maxPools || s.ReservedConns > budget || s.OpenConns > budget {
				violations.Add(1)
			}
			// A backend ends a moment after its client closes the connection: a count over the
			// budget must still be there a little later to be the router's doing.
			if b := backends(t, dbs); b > budget {
				time.Sleep(100 * time.Millisecond)
				if b := backends(t, dbs); b > budget {
					violations.Add(1)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 * n / 24 {
				err := ping(ctx, r, tenants[rand.IntN(n)])
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, tenancy.ErrCapacityExhausted):
					capacity.Add(1)
				default:
					other.Add(1)
					t.Log(err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	s := r.Stats()
	t.Logf("%d ok, %d capacity errors; stats %+v", ok.Load(), capacity.Load(), s)
	if violations.Load() > 0 {
		t.Fatalf("the caps were exceeded at %d samples", violations.Load())
	}
	if other.Load() > 0 {
		t.Fatalf("%d requests failed with an error other than the capacity error", other.Load())
	}
	if ok.Load() == 0 || s.Misses < uint64(maxPools) || s.Evictions["lru"] == 0 {
		t.Fatalf("control: the churn did not churn: %d ok, stats %+v", ok.Load(), s)
	}
	r.Close()
	tenancytest.WaitFor(t, 5*time.Second, "every backend ends after Close", func() bool { return backends(t, dbs) == 0 })
}

func TestRouterSingleFlight(t *testing.T) {
	t.Parallel()
	tn := tenantDatabases(t, 1)[0]
	r := tenancytest.NewRouter(t, tenancyrouter.Config{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ping(context.Background(), r, tn); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s := r.Stats(); s.Misses != 1 || s.Pools != 1 {
		t.Fatalf("50 concurrent first requests: %+v, want one pool opened", s)
	}
}

func TestRouterIdlePoolsClose(t *testing.T) {
	t.Parallel()
	tenants := tenantDatabases(t, 2)
	clock := &tenancytest.Clock{}
	r := tenancytest.NewRouter(t, tenancyrouter.Config{IdleTimeout: time.Minute, Now: clock.Now})
	for _, tn := range tenants {
		if err := ping(context.Background(), r, tn); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(30 * time.Second)
	ping(context.Background(), r, tenants[1]) // still in use
	if n := r.EvictIdle(); n != 0 {
		t.Fatalf("evicted %d pools before their idle timeout", n)
	}
	clock.Advance(45 * time.Second)
	if n := r.EvictIdle(); n != 1 {
		t.Fatalf("evicted %d pools, want tenants[0]'s", n)
	}
	if s := r.Stats(); s.Pools != 1 || s.Evictions["idle"] != 1 {
		t.Fatalf("stats %+v", s)
	}
	tenancytest.WaitFor(t, 5*time.Second, "the idle pool's backends end", func() bool { return backends(t, []string{tenants[0].Database}) == 0 })
	if b := backends(t, []string{tenants[1].Database}); b == 0 {
		t.Fatal("control: the pool in use has no backend")
	}
}

func TestRouterCapacityExhausted(t *testing.T) {
	t.Parallel()
	tenants := tenantDatabases(t, 2)
	r := tenancytest.NewRouter(t, tenancyrouter.Config{MaxPools: 1, MaxConns: 1, MaxConnsPerPool: 1, AcquireTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	held, err := r.Lease(ctx, tenants[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Lease(ctx, tenants[1]); !errors.Is(err, tenancy.ErrCapacityExhausted) {
		t.Fatalf("with the only pool busy: %v, want ErrCapacityExhausted", err)
	}
	released := make(chan error)
	go func() { released <- ping(ctx, r, tenants[1]) }()
	// The second request waits for room (the refused one above waited too).
	tenancytest.WaitFor(t, 10*time.Second, "the second request waiting for room", func() bool { return r.Stats().Waits == 2 })
	held.Done(nil)
	if err := <-released; err != nil {
		t.Fatalf("after the lease ended, the waiting request: %v", err)
	}
	if s := r.Stats(); s.Pools != 1 || s.Evictions["lru"] != 1 || s.CapacityErrors != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// One tenant's database disappears mid-load: its requests fail, fast once the breaker opens,
// while another tenant's keep succeeding; when the database returns, so does the tenant.
func TestRouterFailureStaysWithOneTenant(t *testing.T) {
	t.Parallel()
	tenants := tenantDatabases(t, 2)
	broken, healthy := tenants[0], tenants[1]
	clock := &tenancytest.Clock{}
	r := tenancytest.NewRouter(t, tenancyrouter.Config{FailureThreshold: 3, OpenFor: 10 * time.Second, Now: clock.Now})
	ctx := context.Background()
	for _, tn := range tenants {
		if err := ping(ctx, r, tn); err != nil {
			t.Fatal(err)
		}
	}
	tenancytest.DropDatabase(t, broken.Database)
	var brokenErrs int
	for i := range 10 {
		err := ping(ctx, r, broken)
		if err != nil {
			brokenErrs++
		}
		if i >= 5 && !errors.Is(err, tenancy.ErrTenantUnavailable) {
			t.Fatalf("request %d to the dropped database: %v, want ErrTenantUnavailable (breaker open)", i, err)
		}
		if err := ping(ctx, r, healthy); err != nil {
			t.Fatalf("the healthy tenant failed while the other's database was gone: %v", err)
		}
	}
	if brokenErrs != 10 {
		t.Fatalf("%d of 10 requests to a dropped database failed", brokenErrs)
	}
	s := r.Stats()
	if len(s.OpenBreakers) != 1 || s.OpenBreakers[0] != broken.ID || s.FailFast == 0 {
		t.Fatalf("stats %+v", s)
	}
	// One tenant's pool state, as an operator sees it: the broken one's breaker, the healthy
	// one's open pool, none for a tenant never leased.
	if p := r.Pool(broken.ID); !p.BreakerOpen {
		t.Fatalf("the broken tenant's pool %+v, want its breaker open", p)
	}
	if p := r.Pool(healthy.ID); !p.Open || p.BreakerOpen || p.TotalConns < 1 || p.Server != tenancycatalog.DefaultServer || p.LastUsed.IsZero() {
		t.Fatalf("the healthy tenant's pool %+v, want open with a connection, no breaker", p)
	}
	if p := r.Pool("00000000-0000-4000-8000-000000000000"); p.Open || p.BreakerOpen {
		t.Fatalf("a tenant never leased has pool %+v", p)
	}
	// The database comes back; once the breaker's time is up the tenant is served again.
	admin, _ := pgx.Connect(ctx, tenancytest.AdminURL())
	admin.Exec(ctx, "CREATE DATABASE "+broken.Database)
	admin.Close(ctx)
	if err := ping(ctx, r, broken); !errors.Is(err, tenancy.ErrTenantUnavailable) {
		t.Fatalf("before OpenFor: %v, want still failing fast", err)
	}
	clock.Advance(11 * time.Second)
	if err := ping(ctx, r, broken); err != nil {
		t.Fatalf("after the database returned: %v", err)
	}
	if s := r.Stats(); len(s.OpenBreakers) != 0 {
		t.Fatalf("breaker still open: %+v", s)
	}
}

// Killing a tenant's backends mid-load fails only the work on them; the tenant reconnects and the
// other tenant never notices.
func TestRouterBackendsKilled(t *testing.T) {
	t.Parallel()
	tenants := tenantDatabases(t, 2)
	victim, other := tenants[0], tenants[1]
	r := tenancytest.NewRouter(t, tenancyrouter.Config{})
	ctx := context.Background()
	for _, tn := range tenants {
		if err := ping(ctx, r, tn); err != nil {
			t.Fatal(err)
		}
	}
	admin, _ := pgx.Connect(ctx, tenancytest.AdminURL())
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, victim.Database); err != nil {
		t.Fatal(err)
	}
	recovered := false
	for range 5 {
		if err := ping(ctx, r, other); err != nil {
			t.Fatalf("the other tenant failed: %v", err)
		}
		if ping(ctx, r, victim) == nil {
			recovered = true
		}
	}
	if !recovered {
		t.Fatal("the tenant whose backends were killed never reconnected")
	}
}

// A pool retired while in use drains: the lease in flight finishes on it; new requests get a new pool.
func TestRouterForgetDrains(t *testing.T) {
	t.Parallel()
	tn := tenantDatabases(t, 1)[0]
	r := tenancytest.NewRouter(t, tenancyrouter.Config{})
	ctx := context.Background()
	old, err := r.Lease(ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	r.Forget(tn.ID)
	if err := ping(ctx, r, tn); err != nil {
		t.Fatal(err)
	}
	var one int
	if err := old.Pool().QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("the lease in flight lost its pool: %v", err)
	}
	old.Done(nil)
	if s := r.Stats(); s.Pools != 1 || s.Misses != 2 {
		t.Fatalf("stats %+v; want the drained pool closed and one open", s)
	}
}

// The hot path — the tenant's pool is open — allocates nothing.
func TestRouterLeaseDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tn := tenantDatabases(t, 1)[0]
	r := tenancytest.NewRouter(t, tenancyrouter.Config{})
	if err := ping(context.Background(), r, tn); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := testing.AllocsPerRun(1000, func() {
		l, err := r.Lease(ctx, tn)
		if err != nil {
			t.Fatal(err)
		}
		l.Done(nil)
	})
	if n != 0 {
		t.Fatalf("Lease+Done on an open pool: %v allocations", n)
	}
}

// A request whose connection is slow to open is told the database is unavailable, not that the
// tenant's connections are all in use: that is said only when they are.
func TestRouterAcquireTellsSlowFromFull(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers.
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted sync.WaitGroup
	accepted.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := stalled.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})
	servers := tenancytest.RuntimeServers(t, tenancycatalog.Servers{tenancycatalog.DefaultServer: tenancytest.AdminURL(),
		"stalled": "postgres://postgres@" + stalled.Addr().String() + "/postgres?sslmode=disable"})
	r := tenancytest.NewRouter(t, tenancyrouter.Config{Servers: servers, MaxConnsPerPool: 1,
		AcquireTimeout: 300 * time.Millisecond, ConnectTimeout: time.Minute, FailureThreshold: 2, OpenFor: time.Minute})
	t.Cleanup(func() { // before the router closes: its connection attempt ends with the server's
		stalled.Close()
		accepted.Wait()
	})
	ctx := context.Background()

	slow := &tenancy.Tenant{ID: "5a1e0000-0000-4000-8000-000000000001", Slug: "slow", Status: tenancy.StatusActive,
		Isolation: tenancy.IsolationDatabase, Server: "stalled", Database: "postgres"}
	for i := range 2 { // as failures to connect, they open the tenant's breaker
		_, _, err = r.Acquire(ctx, slow, nil)
		if !errors.Is(err, tenancy.ErrTenantUnavailable) || errors.Is(err, tenancy.ErrCapacityExhausted) {
			t.Fatalf("attempt %d, a connection that never opens: %v, want ErrTenantUnavailable", i+1, err)
		}
	}
	if s := r.Stats(); len(s.OpenBreakers) != 1 || s.OpenBreakers[0] != slow.ID {
		t.Fatalf("stats %+v: want the slow tenant's breaker open", s)
	}
	began := time.Now()
	if _, _, err = r.Acquire(ctx, slow, nil); !errors.Is(err, tenancy.ErrTenantUnavailable) || time.Since(began) >= 300*time.Millisecond {
		t.Fatalf("with its breaker open: %v after %v, want ErrTenantUnavailable at once", err, time.Since(began))
	}

	// Positive control: a tenant whose one connection is held is told its connections are in use.
	full := tenantDatabases(t, 1)[0]
	_, release, err := r.Acquire(ctx, full, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release(nil)
	_, _, err = r.Acquire(ctx, full, nil)
	if !errors.Is(err, tenancy.ErrCapacityExhausted) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("with its one connection held: %v, want ErrCapacityExhausted", err)
	}
	if s := r.Stats(); s.CapacityErrors != 1 {
		t.Fatalf("stats %+v: want one capacity error (the full pool's), not the slow one's", s)
	}
}

// Under real contention — every connection open and busy, requests timing out waiting for one —
// each refusal is ErrCapacityExhausted, never ErrTenantUnavailable, however the releases and the
// deadlines interleave.
func TestRouterContentionIsCapacity(t *testing.T) {
	t.Parallel()
	tn := tenantDatabases(t, 1)[0]
	// Slow connects while the pool opens (a busy machine) are failures to connect: the breaker
	// must not open on them here.
	r := tenancytest.NewRouter(t, tenancyrouter.Config{MaxConnsPerPool: 2, AcquireTimeout: 30 * time.Millisecond, ConnectTimeout: 30 * time.Second,
		FailureThreshold: 1 << 30})
	ctx := context.Background()
	// Both connections opened first (each acquire may wait for a connect of its own).
	var releases []func(error)
	for range 2 {
		_, release, err := r.Acquire(ctx, tn, nil)
		for try := 0; err != nil && try < 50; try++ { // the deadline may pass while connecting on a busy machine
			_, release, err = r.Acquire(ctx, tn, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	for _, release := range releases {
		release(nil)
	}
	var capacity, unavailable, served atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Second)
	for range 20 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				_, release, err := r.Acquire(ctx, tn, nil)
				switch {
				case err == nil:
					time.Sleep(5 * time.Millisecond)
					release(nil)
					served.Add(1)
				case errors.Is(err, tenancy.ErrCapacityExhausted):
					capacity.Add(1)
				default:
					unavailable.Add(1)
					t.Errorf("under contention: %v, want ErrCapacityExhausted", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if served.Load() == 0 || capacity.Load() == 0 || unavailable.Load() != 0 {
		t.Fatalf("served %d, refused for capacity %d, as unavailable %d: want some of the first two and none of the last",
			served.Load(), capacity.Load(), unavailable.Load())
	}
}
