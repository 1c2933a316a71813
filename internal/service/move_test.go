package service_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
)

// TestAdminMove moves a tenant of the reference service through the admin API while a client
// keeps writing to it and reading it: every write answered 201 is there afterwards, none is
// refused, reads go on, the other tenant is untouched, and the API refuses wrong calls.
func TestAdminMove(t *testing.T) {
	t.Parallel()
	h := newServer(t, "tok")
	admin := func(method, path, body string) *httptest.ResponseRecorder {
		return call(h, method, "localhost", path, "tok", body)
	}
	for _, slug := range []string{"acme", "globex"} {
		if w := admin("POST", "/admin/tenants", `{"slug":"`+slug+`"}`); w.Code != 201 {
			t.Fatalf("create %s: %d %s", slug, w.Code, w.Body)
		}
		if w := admin("PUT", "/admin/tenants/"+slug+"/rate-limit", `{"rate_limit":"100000/s"}`); w.Code != 200 {
			t.Fatalf("rate limit %s: %d %s", slug, w.Code, w.Body)
		}
	}
	for i := range 20 {
		if w := call(h, "POST", "acme.localhost", "/projects", "", fmt.Sprintf(`{"name":"p%d"}`, i)); w.Code != 201 {
			t.Fatalf("seed: %d %s", w.Code, w.Body)
		}
	}
	if w := call(h, "POST", "globex.localhost", "/projects", "", `{"name":"globex own"}`); w.Code != 201 {
		t.Fatal(w.Body)
	}
	for _, c := range []struct {
		body string
		code int
	}{
		{`{}`, 400},
		{`{"to":"cloud"}`, 400},
		{`{"to":"shared"}`, 409},
		{`{"to":"schema","server":"default"}`, 400},
		{`{"to":"database","server":"nowhere"}`, 400},
		{`{"action":"resume","to":"schema"}`, 400},
		{`{"action":"resume"}`, 404},
		{`{"action":"explode"}`, 400},
	} {
		if w := admin("POST", "/admin/tenants/acme/move", c.body); w.Code != c.code {
			t.Errorf("move %s: %d %s; want %d", c.body, w.Code, w.Body, c.code)
		}
	}

	var mu sync.Mutex
	var written []string
	var refused, readFailures int
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("w%05d", i)
			w := call(h, "POST", "acme.localhost", "/projects", "", `{"name":"`+name+`"}`)
			r := call(h, "GET", "acme.localhost", "/projects", "", "")
			mu.Lock()
			switch w.Code {
			case 201:
				written = append(written, name)
			default:
				refused++
				t.Errorf("a write during the move: %d %s", w.Code, w.Body)
			}
			if r.Code != 200 {
				readFailures++
				t.Errorf("a read during the move: %d %s", r.Code, r.Body)
			}
			mu.Unlock()
		}
	}()
	time.Sleep(20 * time.Millisecond)
	w := admin("POST", "/admin/tenants/acme/move", `{"to":"schema"}`)
	if w.Code != 202 || w.Header().Get("Location") != "/admin/tenants/acme" {
		t.Fatalf("start a move: %d %s", w.Code, w.Body)
	}
	var view struct {
		tenancy.Tenant
		Move *tenancycatalog.Move `json:"move"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		w = admin("GET", "/admin/tenants/acme", "")
		view.Move = nil
		if err := json.Unmarshal(w.Body.Bytes(), &view); err != nil {
			t.Fatal(err)
		}
		if view.Move != nil && view.Move.State == tenancycatalog.MoveSwitched {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the move did not switch: %s", w.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // writes after the switch too
	close(stop)
	<-done
	if view.Isolation != tenancy.IsolationSchema {
		t.Fatalf("after the move acme is %s", view.Isolation)
	}
	if len(written) == 0 {
		t.Fatal("no write during the move: the test proves nothing")
	}
	w = call(h, "GET", "acme.localhost", "/projects", "", "")
	var projects []struct{ Name string }
	if err := json.Unmarshal(w.Body.Bytes(), &projects); err != nil || w.Code != 200 {
		t.Fatalf("list after the move: %d %s", w.Code, w.Body)
	}
	seen := map[string]int{}
	for _, p := range projects {
		seen[p.Name]++
	}
	for _, name := range written {
		if seen[name] != 1 {
			t.Errorf("write %s answered 201 is there %d times after the move", name, seen[name])
		}
	}
	if len(projects) != 20+len(written) {
		t.Errorf("acme has %d projects after the move, want %d", len(projects), 20+len(written))
	}
	if w := call(h, "GET", "globex.localhost", "/projects", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), "globex own") ||
		strings.Contains(w.Body.String(), `"p1"`) {
		t.Errorf("globex after acme's move: %d %s", w.Code, w.Body)
	}
	if w := admin("POST", "/admin/tenants/acme/move", `{"action":"abort"}`); w.Code != 409 {
		t.Errorf("abort a switched move: %d %s; want 409", w.Code, w.Body)
	}
	if w := admin("POST", "/admin/tenants/acme/move", `{"action":"finalize"}`); w.Code != 200 || !strings.Contains(w.Body.String(), `"finalized"`) {
		t.Errorf("finalize: %d %s", w.Code, w.Body)
	}
	t.Logf("%d writes and reads during the move", len(written))
}
