package layering

import (
	"bufio"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
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
// allow, when it imports one declared below its own row (the table is the layering, from the
// root down), when the root imports anything but the standard library, or when a package has no
// row.
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

// moduleFiles parses the non-test Go files of the module's packages (not the modules beside it:
// bench, examples), by directory relative to the root.
func moduleFiles(t *testing.T, root string) map[string][]*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	out := map[string][]*ast.File{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "bench" || rel == "examples") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		out[filepath.Dir(rel)] = append(out[filepath.Dir(rel)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOnlyTheCatalogNamesItsTables fails when a string literal outside tenancycatalog names a
// table of the catalog's schema (SQL of its own instead of the catalog's API).
func TestOnlyTheCatalogNamesItsTables(t *testing.T) {
	root, _ := filepath.Abs("../..")
	sqls, err := filepath.Glob(filepath.Join(root, "tenancycatalog", "sql", "catalog", "*.sql"))
	if err != nil || len(sqls) == 0 {
		t.Fatalf("the catalog's migrations: %v (%d files)", err, len(sqls))
	}
	var tables []string
	create := regexp.MustCompile(`(?i)CREATE TABLE (?:IF NOT EXISTS )?tenancy\.([a-z_]+)`)
	for _, p := range sqls {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range create.FindAllStringSubmatch(string(b), -1) {
			tables = append(tables, m[1])
		}
	}
	if !slices.Contains(tables, "tenants") || !slices.Contains(tables, "tenant_line") {
		t.Fatalf("found the catalog tables %v, want tenants and tenant_line among them", tables)
	}
	named := regexp.MustCompile(`\btenancy\.(` + strings.Join(tables, "|") + `)\b`)
	for dir, files := range moduleFiles(t, root) {
		if dir == "tenancycatalog" {
			continue
		}
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && named.MatchString(lit.Value) {
					t.Errorf("%s (package %s) names %s in SQL: use tenancycatalog's API", dir, f.Name.Name, named.FindString(lit.Value))
				}
				return true
			})
		}
	}
}

// TestNoExportedInternalTypes fails when an exported declaration of a public package takes,
// returns or holds a type of an internal package, which its users could not name.
func TestNoExportedInternalTypes(t *testing.T) {
	root, _ := filepath.Abs("../..")
	checked := 0
	for dir, files := range moduleFiles(t, root) {
		if strings.HasPrefix(dir, "internal") || strings.HasPrefix(dir, "cmd") {
			continue
		}
		for _, f := range files {
			internal := map[string]bool{}
			for _, imp := range f.Imports {
				path := strings.Trim(imp.Path.Value, `"`)
				if strings.Contains(path, "/internal/") {
					name := path[strings.LastIndex(path, "/")+1:]
					if imp.Name != nil {
						name = imp.Name.Name
					}
					internal[name] = true
				}
			}
			uses := func(where string, n ast.Node) {
				if n == nil {
					return
				}
				ast.Inspect(n, func(n ast.Node) bool {
					if sel, ok := n.(*ast.SelectorExpr); ok {
						if id, ok := sel.X.(*ast.Ident); ok && internal[id.Name] {
							t.Errorf("%s: exported %s mentions %s.%s, a type of an internal package", dir, where, id.Name, sel.Sel.Name)
						}
					}
					return true
				})
			}
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					if !d.Name.IsExported() || (d.Recv != nil && !exportedRecv(d.Recv)) {
						continue
					}
					checked++
					uses(d.Name.Name, d.Type)
				case *ast.GenDecl:
					for _, s := range d.Specs {
						switch s := s.(type) {
						case *ast.TypeSpec:
							if s.Name.IsExported() {
								checked++
								uses(s.Name.Name, exportedParts(s.Type))
							}
						case *ast.ValueSpec:
							for _, n := range s.Names {
								if n.IsExported() {
									checked++
									uses(n.Name, s.Type)
								}
							}
						}
					}
				}
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked %d exported declarations, want the module's (at least 100)", checked)
	}
}

// exportedRecv reports whether a method's receiver is an exported type.
func exportedRecv(r *ast.FieldList) bool {
	if len(r.List) == 0 {
		return false
	}
	typ := r.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	if idx, ok := typ.(*ast.IndexExpr); ok {
		typ = idx.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}

// exportedParts is what of a type declaration its users see: a struct's exported fields, an
// interface's methods, anything else whole.
func exportedParts(typ ast.Expr) ast.Node {
	st, ok := typ.(*ast.StructType)
	if !ok {
		return typ
	}
	var fields []*ast.Field
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.IsExported() {
				fields = append(fields, f)
				break
			}
		}
	}
	return &ast.FieldList{List: fields}
}
