package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// load runs Load the way `concord serve` does, with env as the whole
// environment.
func load(t *testing.T, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return Load(fs, args, func(k string) string { return env[k] })
}

// writeFile writes a config file and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "concord.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	c, err := load(t, nil)
	if err != nil {
		t.Fatalf("Load with nothing set: %v", err)
	}
	if c != Default() {
		t.Errorf("Load with nothing set = %+v, want the defaults %+v", c, Default())
	}
}

// TestPrecedence checks default < file < env < flag for a setting of each
// type, one layer added at a time.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, `{"max-branches": 10, "retry-initial": "1s", "log-level": "debug", "token": "from-file", "timeout": "5s"}`)
	env := map[string]string{
		"CONCORD_MAX_BRANCHES":  "20",
		"CONCORD_RETRY_INITIAL": "2s",
		"CONCORD_LOG_LEVEL":     "warn",
	}
	flags := []string{"-max-branches", "30", "-retry-initial", "3s", "-log-level", "error"}

	type view struct {
		branches int
		initial  time.Duration
		level    string
	}
	d := Default()
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		want  view
		token string
	}{
		{"defaults", nil, nil, view{d.MaxBranches, d.RetryInitial, d.LogLevel}, ""},
		{"file over defaults", nil, []string{"-config", file}, view{10, time.Second, "debug"}, "from-file"},
		{"env over file", env, []string{"-config", file}, view{20, 2 * time.Second, "warn"}, "from-file"},
		{"flag over env", env, append([]string{"-config", file}, flags...), view{30, 3 * time.Second, "error"}, "from-file"},
		{"flag over file", nil, append([]string{"-config", file}, flags...), view{30, 3 * time.Second, "error"}, "from-file"},
		{"flag over env without file", env, flags, view{30, 3 * time.Second, "error"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			got := view{c.MaxBranches, c.RetryInitial, c.LogLevel}
			if got != tc.want || c.Token != tc.token {
				t.Errorf("got %+v token %q, want %+v token %q", got, c.Token, tc.want, tc.token)
			}
			// A setting no layer touches keeps its default.
			if c.MaxAttempts != d.MaxAttempts || c.Addr != d.Addr {
				t.Errorf("untouched settings changed: max-attempts %d addr %q", c.MaxAttempts, c.Addr)
			}
		})
	}

	t.Run("file named by CONCORD_CONFIG", func(t *testing.T) {
		c, err := load(t, map[string]string{"CONCORD_CONFIG": file})
		if err != nil {
			t.Fatal(err)
		}
		if c.MaxBranches != 10 || c.Timeout != 5*time.Second {
			t.Errorf("max-branches %d timeout %v, want the file's 10 and 5s", c.MaxBranches, c.Timeout)
		}
	})

	t.Run("-config over CONCORD_CONFIG", func(t *testing.T) {
		other := writeFile(t, `{"max-branches": 7}`)
		c, err := load(t, map[string]string{"CONCORD_CONFIG": file}, "-config", other)
		if err != nil {
			t.Fatal(err)
		}
		if c.MaxBranches != 7 || c.Timeout != d.Timeout {
			t.Errorf("max-branches %d timeout %v: want only the -config file applied", c.MaxBranches, c.Timeout)
		}
	})

	t.Run("flag set to the default still wins", func(t *testing.T) {
		c, err := load(t, env, "-config", file, "-max-branches", "100", "-retry-initial", "200ms")
		if err != nil {
			t.Fatal(err)
		}
		if c.MaxBranches != 100 || c.RetryInitial != 200*time.Millisecond {
			t.Errorf("max-branches %d retry-initial %v: an explicit flag must win even when it equals the default", c.MaxBranches, c.RetryInitial)
		}
	})

	t.Run("every setting from the environment", func(t *testing.T) {
		c, err := load(t, map[string]string{
			"CONCORD_ADDR": "127.0.0.1:9999", "CONCORD_DATA_DIR": "/tmp/x", "CONCORD_LOG_FORMAT": "json",
			"CONCORD_TOKEN": "t", "CONCORD_TLS_CERT": "c.pem", "CONCORD_TLS_KEY": "k.pem",
			"CONCORD_ALERT_WEBHOOK": "https://hooks.example/x", "CONCORD_MAX_PAYLOAD_BYTES": "100",
			"CONCORD_MAX_REQUEST_BYTES": "2000", "CONCORD_MAX_WAIT": "3s", "CONCORD_BRANCH_TIMEOUT": "4s",
			"CONCORD_MAX_TOTAL_ATTEMPTS": "9", "CONCORD_RETRY_MAX": "1m", "CONCORD_MAX_ATTEMPTS": "2",
		})
		if err != nil {
			t.Fatal(err)
		}
		want := Default()
		want.Addr, want.DataDir, want.LogFormat = "127.0.0.1:9999", "/tmp/x", "json"
		want.Token, want.TLSCert, want.TLSKey = "t", "c.pem", "k.pem"
		want.AlertWebhook, want.MaxPayloadBytes, want.MaxRequestBytes = "https://hooks.example/x", 100, 2000
		want.MaxWait, want.BranchTimeout, want.MaxTotalAttempts = 3*time.Second, 4*time.Second, 9
		want.RetryMax, want.MaxAttempts = time.Minute, 2
		if c != want {
			t.Errorf("got  %+v\nwant %+v", c, want)
		}
	})
}

// TestErrorsNameTheSetting checks that each bad value is refused with an
// error that names the setting (and where it came from).
func TestErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     string // config file body, if any
		env      map[string]string
		args     []string
		mentions []string
	}{
		{"unknown file key", `{"max-branchez": 3}`, nil, nil, []string{"max-branchez", "unknown key"}},
		{"malformed file", `{"max-branches": `, nil, nil, []string{"config file"}},
		{"file value of the wrong type", `{"token": true}`, nil, nil, []string{"token"}},
		{"bad duration in the file", `{"timeout": "soon"}`, nil, nil, []string{"timeout", "soon"}},
		{"bare number as a duration", `{"retry-max": 5}`, nil, nil, []string{"retry-max"}},
		{"bad int in the file", `{"max-branches": "many"}`, nil, nil, []string{"max-branches", "many"}},
		{"fraction for an int", `{"max-attempts": 2.5}`, nil, nil, []string{"max-attempts", "2.5"}},
		{"bad duration in the env", "", map[string]string{"CONCORD_BRANCH_TIMEOUT": "10 seconds"}, nil, []string{"CONCORD_BRANCH_TIMEOUT", "10 seconds"}},
		{"bad int in the env", "", map[string]string{"CONCORD_MAX_PAYLOAD_BYTES": "64k"}, nil, []string{"CONCORD_MAX_PAYLOAD_BYTES", "64k"}},
		{"bad duration flag", "", nil, []string{"-retry-initial", "fast"}, []string{"retry-initial", "fast"}},
		{"bad int flag", "", nil, []string{"-max-branches", "ten"}, []string{"max-branches", "ten"}},
		{"unknown flag", "", nil, []string{"-max-branchez", "3"}, []string{"max-branchez"}},
		{"tls-cert without tls-key", "", nil, []string{"-tls-cert", "cert.pem"}, []string{"tls-cert", "tls-key"}},
		{"tls-key without tls-cert", "", map[string]string{"CONCORD_TLS_KEY": "key.pem"}, nil, []string{"tls-cert", "tls-key"}},
		{"ftp webhook", "", nil, []string{"-alert-webhook", "ftp://hooks.example/x"}, []string{"alert-webhook", "ftp://hooks.example/x"}},
		{"webhook without host", `{"alert-webhook": "http:///x"}`, nil, nil, []string{"alert-webhook"}},
		{"relative webhook", "", map[string]string{"CONCORD_ALERT_WEBHOOK": "/alerts"}, nil, []string{"alert-webhook", "/alerts"}},
		{"zero max-branches", "", nil, []string{"-max-branches", "0"}, []string{"max-branches", "positive"}},
		{"negative timeout", "", nil, []string{"-timeout", "-1s"}, []string{"timeout", "positive"}},
		{"retry-max below retry-initial", "", nil, []string{"-retry-initial", "2s", "-retry-max", "1s"}, []string{"retry-max", "retry-initial"}},
		{"bad log level", "", nil, []string{"-log-level", "loud"}, []string{"log-level", "loud"}},
		{"bad log format", "", nil, []string{"-log-format", "xml"}, []string{"log-format", "xml"}},
		{"bad addr", "", nil, []string{"-addr", "localhost"}, []string{"addr", "localhost"}},
		{"empty data-dir", `{"data-dir": ""}`, nil, nil, []string{"data-dir"}},
		{"bad allow-destinations CIDR", "", nil, []string{"-allow-destinations", "10.0.0.0/33"}, []string{"allow-destinations", "10.0.0.0/33"}},
		{"bad allow-destinations pattern", "", map[string]string{"CONCORD_ALLOW_DESTINATIONS": "pay*.internal"}, nil, []string{"allow-destinations", "pay*.internal"}},
		{"negative rate-limit", `{"rate-limit": -1}`, nil, nil, []string{"rate-limit"}},
		{"zero body-read-timeout", "", nil, []string{"-body-read-timeout", "0s"}, []string{"body-read-timeout", "positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"-config", writeFile(t, tc.file)}, args...)
			}
			_, err := load(t, tc.env, args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}

	t.Run("webhook password not in the error", func(t *testing.T) {
		_, err := load(t, nil, "-alert-webhook", "ftp://u:hunter2@hooks.example/x")
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %v, want one without the password", err)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		_, err := load(t, nil, "-config", filepath.Join(t.TempDir(), "nope.json"))
		if err == nil || !strings.Contains(err.Error(), "nope.json") {
			t.Errorf("error %v, want one naming the missing file", err)
		}
	})

	t.Run("every problem at once", func(t *testing.T) {
		c := Default()
		c.MaxBranches, c.LogFormat, c.TLSKey = -1, "xml", "k.pem"
		err := c.Validate()
		for _, m := range []string{"max-branches", "log-format", "tls-cert"} {
			if err == nil || !strings.Contains(err.Error(), m) {
				t.Errorf("Validate() = %v, want it to mention %q", err, m)
			}
		}
	})
}

func TestSharedStoreSettings(t *testing.T) {
	c := Default()
	if c.IsShared() {
		t.Fatal("the embedded default must not be shared")
	}
	c.Store = "postgres://u:secret@127.0.0.1/db"
	if err := c.Validate(); err != nil || !c.IsShared() {
		t.Fatalf("postgres store: err %v, shared %v", err, c.IsShared())
	}
	c.Shared = "false"
	if c.IsShared() {
		t.Fatal("shared=false must win over auto")
	}
	bad := Default()
	bad.Store = "ftp://u:secret@host/x"
	bad.Shared = "maybe"
	bad.LeaseTTL = time.Millisecond
	err := bad.Validate()
	for _, want := range []string{"store", "shared", "lease-ttl"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password: %v", err)
	}
	only := Default()
	only.Shared = "true"
	if err := only.Validate(); err == nil {
		t.Error("shared=true without a store validated")
	}
}
