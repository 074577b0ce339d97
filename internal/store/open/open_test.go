package storeopen

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/embedded"
	"github.com/concordtm/concord/internal/store/mysqlstore"
	"github.com/concordtm/concord/internal/store/pgstore"
	"github.com/concordtm/concord/internal/store/redisstore"
	"github.com/concordtm/concord/internal/testenv"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want target
	}{
		{"concord-data", target{kind: "embedded", dir: "concord-data"}},
		{"/var/lib/concord", target{kind: "embedded", dir: "/var/lib/concord"}},
		{"./data:odd", target{kind: "embedded", dir: "./data:odd"}},
		{`C:\concord`, target{kind: "embedded", dir: `C:\concord`}},
		{"embedded:///var/lib/c", target{kind: "embedded", dir: "/var/lib/c"}},
		{"embedded:rel/dir", target{kind: "embedded", dir: "rel/dir"}},
		{"embedded:///d?engine=bbolt", target{kind: "embedded", dir: "/d", embedded: embedded.Options{Engine: "bbolt"}}},
		{"pebble:///d", target{kind: "embedded", dir: "/d", embedded: embedded.Options{Engine: "pebble"}}},
		{"bolt:///d", target{kind: "embedded", dir: "/d", embedded: embedded.Options{Engine: "bbolt"}}},
		{"bbolt://localhost/d", target{kind: "embedded", dir: "/d", embedded: embedded.Options{Engine: "bbolt"}}},
		{"postgres://u:p@h:5432/db?sslmode=disable&schema=s&table_prefix=x_",
			target{kind: "postgres", dsn: "postgres://u:p@h:5432/db?sslmode=disable", pg: pgstore.Options{Schema: "s", TablePrefix: "x_"}}},
		{"postgresql://h/db", target{kind: "postgres", dsn: "postgresql://h/db"}},
		{"mysql://root@127.0.0.1/test", target{kind: "mysql", dsn: "root@tcp(127.0.0.1:3306)/test"}},
		{"mysql://u:p%40ss@db.example:3307/concord?table_prefix=c_&timeout=5s",
			target{kind: "mysql", dsn: "u:p@ss@tcp(db.example:3307)/concord?timeout=5s", my: mysqlstore.Options{TablePrefix: "c_"}}},
		{"redis://h:6379/2?prefix=prod", target{kind: "redis", dsn: "redis://h:6379/2", redis: redisstore.Options{Namespace: "prod"}}},
		{"rediss://u:p@h:6380/0?namespace=a&dial_timeout=3s",
			target{kind: "redis", dsn: "rediss://u:p@h:6380/0?dial_timeout=3s", redis: redisstore.Options{Namespace: "a"}}},
	} {
		got, err := parse(tc.url)
		if err != nil {
			t.Errorf("parse(%q): %v", tc.url, err)
			continue
		}
		if got != tc.want {
			t.Errorf("parse(%q) = %+v\nwant %+v", tc.url, got, tc.want)
		}
	}
}

func TestBadURLs(t *testing.T) {
	for _, tc := range []struct{ url, says string }{
		{"", "empty"},
		{"ftp://h/x", `unknown scheme "ftp"`},
		{"embedded://otherhost/d", "local"},
		{"embedded:///", "no directory"},
		{"embedded:///d?engine=rocks", "unknown engine"},
		{"embedded:///d?sync=no", "unknown parameters"},
		{"pebble:///d?engine=bbolt", "disagree"},
		{"postgres:///db", "no host"},
		{"postgres://u:secret@h:notaport/db", "invalid port"},
		{"mysql://u:secret@h:3306/", "database name"},
		{"mysql://u:secret@h:3306/db?timeout=forever", "invalid duration"},
		{"redis://u:secret@h:6379/notanumber", "invalid"},
		{"redis://h:6379/0?bogus=1", "bogus"},
		{"redis://h/0?prefix=a&namespace=b", "disagree"},
	} {
		_, err := parse(tc.url)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("parse(%q) = %v; want ErrBadURL", tc.url, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("parse(%q) = %q; want it to say %q", tc.url, err, tc.says)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("parse(%q) = %q shows the password", tc.url, err)
		}
	}
}

func TestOpenEmbedded(t *testing.T) {
	for _, u := range []string{filepath.Join(t.TempDir(), "plain"), "bbolt://" + filepath.Join(t.TempDir(), "b")} {
		s, err := OpenWith(t.Context(), u, Options{Migrate: true})
		if err != nil {
			t.Fatalf("Open(%q): %v", u, err)
		}
		roundtrip(t, s)
	}
}

// roundtrip commits and reads one record, then closes s.
func roundtrip(t *testing.T, s store.Store) {
	t.Helper()
	defer s.Close()
	if err := s.Commit(t.Context(), []store.Record{{GID: "open-1", Mode: "saga", Status: "running", Version: 1}}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(t.Context(), "open-1"); err != nil || r.Version != 1 {
		t.Fatalf("Get = %+v, %v", r, err)
	}
}

// dropper is what the server stores offer to delete their data.
type dropper interface{ Drop(context.Context) error }

func TestOpenServers(t *testing.T) {
	cases := map[string]func(t *testing.T) string{
		"postgres": func(t *testing.T) string {
			testenv.Postgres(t)
			return testenv.PostgresDSN() + "&table_prefix=" + testenv.UniqueName(t, "open") + "_"
		},
		"mysql": func(t *testing.T) string {
			testenv.MariaDB(t)
			return "mysql://root@127.0.0.1:3306/test?table_prefix=" + testenv.UniqueName(t, "open") + "_"
		},
		"redis": func(t *testing.T) string {
			return "redis://" + testenv.RedisAddr(t) + "/0?prefix=" + testenv.UniqueName(t, "open")
		},
	}
	for name, url := range cases {
		t.Run(name, func(t *testing.T) {
			u := url(t)
			if name == "mysql" && testenv.MariaDBDSN() != testenv.DefaultMariaDBDSN {
				t.Skip("the mysql:// URL is built for the default MariaDB address")
			}
			s, err := OpenWith(t.Context(), u, Options{Migrate: true})
			if err != nil {
				t.Fatalf("Open(%q): %v", u, err)
			}
			t.Cleanup(func() {
				c, err := OpenWith(context.Background(), u, Options{})
				if err != nil {
					t.Errorf("cleanup: %v", err)
					return
				}
				defer c.Close()
				if err := c.(dropper).Drop(context.Background()); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
			if _, ok := s.(store.Leaser); !ok {
				t.Errorf("%T does not implement store.Leaser", s)
			}
			roundtrip(t, s)
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	for _, u := range []string{
		"postgres://u:secret@127.0.0.1:1/db?connect_timeout=2",
		"mysql://u:secret@127.0.0.1:1/db?timeout=2s",
		"redis://u:secret@127.0.0.1:1/0?dial_timeout=2s",
	} {
		_, err := Open(t.Context(), u)
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("Open(%q) = %v; want store.ErrUnavailable naming 127.0.0.1:1", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) = %q shows the password", u, err)
		}
	}
}
