// Command bench measures tenancy against baselines, side by side in one run, and prints each
// figure with the ratio ours/baseline. Every metric is a cost (time, bytes, round trips, queries),
// so a ratio below 1 means ours is cheaper.
//
//	go run ./bench                  # every scenario, full length
//	go run ./bench -quick           # every scenario in under a minute
//	go run ./bench -run middleware  # scenarios matching a regular expression
//	go run ./bench -json            # one JSON object per line
//
// It uses the local PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL, or TENANCY_REDIS_URL)
// and creates, then drops, its own database and Redis keys.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"testing"
	"time"
)

// result is one line of output: one metric of one scenario, ours against a baseline.
type result struct {
	Scenario     string  `json:"scenario"`
	Metric       string  `json:"metric"`
	Unit         string  `json:"unit"`
	Ours         float64 `json:"ours"`
	Baseline     float64 `json:"baseline"`
	BaselineName string  `json:"baseline_name"`
	Ratio        float64 `json:"ratio"`
}

// env is what a scenario may use.
type env struct {
	quick bool
	log   io.Writer // progress and notes, not results
}

type scenario struct {
	name string
	run  func(ctx context.Context, e *env) ([]result, error)
}

var scenarios = []scenario{
	{"middleware", benchMiddleware},
	{"rls", benchRLS},
	{"migrate", benchMigrate},
	{"router", benchRouter},
	{"provision", benchProvision},
	{"ratelimit-memory", benchRateLimitMemory},
	{"ratelimit-redis", benchRateLimitRedis},
	{"cache", benchCache},
	{"audit", benchAudit},
	{"e2e", benchE2E},
	{"catalog-scale", benchCatalogScale},
	{"move", benchMove},
	{"jobs", benchJobs},
}

func main() {
	runRE := flag.String("run", "", "run only scenarios matching this regular expression")
	quick := flag.Bool("quick", false, "short runs: the whole set in under a minute")
	asJSON := flag.Bool("json", false, "print one JSON object per result line")
	flag.Parse()
	re, err := regexp.Compile(*runRE)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: -run:", err)
		os.Exit(2)
	}
	testing.Init()
	benchtime := "1s"
	if *quick {
		benchtime = "200ms"
	}
	if err := flag.Set("test.benchtime", benchtime); err != nil {
		panic(err)
	}

	e := &env{quick: *quick, log: os.Stderr}
	ctx := context.Background()
	failed := false
	for _, s := range scenarios {
		if !re.MatchString(s.name) {
			continue
		}
		start := time.Now()
		results, err := s.run(ctx, e)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.name, err)
			failed = true
			continue
		}
		for _, r := range results {
			switch {
			case r.Baseline != 0:
				r.Ratio = r.Ours / r.Baseline
			case r.Ours == 0:
				r.Ratio = 1 // both free: neither costs more
			default:
				r.Ratio = math.Inf(1)
			}
			if *asJSON {
				if math.IsInf(r.Ratio, 0) {
					r.Ratio = math.MaxFloat64 // JSON has no infinity
				}
				b, _ := json.Marshal(r)
				fmt.Println(string(b))
				continue
			}
			fmt.Printf("%-12s %-22s %-10s ours %12.2f   baseline %12.2f  ratio %7.4f   (baseline: %s)\n",
				r.Scenario, r.Metric, r.Unit, r.Ours, r.Baseline, r.Ratio, r.BaselineName)
		}
		fmt.Fprintf(e.log, "bench: %s done in %v\n", s.name, time.Since(start).Round(time.Millisecond))
	}
	if failed {
		os.Exit(1)
	}
}

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// measure runs fn as a Go benchmark and returns ns/op and allocs/op.
func measure(fn func(b *testing.B)) (nsPerOp, allocsPerOp float64) {
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		fn(b)
	})
	// Allocations are rounded to hundredths: a parallel benchmark's setup leaves fractions that
	// are not allocations of the code measured.
	return float64(r.T.Nanoseconds()) / float64(r.N), math.Round(100*float64(r.MemAllocs)/float64(r.N)) / 100
}
