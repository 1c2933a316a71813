// Package refsvc runs the reference service as a deployment runs it: the tenancy binary, built
// from this checkout, started as `tenancy serve` in a process of its own on loopback, with tenants
// created through its admin API. The benchmarks and the load test reach the service only so.
package refsvc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
)

// AdminURL is the local PostgreSQL's superuser URL (TEST_DATABASE_URL, or the default).
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// DatabaseURL is AdminURL on the database name.
func DatabaseURL(name string) string {
	u, _ := url.Parse(AdminURL())
	u.Path = "/" + name
	return u.String()
}

// Service is a running `tenancy serve`.
type Service struct {
	Addr  string // host:port it serves on
	Token string // its admin token
	DBURL string // its catalog's database

	bin string
	dir string
	cmd *exec.Cmd
}

// Start builds the tenancy command and starts `tenancy serve --migrations demo` on dbURL (made if
// absent), on a free loopback port, with an admin token and args appended; it returns once the
// service serves. Stop ends it and removes what it made.
func Start(dbURL string, args ...string) (*Service, error) {
	dir, err := os.MkdirTemp("", "tenancy-refsvc")
	if err != nil {
		return nil, err
	}
	s := &Service{bin: filepath.Join(dir, "tenancy"), DBURL: dbURL, Token: "bench-token", dir: dir}
	build := exec.Command("go", "build", "-o", s.bin, "github.com/gotenancy/tenancy/cmd/tenancy")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build the tenancy command: %w", err)
	}
	s.cmd = exec.Command(s.bin, append([]string{"serve", "--database-url", dbURL, "--migrations", "demo",
		"--addr", "127.0.0.1:0", "--admin-token", s.Token}, args...)...)
	s.cmd.Stderr = os.Stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// "tenancy: serving on 127.0.0.1:PORT (try: …)"
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "tenancy: serving on "); ok {
			s.Addr, _, _ = strings.Cut(rest, " ")
			break
		}
	}
	if s.Addr == "" {
		s.Stop()
		return nil, errors.New("tenancy serve stopped before serving")
	}
	go io.Copy(io.Discard, out)
	return s, nil
}

// CreateTenant creates and provisions a tenant through the admin API.
func (s *Service) CreateTenant(slug string, iso tenancy.Isolation) (*tenancy.Tenant, error) {
	body, _ := json.Marshal(map[string]string{"slug": slug, "isolation": string(iso)})
	req, _ := http.NewRequest("POST", "http://"+s.Addr+"/admin/tenants", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var t tenancy.Tenant
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&t) != nil || t.Status != tenancy.StatusActive {
		return nil, fmt.Errorf("create tenant %s: %s", slug, resp.Status)
	}
	return &t, nil
}

// Stop ends the service, then removes everything it made: its tenants' schemas and databases,
// its templates and catalog (tenancy uninstall), and its database.
func (s *Service) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		_ = s.cmd.Wait()
	}
	un := exec.Command(s.bin, "uninstall", "--yes", "--database-url", s.DBURL)
	un.Stdout, un.Stderr = io.Discard, os.Stderr
	_ = un.Run()
	if conn, err := pgx.Connect(context.Background(), AdminURL()); err == nil {
		u, _ := url.Parse(s.DBURL)
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+" WITH (FORCE)")
		conn.Close(context.Background())
	}
	os.RemoveAll(s.dir)
}
