// Package storeopen opens a store.Store from a URL, choosing the backend by
// its scheme:
//
//	concord-data, /var/lib/concord        embedded, default engine (a plain path)
//	embedded:///var/lib/concord           embedded; ?engine=pebble or ?engine=bbolt
//	embedded:relative/dir                 a relative path
//	pebble:///path, bbolt:///path         embedded with that engine (bolt: too)
//	postgres://user:pass@host:5432/db?sslmode=disable&schema=s&table_prefix=p_
//	postgresql://...                      the same; other parameters go to pgx
//	mysql://user:pass@host:3306/db?table_prefix=p_&tls=true
//	                                      other parameters go to go-sql-driver/mysql,
//	                                      which sends unknown ones as session variables
//	redis://user:pass@host:6379/0?namespace=prod   (prefix= is an alias)
//	rediss://...                          Redis over TLS
//
// An unreachable server gives an error wrapping store.ErrUnavailable that
// names the address. Errors never repeat a password.
package storeopen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/embedded"
	"github.com/concordtm/concord/internal/store/mysqlstore"
	"github.com/concordtm/concord/internal/store/pgstore"
	"github.com/concordtm/concord/internal/store/redisstore"
)

// ErrBadURL is wrapped by every error about the URL itself.
var ErrBadURL = errors.New("storeopen: bad store URL")

// Options configures Open.
type Options struct {
	// Migrate runs store.Migrator.Migrate after opening, for backends
	// that have a schema. Without it a shared store must have been
	// migrated before (its calls fail saying so).
	Migrate bool
}

// Open opens the store that url names, without migrating it.
func Open(ctx context.Context, url string) (store.Store, error) {
	return OpenWith(ctx, url, Options{})
}

// OpenWith opens the store that url names.
func OpenWith(ctx context.Context, rawURL string, opts Options) (store.Store, error) {
	t, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	s, err := t.open(ctx)
	if err != nil {
		return nil, err
	}
	if m, ok := s.(store.Migrator); ok && opts.Migrate {
		if err := m.Migrate(ctx); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// target is a parsed URL: the backend and what its Open takes.
type target struct {
	kind     string // "embedded", "postgres", "mysql", "redis"
	dir      string
	embedded embedded.Options
	dsn      string // for the server backends, in the driver's own form
	pg       pgstore.Options
	my       mysqlstore.Options
	redis    redisstore.Options
}

func (t target) open(ctx context.Context) (store.Store, error) {
	switch t.kind {
	case "embedded":
		return embedded.Open(t.dir, t.embedded)
	case "postgres":
		return pgstore.Open(ctx, t.dsn, t.pg)
	case "mysql":
		return mysqlstore.Open(ctx, t.dsn, t.my)
	default:
		return redisstore.Open(ctx, t.dsn, t.redis)
	}
}

func bad(raw, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrBadURL, redact(raw), fmt.Sprintf(format, args...))
}

// redact hides the password of a URL for messages.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "xxxxx" + raw[i:]
		}
	}
	return raw
}

// parse reads a store URL.
func parse(raw string) (target, error) {
	if strings.TrimSpace(raw) == "" {
		return target{}, fmt.Errorf("%w: empty (want a directory or a URL such as postgres://host/db)", ErrBadURL)
	}
	scheme, rest, hasScheme := strings.Cut(raw, ":")
	if !hasScheme || strings.ContainsAny(scheme, `/\.`) || len(scheme) == 1 {
		// A plain path (a one-letter "scheme" is a Windows drive).
		return target{kind: "embedded", dir: raw}, nil
	}
	switch strings.ToLower(scheme) {
	case "embedded", "pebble", "bolt", "bbolt":
		return parseEmbedded(raw, strings.ToLower(scheme), rest)
	case "postgres", "postgresql":
		return parsePostgres(raw)
	case "mysql":
		return parseMySQL(raw)
	case "redis", "rediss":
		return parseRedis(raw)
	}
	return target{}, bad(raw, "unknown scheme %q (want a path, embedded:, pebble:, bbolt:, postgres:, mysql: or redis:)", scheme)
}

func parseEmbedded(raw, scheme, rest string) (target, error) {
	path, query, _ := strings.Cut(rest, "?")
	if strings.HasPrefix(path, "//") {
		host, p, _ := strings.Cut(path[2:], "/")
		if host != "" && host != "localhost" {
			return target{}, bad(raw, "an embedded store is local: write %s:///path", scheme)
		}
		path = "/" + p
	}
	if path == "" || path == "/" {
		return target{}, bad(raw, "no directory")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return target{}, bad(raw, "%v", err)
	}
	engine := q.Get("engine")
	q.Del("engine")
	if len(q) > 0 {
		return target{}, bad(raw, "unknown parameters %v (only engine=)", keys(q))
	}
	switch scheme {
	case "pebble":
		engine = orEngine(engine, embedded.EnginePebble)
	case "bolt", "bbolt":
		engine = orEngine(engine, embedded.EngineBolt)
	}
	if engine == "bolt" {
		engine = embedded.EngineBolt
	}
	o := embedded.Options{Engine: engine}
	if err := o.Validate(); err != nil {
		return target{}, bad(raw, "%v", err)
	}
	if (scheme == "pebble" && engine != embedded.EnginePebble) || ((scheme == "bolt" || scheme == "bbolt") && engine != embedded.EngineBolt) {
		return target{}, bad(raw, "scheme %s: and engine=%s disagree", scheme, engine)
	}
	return target{kind: "embedded", dir: path, embedded: o}, nil
}

func orEngine(got, def string) string {
	if got == "" {
		return def
	}
	return got
}

func keys(q url.Values) []string {
	var ks []string
	for k := range q {
		ks = append(ks, k)
	}
	return ks
}

func parsePostgres(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, bad(raw, "%v", errors.Unwrap(err))
	}
	if u.Host == "" {
		return target{}, bad(raw, "no host")
	}
	q := u.Query()
	o := pgstore.Options{Schema: q.Get("schema"), TablePrefix: q.Get("table_prefix")}
	q.Del("schema")
	q.Del("table_prefix")
	u.RawQuery = q.Encode()
	return target{kind: "postgres", dsn: u.String(), pg: o}, nil
}

func parseMySQL(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, bad(raw, "%v", errors.Unwrap(err))
	}
	if u.Host == "" {
		return target{}, bad(raw, "no host")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "3306"
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" || strings.Contains(db, "/") {
		return target{}, bad(raw, "want one database name in the path: mysql://host:3306/db")
	}
	q := u.Query()
	o := mysqlstore.Options{TablePrefix: q.Get("table_prefix")}
	q.Del("table_prefix")
	// Let the driver read the remaining parameters, then set what the URL
	// holds outside them.
	cfg, err := mysql.ParseDSN("/?" + q.Encode())
	if err != nil {
		return target{}, bad(raw, "%v", err)
	}
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", net.JoinHostPort(host, port), db
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	return target{kind: "mysql", dsn: cfg.FormatDSN(), my: o}, nil
}

func parseRedis(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, bad(raw, "%v", errors.Unwrap(err))
	}
	q := u.Query()
	ns := q.Get("namespace")
	if p := q.Get("prefix"); p != "" {
		if ns != "" && ns != p {
			return target{}, bad(raw, "namespace= and prefix= disagree")
		}
		ns = p
	}
	q.Del("namespace")
	q.Del("prefix")
	u.RawQuery = q.Encode()
	t := target{kind: "redis", dsn: u.String(), redis: redisstore.Options{Namespace: ns}}
	if err := redisstore.CheckURL(t.dsn); err != nil {
		return target{}, bad(raw, "%v", err)
	}
	return t, nil
}
