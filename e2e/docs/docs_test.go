// Package docs runs every shell example in docs/api.md against a real
// concord process, so the documented curl calls cannot rot.
package docs

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	concordv1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/internal/testenv/proc"
)

type block struct {
	lang, code string
	line       int
}

func readBlocks(t *testing.T, path string) []block {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []block
	var cur *block
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			if cur == nil {
				cur = &block{lang: strings.TrimPrefix(line, "```"), line: n}
			} else {
				out = append(out, *cur)
				cur = nil
			}
			continue
		}
		if cur != nil {
			cur.code += line + "\n"
		}
	}
	return out
}

// methods lists every RPC of the coordinator service, from the schema
// itself, so a new call without a documented example fails this test.
func methods() []string {
	var out []string
	ms := concordv1.File_concord_v1_concord_proto.Services().ByName("CoordinatorService").Methods()
	for i := range ms.Len() {
		out = append(out, string(ms.Get(i).Name()))
	}
	return out
}

func TestAPIExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the documented examples: ", err)
	}
	_, file, _, _ := runtime.Caller(0)
	blocks := readBlocks(t, filepath.Join(filepath.Dir(file), "..", "..", "docs", "api.md"))

	var mu sync.Mutex
	flaky := map[string]int{}
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/flaky/") {
			gid := r.Header.Get("Concord-Gid")
			mu.Lock()
			flaky[gid]++
			n := flaky[gid]
			mu.Unlock()
			if n <= 3 {
				http.Error(w, "payment service is down", http.StatusInternalServerError)
				return
			}
		}
		w.Write([]byte("ok"))
	}))
	defer shop.Close()
	srv := proc.Start(t, t.TempDir(), nil)

	ran := 0
	covered := map[string]bool{}
	for i, b := range blocks {
		if b.lang != "sh" || strings.HasPrefix(b.code, "CONCORD=") {
			continue
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", b.code)
		cmd.Env = append(os.Environ(), "CONCORD="+srv.URL, "SHOP="+shop.URL)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docs/api.md:%d: example failed: %v\n%s\noutput:\n%s", b.line, err, b.code, out)
		}
		if i+1 < len(blocks) && blocks[i+1].lang == "text" {
			if got, want := strings.TrimSpace(string(out)), strings.TrimSpace(blocks[i+1].code); got != want {
				t.Fatalf("docs/api.md:%d: output %q, documented %q", b.line, got, want)
			}
		}
		ran++
		for _, m := range methods() {
			if strings.Contains(b.code, "CoordinatorService/"+m+" ") || strings.Contains(b.code, "CoordinatorService/"+m+"\n") {
				covered[m] = true
			}
		}
	}
	for _, m := range methods() {
		if !covered[m] {
			t.Errorf("docs/api.md has no working curl example for %s", m)
		}
	}
}
