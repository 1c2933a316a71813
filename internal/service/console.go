package service

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancyhttp"
	"github.com/gotenancy/tenancy/tenancymetrics"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// The operator console: server-rendered pages under /console/ for the admin API's operations,
// signed in with the admin token. No JavaScript: every action is a form, every destructive one
// asks for a confirmation page first.
//
// A session is a random secret in a cookie, signed with a key derived from the admin token (a
// changed token ends every session) and recorded in the catalog (tenancy.operator_sessions), so
// that signing out ends it on every instance; it lasts consoleTTL, and consoleIdle without use.
// Forms carry a CSRF token derived from the session, and posts a browser marks as coming from
// another site are refused. The console answers only on hosts that are no tenant's: a tenant's
// subdomain or custom domain (DNS the tenant may control) never shows the sign-in page.

//go:embed console
var consoleFiles embed.FS

// consolePages are the pages, each parsed with the layout.
var consolePages = func() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(template.FuncMap{
		"since": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	}).ParseFS(consoleFiles, "console/layout.html"))
	pages := map[string]*template.Template{}
	for _, name := range []string{"login", "tenants", "tenant", "confirm", "error"} {
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(consoleFiles, "console/"+name+".html"))
	}
	return pages
}()

const (
	consoleCookie   = "tenancy_console"
	consoleTTL      = 8 * time.Hour
	consoleIdle     = time.Hour
	consolePageSize = 50
	// consoleCSP keeps the pages to what the binary serves: no inline script or style, no
	// framing, forms posting only here.
	consoleCSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

// Sign-in attempts allowed, per client address and in all: the admin token cannot be guessed
// at the speed of the service.
var (
	signInPerClient = tenancyrate.Limit{Rate: 10, Period: time.Minute, Burst: 10}
	signInInAll     = tenancyrate.Limit{Rate: 100, Period: time.Minute, Burst: 100}
)

// consoleAuth signs the console's session cookies and CSRF tokens and limits sign-ins.
type consoleAuth struct {
	key     []byte // HMAC-SHA256 of a fixed label under the admin token
	signIns *tenancyrate.MemoryLimiter
}

func newConsoleAuth(adminToken string) (*consoleAuth, error) {
	mac := hmac.New(sha256.New, []byte(adminToken))
	mac.Write([]byte("tenancy console session key v1"))
	l, err := tenancyrate.NewMemoryLimiter(nil)
	if err != nil {
		return nil, err
	}
	return &consoleAuth{key: mac.Sum(nil), signIns: l}, nil
}

func (a *consoleAuth) sign(label, value string) string {
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(label + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// newSession returns a new session's secret and its cookie value: secret.signature.
func (a *consoleAuth) newSession() (secret []byte, cookie string) {
	secret = make([]byte, 32)
	_, _ = rand.Read(secret)
	v := base64.RawURLEncoding.EncodeToString(secret)
	return secret, v + "." + a.sign("session", v)
}

// secretOf returns the secret of a cookie value a signed (whether its session still exists is
// the catalog's to say).
func (a *consoleAuth) secretOf(cookie string) ([]byte, bool) {
	v, sig, ok := strings.Cut(cookie, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(a.sign("session", v))) {
		return nil, false
	}
	secret, err := base64.RawURLEncoding.DecodeString(v)
	return secret, err == nil && len(secret) == 32
}

// csrf is the token the session's forms carry.
func (a *consoleAuth) csrf(secret []byte) string {
	return a.sign("csrf", base64.RawURLEncoding.EncodeToString(secret))
}

// allowSignIn takes one sign-in attempt from the client at addr; false when over the limits.
func (a *consoleAuth) allowSignIn(ctx context.Context, addr string) (bool, time.Duration) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	for _, try := range []struct {
		key   string
		limit tenancyrate.Limit
	}{{"client:" + host, signInPerClient}, {"all", signInInAll}} {
		res, err := a.signIns.Allow(ctx, try.key, try.limit)
		if err != nil || !res.Allowed {
			return false, res.RetryAfter
		}
	}
	return true, 0
}

// console serves the operator console; off (404) without an admin token, like the admin API, and
// on tenants' hosts.
func (s *Server) console() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(consoleFiles, "console/static")
	files := http.StripPrefix("/console/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /console/static/{file}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := fs.Stat(static, r.PathValue("file")); err != nil {
			s.consoleError(w, r, http.StatusNotFound, "No such page.")
			return
		}
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /console/login", s.consoleLoginPage)
	mux.HandleFunc("POST /console/login", s.consoleLogin)
	mux.HandleFunc("POST /console/logout", s.signedIn(s.consoleLogout))
	mux.HandleFunc("GET /console/{$}", s.signedIn(s.consoleTenants))
	mux.HandleFunc("GET /console/tenants/{slug}", s.signedIn(s.consoleTenant))
	mux.HandleFunc("POST /console/tenants/{slug}/{action}", s.signedIn(s.consoleAction))
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		s.consoleError(w, r, http.StatusNotFound, "No such page.")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin") // not no-referrer: that makes a browser send Origin: null on our own posts
		h.Set("Cache-Control", "no-store")
		if s.cfg.AdminToken == "" {
			s.consoleError(w, r, http.StatusNotFound, "The console is off: serve has no --admin-token.")
			return
		}
		switch tenant, err := s.tenantHost(r); {
		case err != nil: // it may be a tenant's: refused, but not as one
			s.consoleError(w, r, http.StatusServiceUnavailable, "The catalog cannot say whether this host is a tenant's; try again, or use the service's IP address.")
			return
		case tenant:
			s.consoleError(w, r, http.StatusNotFound, "The console is not served on a tenant's host.")
			return
		}
		if !utf8.ValidString(r.URL.Path) || strings.ContainsRune(r.URL.Path, 0) {
			s.consoleError(w, r, http.StatusNotFound, "No such page.")
			return
		}
		if r.Method == http.MethodPost && !sameOrigin(r) {
			s.consoleError(w, r, http.StatusForbidden, "This form was sent from another site.")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// tenantHost reports whether r's host is a tenant's: a subdomain of the base domain that is a
// tenant's name (not a reserved one), or a custom domain a tenant has. The base domain itself
// and IP addresses never are; the error is the catalog's, when it cannot say of a custom domain.
func (s *Server) tenantHost(r *http.Request) (bool, error) {
	host, err := tenancyhttp.NormalizeHost(r.Host)
	if err != nil || host == s.cfg.BaseDomain { // an IP address, no host, or the service's own name
		return false, nil
	}
	if label, ok := strings.CutSuffix(host, "."+s.cfg.BaseDomain); ok && !strings.Contains(label, ".") {
		return tenancy.ValidateSlug(label) == nil, nil
	}
	switch _, err = s.cache.TenantByDomain(r.Context(), host); {
	case err == nil:
		return true, nil
	case errors.Is(err, tenancy.ErrTenantNotFound):
		return false, nil
	}
	return false, err
}

// sameOrigin reports whether a form post comes from a page of this origin, as the browser says
// (Sec-Fetch-Site, else Origin); a client that sends neither is no browser and needs the CSRF
// token all the same.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// secure reports whether the console is reached over HTTPS (here, or at a proxy that says so):
// its cookie is then Secure.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

type consoleSession struct {
	secret []byte
	csrf   string
}

type sessionKey struct{}

// signedIn serves next to a signed-in operator, whose form posts carry the session's CSRF token;
// anyone else is sent to the sign-in page.
func (s *Server) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess *consoleSession
		for _, c := range r.CookiesNamed(consoleCookie) { // another host of the domain may have set one too
			secret, ok := s.consoleAuth.secretOf(c.Value)
			if !ok {
				continue
			}
			live, err := s.catalog.OperatorSession(r.Context(), secret, consoleIdle)
			if err != nil {
				s.log.ErrorContext(r.Context(), "tenancy: console session", "err", err)
				s.consoleError(w, r, http.StatusServiceUnavailable, "The catalog could not be read; try again.")
				return
			}
			if live {
				sess = &consoleSession{secret: secret, csrf: s.consoleAuth.csrf(secret)}
				break
			}
		}
		if sess == nil {
			if r.Method != http.MethodGet {
				s.render(w, r, http.StatusUnauthorized, "login", &page{Title: "Sign in",
					Error: "Your session has ended: sign in again.", Data: "/console/"})
				return
			}
			http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1 {
				s.consoleError(w, r, http.StatusForbidden, "The form's security token is missing or stale: reload the page and try again.")
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

// page is what every page's layout shows.
type page struct {
	Title    string
	CSRF     string // "" when signed out
	Flash    string
	Error    string
	Data     any
	Operator bool
}

// render writes a page; a template error is the server's, logged, and a plain 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, p *page) {
	if sess, ok := r.Context().Value(sessionKey{}).(*consoleSession); ok {
		p.CSRF, p.Operator = sess.csrf, true
	}
	var buf bytes.Buffer
	if err := consolePages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		s.log.ErrorContext(r.Context(), "tenancy: console page", "page", name, "err", err)
		http.Error(w, "The page could not be shown.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) consoleError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.render(w, r, code, "error", &page{Title: http.StatusText(code), Error: msg})
}

// next is where to go after signing in: a console path, never another site.
func next(raw string) string {
	if !strings.HasPrefix(raw, "/console/") || strings.HasPrefix(raw, "//") || strings.ContainsAny(raw, "\\\r\n") {
		return "/console/"
	}
	return raw
}

func (s *Server) consoleLoginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", &page{Title: "Sign in", Data: next(r.URL.Query().Get("next"))})
}

func (s *Server) consoleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	to := next(r.PostFormValue("next"))
	if ok, wait := s.consoleAuth.allowSignIn(r.Context(), r.RemoteAddr); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(1, wait.Round(time.Second).Seconds()))))
		s.render(w, r, http.StatusTooManyRequests, "login", &page{Title: "Sign in",
			Error: "Too many sign-in attempts: wait a minute and try again.", Data: to})
		return
	}
	got := sha256.Sum256([]byte(r.PostFormValue("token")))
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		s.render(w, r, http.StatusUnauthorized, "login", &page{Title: "Sign in", Error: "That is not the admin token.", Data: to})
		return
	}
	secret, value := s.consoleAuth.newSession()
	if err := s.catalog.StartOperatorSession(r.Context(), secret, time.Now().Add(consoleTTL)); err != nil {
		s.log.ErrorContext(r.Context(), "tenancy: console sign-in", "err", err)
		s.render(w, r, http.StatusServiceUnavailable, "login", &page{Title: "Sign in", Error: "The catalog could not be written; try again.", Data: to})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: value, Path: "/console/",
		MaxAge: int(consoleTTL.Seconds()), HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// consoleLogout ends the session everywhere (its record goes) and removes the cookie.
func (s *Server) consoleLogout(w http.ResponseWriter, r *http.Request) {
	sess := r.Context().Value(sessionKey{}).(*consoleSession)
	if err := s.catalog.EndOperatorSession(r.Context(), sess.secret); err != nil {
		s.log.ErrorContext(r.Context(), "tenancy: console sign-out", "err", err)
		s.consoleError(w, r, http.StatusServiceUnavailable, "The catalog could not be written: you are still signed in; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// tenantsPage is the tenant list: the filters, a page of tenants and the counts.
type tenantsPage struct {
	Query, Status, Isolation, Plan, After string
	Statuses, Isolations, Plans           []string
	Tenants                               []*tenancy.Tenant
	Next, First                           string // links to the next and first pages, "" when none
	Counts                                []tenancycatalog.TenantCount
	Total                                 int64
}

func (s *Server) consoleTenants(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &tenantsPage{Query: strings.TrimSpace(q.Get("q")), Status: q.Get("status"), Isolation: q.Get("isolation"),
		Plan: q.Get("plan"), After: q.Get("after"),
		Statuses:   []string{string(tenancy.StatusActive), string(tenancy.StatusSuspended), string(tenancy.StatusProvisioning), string(tenancy.StatusDeleted)},
		Isolations: []string{string(tenancy.IsolationShared), string(tenancy.IsolationSchema), string(tenancy.IsolationDatabase)},
		Plans:      s.plans()}
	p := &page{Title: "Tenants", Data: d, Flash: flash(q)}
	opts := &tenancycatalog.ListOpts{Status: tenancy.Status(d.Status), Isolation: tenancy.Isolation(d.Isolation), Plan: d.Plan,
		Search: d.Query, After: d.After, Limit: consolePageSize + 1}
	var err error
	switch {
	case d.Status != "" && !slices.Contains(d.Statuses, d.Status):
		err = fmt.Errorf("%w: no status %q", errBadRequest, d.Status)
	case d.Isolation != "" && !slices.Contains(d.Isolations, d.Isolation):
		err = fmt.Errorf("%w: no isolation %q", errBadRequest, d.Isolation)
	case utf8.RuneCountInString(d.Query) > 200:
		err = fmt.Errorf("%w: the search is longer than 200 characters", errBadRequest)
	}
	if err == nil {
		d.Counts, err = s.catalog.Counts(r.Context())
	}
	if err == nil {
		d.Tenants, err = s.catalog.List(r.Context(), opts)
	}
	for _, c := range d.Counts {
		if c.Status != tenancy.StatusDeleted {
			d.Total += c.Tenants
		}
	}
	if err != nil {
		prob := s.problemOf(r, err)
		p.Error = orDefault(plain(prob.Detail), "The catalog could not be read; try again.")
		d.Tenants = nil
		s.render(w, r, prob.Status, "tenants", p)
		return
	}
	if len(d.Tenants) > consolePageSize {
		d.Tenants = d.Tenants[:consolePageSize]
		nq := url.Values{}
		for k, v := range map[string]string{"q": d.Query, "status": d.Status, "isolation": d.Isolation, "plan": d.Plan} {
			if v != "" {
				nq.Set(k, v)
			}
		}
		nq.Set("after", d.Tenants[len(d.Tenants)-1].Slug)
		d.Next = "/console/?" + nq.Encode()
	}
	if d.After != "" {
		fq := url.Values{}
		for k, v := range map[string]string{"q": d.Query, "status": d.Status, "isolation": d.Isolation, "plan": d.Plan} {
			if v != "" {
				fq.Set(k, v)
			}
		}
		d.First = "/console/?" + fq.Encode()
	}
	s.render(w, r, http.StatusOK, "tenants", p)
}

// plans returns the configured plans' names, sorted.
func (s *Server) plans() []string {
	plans := tenancyrate.DefaultPlans
	if s.cfg.Policy != nil && len(s.cfg.Policy.Plans) > 0 {
		plans = s.cfg.Policy.Plans
	}
	return slices.Sorted(maps.Keys(plans))
}

// tenantPage is one tenant's page.
type tenantPage struct {
	T          *tenancy.Tenant
	Move       *tenancycatalog.Move
	Placement  string
	Schema     string // schema tenants: the schema
	Limit      string // the rate limit that applies (the tenant's own, or its plan's)
	OwnLimit   bool
	Activity   tenancymetrics.Activity
	PerMinute  string
	Refusals   []refusalCount
	MoveBusy   bool                      // a mover is working on the open move now
	Pool       *tenancyrouter.TenantPool // database tenants
	Line       *tenancycatalog.TenantLine
	Latest     int
	Plans      []string
	Isolations []string
	Servers    []string
	// RateLimitInput and DomainInput fill the rate limit's and the new domain's fields: the
	// tenant's own limit and nothing, or what was typed into a form that was refused.
	RateLimitInput, DomainInput string
}

type refusalCount struct {
	Outcome string
	Count   uint64
}

func (s *Server) consoleTenant(w http.ResponseWriter, r *http.Request) {
	s.showTenant(w, r, http.StatusOK, flash(r.URL.Query()), "")
}

// showTenant renders the tenant's page, with a message of the action just done or failed.
func (s *Server) showTenant(w http.ResponseWriter, r *http.Request, code int, done, failed string) {
	t, err := s.catalog.TenantBySlug(r.Context(), r.PathValue("slug"))
	if err != nil {
		prob := s.problemOf(r, err)
		s.consoleError(w, r, prob.Status, orDefault(prob.Detail, "The catalog could not be read; try again."))
		return
	}
	d := &tenantPage{T: t, Placement: tenancycatalog.PlacementOf(t).String(), Plans: s.plans(), Latest: s.cfg.Migrator.Latest(),
		Isolations: []string{string(tenancy.IsolationShared), string(tenancy.IsolationSchema), string(tenancy.IsolationDatabase)},
		Servers:    s.cfg.Servers.Aliases()}
	if t.Isolation == tenancy.IsolationSchema {
		d.Schema = tenancycatalog.SchemaName(t.ID)
	}
	d.OwnLimit = t.RateLimit != ""
	d.RateLimitInput = t.RateLimit
	if failed != "" && r.Method == http.MethodPost { // the refused form's field keeps what was typed (when it is text)
		switch typed := r.PostFormValue; r.PathValue("action") {
		case "rate-limit":
			if v := typed("rate_limit"); utf8.ValidString(v) && !strings.ContainsRune(v, 0) {
				d.RateLimitInput = v
			}
		case "domain-add":
			if v := typed("domain"); utf8.ValidString(v) && !strings.ContainsRune(v, 0) {
				d.DomainInput = v
			}
		}
	}
	d.Limit = s.cfg.Policy.For(t).String()
	if v, err := s.view(r.Context(), t); err == nil {
		d.Move = v.Move
	} else {
		s.log.WarnContext(r.Context(), "tenancy: console: the tenant's last move", "err", err)
	}
	if d.Move != nil && d.Move.State == tenancycatalog.MoveCopying {
		if d.MoveBusy, err = s.mover.Busy(r.Context(), t.ID); err != nil {
			s.log.WarnContext(r.Context(), "tenancy: console: is a mover at work", "err", err)
		}
	}
	// The move form offers the placements the tenant is not in (any server for a database).
	d.Isolations = slices.DeleteFunc(d.Isolations, func(iso string) bool {
		return iso == string(t.Isolation) && iso != string(tenancy.IsolationDatabase)
	})
	if s.activity != nil {
		d.Activity = s.activity.Activity(t.Slug)
		d.PerMinute = strconv.FormatFloat(float64(d.Activity.Requests)/d.Activity.Window.Minutes(), 'f', -1, 64)
		for _, o := range slices.Sorted(maps.Keys(d.Activity.Refused)) {
			d.Refusals = append(d.Refusals, refusalCount{o, d.Activity.Refused[o]})
		}
	}
	if t.Isolation == tenancy.IsolationDatabase && s.cfg.Router != nil {
		p := s.cfg.Router.Pool(t.ID)
		d.Pool = &p
	}
	if t.Isolation != tenancy.IsolationShared {
		if line, ok, err := tenancycatalog.LineOf(r.Context(), s.pool, t.ID); err != nil {
			s.log.WarnContext(r.Context(), "tenancy: console: the tenant's migrations", "err", err)
		} else if ok {
			d.Line = &line
		}
	}
	s.render(w, r, code, "tenant", &page{Title: t.Slug, Flash: done, Error: failed, Data: d})
}

// consoleActions are the forms a tenant's page posts, with what a confirmation asks (destructive
// ones; {tenant} and {object}, the domain or placement, are filled in) and what is said once done.
var consoleActions = map[string]struct{ confirm, button, done string }{
	"suspend":       {"Suspend {tenant}? Its requests are refused (403) at once, everywhere, until it is resumed. Its data is kept.", "Suspend", "Suspended."},
	"resume":        {"", "", "Resumed."},
	"delete":        {"Delete {tenant}? Its requests are refused at once and its data is removed when the catalog is purged; its slug and domains become free.", "Delete", "Deleted."},
	"plan":          {"", "", "Plan changed."},
	"rate-limit":    {"", "", "Rate limit set."},
	"domain-add":    {"", "", "Domain added."},
	"domain-remove": {"Remove domain {object} from {tenant}? Requests to it stop reaching the tenant at once.", "Remove the domain", "Domain removed."},
	"move":          {"Move {tenant} to {object}? Its data is copied while it keeps serving; its writes wait for a moment at the switch.", "Move", "Move started."},
	"move-resume":   {"", "", "Move resumed."},
	"move-abort":    {"Abort the move of {tenant}? The copy made so far is removed; the tenant stays where it is.", "Abort the move", "Move aborted."},
	"move-finalize": {"Finalize the move of {tenant}? The data left in its old placement is removed now, not after the grace period.", "Finalize", "Move finalized."},
	"provision":     {"", "", "Provisioned."},
}

// confirmPage asks before a destructive action.
type confirmPage struct {
	Slug, Action, Button, Question string
	Fields                         map[string]string // the form's fields, posted again
}

func (s *Server) consoleAction(w http.ResponseWriter, r *http.Request) {
	slug, action := r.PathValue("slug"), r.PathValue("action")
	spec, ok := consoleActions[action]
	if !ok {
		s.consoleError(w, r, http.StatusNotFound, "No such action.")
		return
	}
	ctx := r.Context()
	t, err := s.catalog.TenantBySlug(ctx, slug)
	if err != nil {
		prob := s.problemOf(r, err)
		s.consoleError(w, r, prob.Status, orDefault(prob.Detail, "The catalog could not be read; try again."))
		return
	}
	for _, vs := range r.PostForm {
		for _, v := range vs {
			if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				s.showTenant(w, r, http.StatusBadRequest, "", "A field of the form is not text.")
				return
			}
		}
	}
	field := func(name string) string { return strings.TrimSpace(r.PostFormValue(name)) }
	if spec.confirm != "" && r.PostFormValue("confirm") != "yes" {
		object := field("domain")
		if action == "move" {
			object = field("to")
			if srv := field("server"); srv != "" && object == string(tenancy.IsolationDatabase) {
				object += " on " + srv
			}
		}
		fields := map[string]string{}
		for _, k := range []string{"domain", "to", "server"} {
			if v := field(k); v != "" {
				fields[k] = v
			}
		}
		s.render(w, r, http.StatusOK, "confirm", &page{Title: "Confirm", Data: &confirmPage{Slug: slug, Action: action,
			Button: spec.button, Question: strings.NewReplacer("{tenant}", slug, "{object}", object).Replace(spec.confirm), Fields: fields}})
		return
	}
	switch action {
	case "suspend":
		_, err = s.catalog.Suspend(ctx, t.ID)
	case "resume":
		_, err = s.catalog.Resume(ctx, t.ID)
	case "delete":
		_, err = s.catalog.Delete(ctx, t.ID)
	case "provision":
		_, err = s.provision(ctx, t)
	case "move":
		to, server := field("to"), field("server")
		if to != string(tenancy.IsolationDatabase) {
			server = "" // the form offers a server for database placements only
		}
		_, err = s.move(ctx, t, &moveRequest{To: to, Server: server})
	case "move-resume", "move-abort", "move-finalize":
		_, err = s.move(ctx, t, &moveRequest{Action: strings.TrimPrefix(action, "move-")})
	case "plan":
		if field("plan") == "" {
			err = fmt.Errorf("%w: choose a plan", errBadRequest)
			break
		}
		_, err = s.update(ctx, slug, &tenancycatalog.UpdateOpts{Plan: field("plan")})
	case "rate-limit":
		_, err = s.setRateLimit(ctx, slug, field("rate_limit"))
	case "domain-add", "domain-remove":
		_, err = s.setDomain(ctx, slug, field("domain"), action == "domain-add")
	}
	if err != nil {
		prob := s.problemOf(r, err)
		msg := prob.Detail
		if errors.Is(err, tenancy.ErrTenantNotFound) {
			msg = err.Error() // the tenant exists (looked up above): the error says what does not
		}
		s.showTenant(w, r, prob.Status, "", orDefault(plain(msg), "The service could not do that now; try again."))
		return
	}
	if action == "delete" {
		http.Redirect(w, r, "/console/?done=delete", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/tenants/"+url.PathEscape(slug)+"?done="+action, http.StatusSeeOther)
}

// plain makes an error message read as a sentence for an operator: without the package prefixes
// Go errors carry ("tenancycatalog: ", "bad request: "), capitalized.
func plain(msg string) string {
	msg = strings.TrimPrefix(msg, "bad request: ")
	for {
		i := strings.Index(msg, ": ")
		if i < 0 || strings.ContainsAny(msg[:i], " \"'") { // a prefix is one word
			break
		}
		msg = msg[i+2:]
	}
	if msg == "" {
		return ""
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}

// flash is the message of the action named by ?done= (never text from the query itself).
func flash(q url.Values) string {
	return consoleActions[q.Get("done")].done
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
