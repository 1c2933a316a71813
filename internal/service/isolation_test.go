package service_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancytest"
)

// The reference service, checked with the harness users point at their own APIs: projects made
// through the HTTP API by tenant A of each model are invisible to tenant B of every model, in
// lists and by ID, and A sees its own.
func TestReferenceServiceIsIsolated(t *testing.T) {
	t.Parallel()
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: service.ReferenceLines().Tenant})
	srv := startEnvServer(t, env, nil)
	tenancytest.RequireIsolatedHTTP(t, env, tenancytest.HTTPIsolated{
		Handler: srv.Handler(),
		Create: func(c *tenancytest.Client) ([]string, error) {
			w := c.Do("POST", "/projects", `{"name":"Secret plan"}`)
			var p struct{ ID string }
			if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &p) != nil {
				return nil, fmt.Errorf("POST /projects: %d %s", w.Code, w.Body)
			}
			return []string{p.ID}, nil
		},
		List: func(c *tenancytest.Client) ([]string, error) {
			w := c.Do("GET", "/projects", "")
			var ps []struct{ ID string }
			if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &ps) != nil {
				return nil, fmt.Errorf("GET /projects: %d %s", w.Code, w.Body)
			}
			ids := make([]string, len(ps))
			for i, p := range ps {
				ids[i] = p.ID
			}
			return ids, nil
		},
		Get: func(c *tenancytest.Client, id string) (bool, error) {
			switch w := c.Do("GET", "/projects/"+id, ""); w.Code {
			case 200:
				return true, nil
			case 404:
				return false, nil
			default:
				return false, fmt.Errorf("GET /projects/%s: %d %s", id, w.Code, w.Body)
			}
		},
	})
}
