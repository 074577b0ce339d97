package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	storeopen "github.com/concordtm/concord/internal/store/open"
	"github.com/concordtm/concord/internal/testenv"
)

func testEnv(stdout, stderr *strings.Builder) Env {
	return Env{Stdout: stdout, Stderr: stderr, Getenv: func(string) string { return "" }}
}

// migrate says whether it created the schema or found it, on every shared
// store, and a second run changes nothing.
func TestMigrateCreatedOrFound(t *testing.T) {
	testenv.Postgres(t)
	testenv.MariaDB(t)
	redis := testenv.RedisAddr(t)
	prefix := testenv.UniqueName(t, "cli_mig") + "_"
	for name, url := range map[string]string{
		"postgres": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&table_prefix=" + prefix,
		"mysql":    "mysql://root@127.0.0.1:3306/test?table_prefix=" + prefix,
		"redis":    "redis://" + redis + "/0?namespace=" + prefix,
	} {
		t.Run(name, func(t *testing.T) {
			t.Cleanup(func() {
				st, err := storeopen.Open(context.Background(), url)
				if err != nil {
					t.Errorf("cleanup: %v", err)
					return
				}
				defer st.Close()
				if d, ok := st.(interface{ Drop(context.Context) error }); ok {
					if err := d.Drop(context.Background()); err != nil {
						t.Errorf("cleanup: %v", err)
					}
				}
			})
			for i, want := range []string{"created the schema", "found the schema; it is up to date"} {
				var out, errOut strings.Builder
				if err := Migrate([]string{"-store", url}, testEnv(&out, &errOut)); err != nil {
					t.Fatalf("run %d: %v (stderr %q)", i+1, err, errOut.String())
				}
				if !strings.Contains(out.String(), want) {
					t.Fatalf("run %d printed %q, want %q", i+1, out.String(), want)
				}
			}
		})
	}
}

// -h prints the command's own flags on stdout and is not an error; a
// mistake goes to stderr as a usage error.
func TestHelpAndUsage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		run      func([]string, Env) error
		want     []string
		dontWant []string
	}{
		{"migrate", Migrate, []string{"usage: concord migrate", "-store", "-config", "-timeout"}, []string{"-data-dir", "-addr", "-retention"}},
		{"serve", Serve, []string{"-data-dir", "-addr", "-store"}, nil},
		{"tx list", func(a []string, e Env) error { return Tx(append([]string{"list"}, a...), e) }, []string{"-addr"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			err := tc.run([]string{"-h"}, testEnv(&out, &errOut))
			if !errors.Is(err, ErrHelp) {
				t.Fatalf("-h: %v, want ErrHelp", err)
			}
			if errOut.Len() != 0 || strings.Contains(out.String(), "help requested") {
				t.Fatalf("-h wrote %q to stderr and %q to stdout", errOut.String(), out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("-h output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("-h output lists %q, which is not this command's:\n%s", w, out.String())
				}
			}
			out.Reset()
			errOut.Reset()
			err = tc.run([]string{"-no-such-flag"}, testEnv(&out, &errOut))
			if !errors.Is(err, ErrUsage) || !strings.Contains(errOut.String(), "no-such-flag") || out.Len() != 0 {
				t.Fatalf("bad flag: %v, stderr %q, stdout %q; want a usage error on stderr", err, errOut.String(), out.String())
			}
		})
	}
}
