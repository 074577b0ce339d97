package main

import (
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/cli"
)

func runCaptured(args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(args, cli.Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
	return code, out.String(), errOut.String()
}

func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"serve", "-h"}, {"serve", "--help"}, {"migrate", "-h"}, {"tx", "list", "-h"}, {"bench", "-h"}} {
		code, out, errOut := runCaptured(args...)
		if code != 0 || out == "" || strings.Contains(out+errOut, "help requested") || errOut != "" {
			t.Errorf("concord %s: exit %d, stdout %d bytes, stderr %q; want 0, the usage on stdout, nothing on stderr",
				strings.Join(args, " "), code, len(out), errOut)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{}, {"nonsense"}, {"serve", "-no-such-flag"}, {"migrate"}, {"version", "extra"}} {
		code, _, errOut := runCaptured(args...)
		if code != 2 || errOut == "" {
			t.Errorf("concord %s: exit %d, stderr %q; want 2 and a message", strings.Join(args, " "), code, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCaptured("version")
	if code != 0 || !strings.HasPrefix(out, "concord ") || !strings.Contains(out, "commit ") || !strings.Contains(out, "go1.") {
		t.Fatalf("concord version: exit %d, %q; want the module version, commit and Go release", code, out)
	}
}
