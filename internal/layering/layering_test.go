package layering

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/gotenancy/tenancy"

// declared reads the Architecture table of the README: package → the module packages it may
// import ("every public package above" allows the public packages of the rows above it).
func declared(t *testing.T, readme string) (map[string][]string, []string) {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]string{}
	var order []string
	cell := regexp.MustCompile("`([a-z/]+)`")
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## Architecture"):
			in = true
		case in && strings.HasPrefix(line, "## "):
			in = false
		case in && strings.HasPrefix(line, "| `"):
			cols := strings.Split(line, "|")
			if len(cols) < 5 {
				t.Fatalf("README Architecture row %q: want | package | owns | may import |", line)
			}
			pkg := strings.Trim(strings.TrimSpace(cols[1]), "`")
			allowed := cols[3]
			if i := strings.Index(allowed, "("); i >= 0 { // outside dependencies
				allowed = allowed[:i]
			}
			var may []string
			for _, m := range cell.FindAllStringSubmatch(allowed, -1) {
				may = append(may, m[1])
			}
			if strings.Contains(allowed, "every public package above") {
				for _, p := range order {
					if !strings.HasPrefix(p, "internal/") && !strings.HasPrefix(p, "cmd/") {
						may = append(may, p)
					}
				}
			}
			rows[pkg] = may
			order = append(order, pkg)
		}
	}
	if len(rows) == 0 {
		t.Fatal("README.md has no Architecture table")
	}
	return rows, order
}

type listed struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

// TestImportsFollowTheLayering fails when a package imports a module package its row does not
// allow, when the root imports anything but the standard library, when a row allows a package
// declared below it (the table is the layering, top to bottom from the root), or when a package
// has no row.
func TestImportsFollowTheLayering(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rows, order := declared(t, filepath.Join(root, "README.md"))
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if name == "" {
			name = "tenancy"
		}
		may, ok := rows[name]
		if !ok {
			t.Errorf("%s has no row in the README's Architecture table", p.ImportPath)
			continue
		}
		seen++
		pos := slices.Index(order, name)
		for _, imp := range p.Imports {
			if name == "tenancy" && strings.Contains(strings.Split(imp, "/")[0], ".") {
				t.Errorf("the root package imports %s: it may import only the standard library", imp)
			}
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if dep == "" {
				dep = "tenancy"
			}
			if dep != "tenancy" && !slices.Contains(may, dep) {
				t.Errorf("%s imports %s, which its row does not allow (may import: %s)", name, dep, strings.Join(may, ", "))
			}
			if i := slices.Index(order, dep); i > pos {
				t.Errorf("%s imports %s, declared below it: the table must list a package after what it imports", name, dep)
			}
		}
	}
	// Positive control: the walk saw the packages, so a silent go list cannot pass this test.
	if seen < 15 {
		t.Fatalf("checked %d packages, want the module's (at least 15)", seen)
	}
}
