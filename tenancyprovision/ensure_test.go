package tenancyprovision_test

import (
	"context"
	"sync"
	"testing"

	"github.com/gotenancy/tenancy/tenancyprovision"
	"github.com/gotenancy/tenancy/tenancytest"
)

func TestEnsureDatabase(t *testing.T) {
	t.Parallel()
	name := tenancytest.UniqueName("tenancy_ensure")
	t.Cleanup(func() { tenancytest.DropDatabase(t, name) })
	url := tenancytest.WithDatabase(tenancytest.AdminURL(), name)
	var wg sync.WaitGroup
	created := make([]bool, 4)
	errs := make([]error, 4)
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			created[i], errs[i] = tenancyprovision.EnsureDatabase(context.Background(), url)
		}()
	}
	wg.Wait()
	n := 0
	for i := range created {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if created[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d callers created the database, want exactly 1", n)
	}
	if c, err := tenancyprovision.EnsureDatabase(context.Background(), url); err != nil || c {
		t.Fatalf("existing database: created=%v err=%v", c, err)
	}
	bad := tenancytest.WithDatabase(tenancytest.AdminURL(), `x"; DROP DATABASE postgres; --`)
	if _, err := tenancyprovision.EnsureDatabase(context.Background(), bad); err == nil {
		t.Fatal("a hostile database name was accepted")
	}
}
