package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// browser finds headless Chromium (Debian's chromium package; .ci/run installs it), or
// $TENANCY_CHROMIUM.
func browser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TENANCY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium here (apt-get install chromium, or set TENANCY_CHROMIUM): the console's browser test is skipped")
	return ""
}

// artifacts is where a test leaves files for people ($TENANCY_ARTIFACTS; make test sets it to
// ./artifacts), else a directory removed with the test.
func artifacts(t *testing.T) string {
	dir := os.Getenv("TENANCY_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// An operator in a real browser signs in (with the keyboard), finds a tenant, suspends it after
// the confirmation, and resumes it; the admin API and the tenant's own requests see each change.
// The pages load their stylesheet and break no rule of their Content-Security-Policy.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	exe := browser(t)
	const token = "browser-s3cret"
	srv, _ := newConsole(t, token)
	h := srv.Handler()
	for _, body := range []string{
		`{"slug":"acme","name":"Acme Corporation","plan":"pro","domains":["app.acme.example"]}`,
		`{"slug":"globex","name":"Globex","isolation":"schema"}`,
		`{"slug":"initech","name":"Initech <script>alert(1)</script>"}`,
	} {
		if w := call(h, "POST", "admin.localhost", "/admin/tenants", token, body); w.Code != 201 {
			t.Fatalf("create %s: %d %s", body, w.Code, w.Body)
		}
	}
	tenantGet := func() int { return call(h, "GET", "acme.localhost", "/whoami", "", "").Code }
	for range 7 { // some traffic for the tenant's page
		if code := tenantGet(); code != 200 {
			t.Fatalf("acme's request before the console: %d", code)
		}
	}
	status := func() string {
		w := call(h, "GET", "admin.localhost", "/admin/tenants/acme", token, "")
		var v struct{ Status string }
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &v) != nil {
			t.Fatalf("GET /admin/tenants/acme: %d %s", w.Code, w.Body)
		}
		return v.Status
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)

	// What the pages write to the console: a CSP violation or an exception would show here.
	var mu sync.Mutex
	var messages []string
	consoleDone := make(chan struct{})
	msgs := chromedp.Console(ctx)
	go func() {
		defer close(consoleDone)
		for m, err := range msgs {
			if err != nil {
				return
			}
			mu.Lock()
			messages = append(messages, m.String())
			mu.Unlock()
		}
	}()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			html, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("%s: %v\npage:\n%s", what, err, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}

	step("open the console: sent to sign in", chromedp.Navigate(ts.URL+"/console/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	step("sign in with the keyboard", chromedp.SendKeys(chromedp.CSS("#token"), token+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#q")))
	if got := text("h1"); got != "Tenants" {
		t.Fatalf("after signing in the page is %q", got)
	}
	display, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header nav")).display`))
	if err != nil || display != "flex" {
		t.Fatalf("the stylesheet did not apply (header nav display %q, %v)", display, err)
	}
	listPNG, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	// acme's link is on the list already: the search's page is the one without globex's.
	step("search for acme", chromedp.SendKeys(chromedp.CSS("#q"), "acme"), chromedp.Click(chromedp.CSS(`form[role="search"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`a[href="/console/tenants/globex"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/console/tenants/acme"]`)))
	found, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("tbody tr").length`))
	if err != nil || found != 1 {
		t.Fatalf("the search for acme found %d rows (%v), want 1", found, err)
	}
	step("open acme's page", chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/suspend"] button`)))
	if page := text("main"); !strings.Contains(page, "Acme Corporation") || !strings.Contains(page, "app.acme.example") ||
		!strings.Contains(page, "1000/min") {
		t.Fatalf("acme's page lacks its name, domain or plan's limit:\n%s", page)
	}

	step("ask to suspend", chromedp.Click(chromedp.CSS(`form[action$="/suspend"] button`)), chromedp.WaitVisible(chromedp.CSS(".question")))
	if q := text(".question"); !strings.HasPrefix(q, "Suspend acme?") {
		t.Fatalf("the confirmation asks %q", q)
	}
	if got := status(); got != "active" {
		t.Fatalf("before confirming the tenant is %s, want active", got)
	}
	step("confirm", chromedp.Click(chromedp.CSS(`main form button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/resume"] button`)))
	if f := text(".flash"); f != "Suspended." {
		t.Fatalf("after suspending the page says %q", f)
	}
	if got := status(); got != "suspended" {
		t.Fatalf("after suspending, the admin API says %s", got)
	}
	if code := tenantGet(); code != http.StatusForbidden {
		t.Fatalf("a suspended tenant's request: %d, want 403", code)
	}

	step("resume", chromedp.Click(chromedp.CSS(`form[action$="/resume"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/suspend"] button`)))
	if f := text(".flash"); f != "Resumed." {
		t.Fatalf("after resuming the page says %q", f)
	}
	if got := status(); got != "active" {
		t.Fatalf("after resuming, the admin API says %s", got)
	}
	if code := tenantGet(); code != 200 {
		t.Fatalf("a resumed tenant's request: %d, want 200", code)
	}
	tenantPNG, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	cancel() // ends the console's stream
	<-consoleDone
	mu.Lock()
	defer mu.Unlock()
	for _, m := range messages {
		if strings.Contains(m, "Content Security Policy") || strings.Contains(strings.ToLower(m), "exception") {
			t.Fatalf("the browser reported: %s\nall: %q", m, messages)
		}
	}
	dir := artifacts(t)
	for name, png := range map[string][]byte{"console-tenants.png": listPNG, "console-tenant.png": tenantPNG} {
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s; browser messages: %q", dir, messages)
}
