package protocol_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbiddenImports keeps the protocol packages pure: no I/O, no wall clock,
// no global logger, no randomness. Test files may use them.
var forbiddenImports = map[string]string{
	"net":          "network I/O",
	"net/http":     "network I/O",
	"os":           "process and file I/O",
	"io/ioutil":    "file I/O",
	"database/sql": "storage I/O",
	"log":          "a global logger",
	"log/slog":     "logging (effects are data; the runtime logs)",
	"time":         "the wall clock (time comes in with events)",
	"math/rand":    "randomness (jitter is derived from the transaction)",
	"math/rand/v2": "randomness (jitter is derived from the transaction)",
}

func TestProtocolImportsArePure(t *testing.T) {
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if why, bad := forbiddenImports[p]; bad {
				t.Errorf("%s imports %q: protocol code must not depend on %s", fset.Position(imp.Pos()), p, why)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Fatalf("checked only %d files; is the walk rooted right?", files)
	}
}
