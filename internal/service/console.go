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
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancycatalog"
	"github.com/gotenancy/tenancy/tenancymetrics"
	"github.com/gotenancy/tenancy/tenancyrate"
	"github.com/gotenancy/tenancy/tenancyrouter"
)

// The operator console: server-rendered pages under /console/ for the admin API's operations,
// signed in with the admin token. No JavaScript: every action is a form, every destructive one
// asks for a confirmation page first. Sessions are stateless cookies signed with a key derived
// from the admin token (changing the token signs every operator out), valid for consoleTTL.

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
	consolePageSize = 50
	// consoleCSP keeps the pages to what the binary serves: no inline script or style, no
	// framing, forms posting only here.
	consoleCSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

// consoleAuth signs and checks the console's session cookies and CSRF tokens.
type consoleAuth struct {
	key []byte // HMAC-SHA256 of a fixed label under the admin token
}

func newConsoleAuth(adminToken string) *consoleAuth {
	mac := hmac.New(sha256.New, []byte(adminToken))
	mac.Write([]byte("tenancy console session key v1"))
	return &consoleAuth{key: mac.Sum(nil)}
}

func (a *consoleAuth) sign(label, value string) string {
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(label + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// issue returns a new session's cookie value: expiry.id.signature.
func (a *consoleAuth) issue(now time.Time) string {
	var id [16]byte
	_, _ = rand.Read(id[:])
	v := strconv.FormatInt(now.Add(consoleTTL).Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString(id[:])
	return v + "." + a.sign("session", v)
}

// session returns the session ID of a cookie value issued by a and not expired.
func (a *consoleAuth) session(value string, now time.Time) (string, bool) {
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return "", false
	}
	v, sig := value[:i], value[i+1:]
	if !hmac.Equal([]byte(sig), []byte(a.sign("session", v))) {
		return "", false
	}
	exp, id, ok := strings.Cut(v, ".")
	unix, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || now.Unix() >= unix {
		return "", false
	}
	return id, true
}

// csrf is the token the session's forms carry.
func (a *consoleAuth) csrf(session string) string { return a.sign("csrf", session) }

// console serves the operator console; off (404) without an admin token, like the admin API.
func (s *Server) console() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(consoleFiles, "console/static")
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
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
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if s.cfg.AdminToken == "" {
			s.consoleError(w, r, http.StatusNotFound, "The console is off: serve has no --admin-token.")
			return
		}
		if r.Method == http.MethodPost && !sameOrigin(r) {
			s.consoleError(w, r, http.StatusForbidden, "This form was sent from another site.")
			return
		}
		mux.ServeHTTP(w, r)
	})
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

type consoleSession struct{ csrf string }

type sessionKey struct{}

// signedIn serves next to a signed-in operator, whose form posts carry the session's CSRF token;
// anyone else is sent to the sign-in page.
func (s *Server) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(consoleCookie)
		id, ok := "", false
		if err == nil {
			id, ok = s.consoleAuth.session(c.Value, time.Now())
		}
		if !ok {
			if r.Method != http.MethodGet {
				s.consoleError(w, r, http.StatusUnauthorized, "Your session has ended: sign in again.")
				return
			}
			http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		sess := &consoleSession{csrf: s.consoleAuth.csrf(id)}
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
	got := sha256.Sum256([]byte(r.PostFormValue("token")))
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	to := next(r.PostFormValue("next"))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		s.render(w, r, http.StatusUnauthorized, "login", &page{Title: "Sign in", Error: "That is not the admin token.", Data: to})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: s.consoleAuth.issue(time.Now()), Path: "/console/",
		MaxAge: int(consoleTTL.Seconds()), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Server) consoleLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
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
	case len(d.Query) > 200:
		err = fmt.Errorf("%w: the search is longer than 200 characters", errBadRequest)
	}
	if err == nil {
		d.Tenants, err = s.catalog.List(r.Context(), opts)
	}
	if err == nil {
		d.Counts, err = s.catalog.Counts(r.Context())
	}
	if err != nil {
		prob := s.problemOf(r, err)
		p.Error = orDefault(prob.Detail, "The catalog could not be read; try again.")
		d.Tenants = nil
		s.render(w, r, prob.Status, "tenants", p)
		return
	}
	for _, c := range d.Counts {
		if c.Status != tenancy.StatusDeleted {
			d.Total += c.Tenants
		}
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
	Pool       *tenancyrouter.TenantPool // database tenants
	Line       *tenancycatalog.TenantLine
	Latest     int
	Plans      []string
	Isolations []string
	Servers    []string
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
	d.Limit = s.cfg.Policy.For(t).String()
	if v, err := s.view(r.Context(), t); err == nil {
		d.Move = v.Move
	} else {
		s.log.WarnContext(r.Context(), "tenancy: console: the tenant's last move", "err", err)
	}
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
var consoleActions = map[string]struct{ confirm, done string }{
	"suspend":       {"Suspend {tenant}? Its requests are refused (403) at once, everywhere, until it is resumed. Its data is kept.", "Suspended."},
	"resume":        {"", "Resumed."},
	"delete":        {"Delete {tenant}? Its requests are refused at once and its data is removed when the catalog is purged; its slug and domains become free.", "Deleted."},
	"plan":          {"", "Plan changed."},
	"rate-limit":    {"", "Rate limit set."},
	"domain-add":    {"", "Domain added."},
	"domain-remove": {"Remove domain {object} from {tenant}? Requests to it stop reaching the tenant at once.", "Domain removed."},
	"move":          {"Move {tenant} to {object}? Its data is copied while it keeps serving; its writes wait for a moment at the switch.", "Move started."},
	"move-resume":   {"", "Move resumed."},
	"move-abort":    {"Abort the move of {tenant}? The copy made so far is removed; the tenant stays where it is.", "Move aborted."},
	"move-finalize": {"Finalize the move of {tenant}? The data left in its old placement is removed now, not after the grace period.", "Move finalized."},
	"provision":     {"", "Provisioned."},
}

// confirmPage asks before a destructive action.
type confirmPage struct {
	Slug, Action, Question string
	Fields                 map[string]string // the form's fields, posted again
}

func (s *Server) consoleAction(w http.ResponseWriter, r *http.Request) {
	slug, action := r.PathValue("slug"), r.PathValue("action")
	spec, ok := consoleActions[action]
	if !ok {
		s.consoleError(w, r, http.StatusNotFound, "No such action.")
		return
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
			Question: strings.NewReplacer("{tenant}", slug, "{object}", object).Replace(spec.confirm), Fields: fields}})
		return
	}
	ctx := r.Context()
	var err error
	switch action {
	case "suspend", "resume", "delete", "provision", "move", "move-resume", "move-abort", "move-finalize":
		var t *tenancy.Tenant
		if t, err = s.catalog.TenantBySlug(ctx, slug); err != nil {
			break
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
			to := field("to")
			server := field("server")
			if to != string(tenancy.IsolationDatabase) {
				server = "" // the form offers a server for database placements only
			}
			_, err = s.move(ctx, t, &moveRequest{To: to, Server: server})
		default:
			_, err = s.move(ctx, t, &moveRequest{Action: strings.TrimPrefix(action, "move-")})
		}
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
		if prob.Status == http.StatusNotFound && errors.Is(err, tenancy.ErrTenantNotFound) {
			s.consoleError(w, r, http.StatusNotFound, "No such tenant.")
			return
		}
		s.showTenant(w, r, prob.Status, "", orDefault(prob.Detail, "The service could not do that now; try again."))
		return
	}
	if action == "delete" {
		http.Redirect(w, r, "/console/?done=delete", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/tenants/"+url.PathEscape(slug)+"?done="+action, http.StatusSeeOther)
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
