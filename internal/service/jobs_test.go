package service_test

import (
	"io/fs"
	"testing"
	"time"

	"github.com/gotenancy/tenancy/internal/service"
	"github.com/gotenancy/tenancy/tenancyriver"
	"github.com/gotenancy/tenancy/tenancytest"
)

type apiExport struct {
	ID        string
	ProjectID string `json:"project_id"`
	Status    string
	Data      struct {
		Project apiProject
		Tasks   []apiTask
	}
}

// An export is written by a background job as the tenant that asked: it holds that tenant's
// project and tasks; another tenant can neither read it nor export the project — in a shared and
// in a database tenant.
func TestExportRunsAsTheTenant(t *testing.T) {
	t.Parallel()
	h, _ := newServerWithCatalog(t, "tok")
	for _, body := range []string{`{"slug":"acme"}`, `{"slug":"globex"}`, `{"slug":"dbco","isolation":"database"}`} {
		if w := call(h, "POST", "localhost", "/admin/tenants", "tok", body); w.Code != 201 {
			t.Fatalf("create %s: %d %s", body, w.Code, w.Body)
		}
	}
	globex := apiClient{t, h, "globex.localhost"}
	var theirs apiProject
	globex.must("POST", "/projects", `{"name":"Globex secret plan"}`, 201, &theirs)
	for _, slug := range []string{"acme", "dbco"} {
		c := apiClient{t, h, slug + ".localhost"}
		var p apiProject
		c.must("POST", "/projects", `{"name":"Rocket skates of `+slug+`"}`, 201, &p)
		c.must("POST", "/projects/"+p.ID+"/tasks", `{"title":"Wheels"}`, 201, nil)
		var ex apiExport
		c.must("POST", "/projects/"+p.ID+"/export", "", 202, &ex)
		if ex.Status != "pending" || ex.ProjectID != p.ID {
			t.Fatalf("%s: the new export %+v", slug, ex)
		}
		tenancytest.WaitFor(t, 20*time.Second, slug+"'s export done", func() bool {
			c.must("GET", "/exports/"+ex.ID, "", 200, &ex)
			return ex.Status == "done"
		})
		if ex.Data.Project.ID != p.ID || ex.Data.Project.Name != "Rocket skates of "+slug || len(ex.Data.Tasks) != 1 || ex.Data.Tasks[0].Title != "Wheels" {
			t.Fatalf("%s: the export holds %+v, want its project and its one task", slug, ex.Data)
		}
		globex.must("GET", "/exports/"+ex.ID, "", 404, nil)            // another tenant's export
		c.must("POST", "/projects/"+theirs.ID+"/export", "", 404, nil) // another tenant's project
	}
	var mine []apiProject
	globex.must("GET", "/projects", "", 200, &mine)
	if len(mine) != 1 || mine[0].ID != theirs.ID {
		t.Fatalf("control: globex sees %+v, want its own project", mine)
	}
}

// The reference line's outbox is the one tenancyriver documents.
func TestReferenceLineHasTheOutbox(t *testing.T) {
	b, err := fs.ReadFile(service.ReferenceLines().Tenant, "0002_job_outbox.sql")
	if err != nil || string(b) != tenancyriver.OutboxMigration {
		t.Fatalf("0002_job_outbox.sql differs from tenancyriver.OutboxMigration (%v)", err)
	}
}
