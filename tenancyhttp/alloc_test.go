//go:build !race

package tenancyhttp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// A cached hit allocates only what r.WithContext needs (the request copy and the context value);
// a refusal from the negative cache allocates nothing.
func TestMiddlewareAllocations(t *testing.T) {
	b := setup(t)
	cases := []struct {
		host   string
		allocs float64
	}{{"acme.localhost", 2}, {"ghost.localhost", 0}, {"www.localhost", 0}}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = c.host
		r.RemoteAddr = "203.0.113.7:5555"
		w := &discardWriter{h: http.Header{}}
		served := 0
		h := b.bareMiddleware(t, func() { served++ })
		h.ServeHTTP(w, r) // warm the cache
		got := testing.AllocsPerRun(200, func() { clear(w.h); h.ServeHTTP(w, r) })
		if got != c.allocs {
			t.Errorf("%s: %v allocations per request, want %v", c.host, got, c.allocs)
		}
		if (c.allocs > 0) != (served > 0) {
			t.Errorf("%s: served %d times", c.host, served)
		}
	}
}
