// Package testenv connects integration tests to the real servers they need
// (PostgreSQL, MySQL/MariaDB, Redis).
//
// Each helper reads its address from an environment variable, falling back
// to the loopback default .ci/run provides. When a server is unreachable the
// test is skipped with a message that says how to provide it, except under
// CI=true, where a missing server fails the test: CI must never pass by
// skipping.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Environment variables that override the default addresses.
const (
	EnvPostgres = "CONCORD_TEST_POSTGRES" // a pgx URL or keyword/value DSN
	EnvMySQL    = "CONCORD_TEST_MYSQL"    // a go-sql-driver/mysql DSN
	EnvRedis    = "CONCORD_TEST_REDIS"    // host:port
	EnvRabbitMQ = "CONCORD_TEST_RABBITMQ" // an amqp:// URL
	EnvNATS     = "CONCORD_TEST_NATS"     // a nats:// URL (JetStream enabled)
)

// Defaults: the services .ci/run starts on loopback.
const (
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMariaDBDSN  = "root@tcp(127.0.0.1:3306)/test"
	DefaultRedisAddr   = "127.0.0.1:6379"
	DefaultRabbitMQURL = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
)

// connectTimeout bounds how long a helper waits for a server to answer.
const connectTimeout = 10 * time.Second

// CI reports whether the tests run in continuous integration (env CI set to
// a true value, such as CI=true), where missing services are fatal.
func CI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Require ends the test when err (the result of reaching service name) is
// not nil: with t.Fatal under CI, with t.Skip otherwise. It returns when err
// is nil.
func Require(t testing.TB, name string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if CI() {
		t.Fatalf("testenv: %s is not available and CI is set, so this is a failure, not a skip: %v", name, err)
	}
	t.Skipf("testenv: skipping: %s is not available: %v (start or install it, or point the variable at it; with CI=true this fails)", name, err)
}

// PostgresDSN returns the PostgreSQL DSN: $CONCORD_TEST_POSTGRES or
// DefaultPostgresDSN.
func PostgresDSN() string { return env(EnvPostgres, DefaultPostgresDSN) }

// MariaDBDSN returns the MySQL/MariaDB DSN: $CONCORD_TEST_MYSQL or
// DefaultMariaDBDSN.
func MariaDBDSN() string { return env(EnvMySQL, DefaultMariaDBDSN) }

// Postgres returns a connection pool to the test PostgreSQL database (driver
// "pgx"), closed when the test ends.
func Postgres(t testing.TB) *sql.DB {
	t.Helper()
	dsn := PostgresDSN()
	name := fmt.Sprintf("PostgreSQL at %s (set %s)", redactURL(dsn), EnvPostgres)
	return open(t, name, "pgx", dsn)
}

// MariaDB returns a connection pool to the test MySQL/MariaDB database
// (driver "mysql"), closed when the test ends.
func MariaDB(t testing.TB) *sql.DB {
	t.Helper()
	dsn := MariaDBDSN()
	name := fmt.Sprintf("MariaDB at %s (set %s)", redactMySQL(dsn), EnvMySQL)
	return open(t, name, "mysql", dsn)
}

// RedisAddr returns the address of the test Redis server ($CONCORD_TEST_REDIS
// or DefaultRedisAddr) after checking that it answers PING.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := env(EnvRedis, DefaultRedisAddr)
	Require(t, fmt.Sprintf("Redis at %s (set %s)", addr, EnvRedis), pingRedis(t.Context(), addr))
	return addr
}

// RabbitMQURL returns the AMQP URL of the test RabbitMQ ($CONCORD_TEST_RABBITMQ
// or DefaultRabbitMQURL) after checking that its port accepts connections.
func RabbitMQURL(t testing.TB) string {
	t.Helper()
	u := env(EnvRabbitMQ, DefaultRabbitMQURL)
	Require(t, fmt.Sprintf("RabbitMQ at %s (set %s)", redactURL(u), EnvRabbitMQ), dialURL(t.Context(), u, "5672"))
	return u
}

// NATSURL returns the URL of the test NATS server with JetStream
// ($CONCORD_TEST_NATS or DefaultNATSURL) after checking that its port
// accepts connections.
func NATSURL(t testing.TB) string {
	t.Helper()
	u := env(EnvNATS, DefaultNATSURL)
	Require(t, fmt.Sprintf("NATS at %s (set %s)", redactURL(u), EnvNATS), dialURL(t.Context(), u, "4222"))
	return u
}

func dialURL(ctx context.Context, raw, defPort string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defPort)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	return conn.Close()
}

// UniqueName returns prefix followed by a random suffix, usable as a SQL
// identifier or key prefix that no other test (in this or a parallel test
// binary) will use. prefix should be short, lowercase letters, digits and
// underscores; the result is at most 63 bytes (PostgreSQL's limit).
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	name, err := uniqueName(prefix)
	if err != nil {
		t.Fatalf("testenv: random name: %v", err)
	}
	return name
}

func uniqueName(prefix string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	suffix := "_" + hex.EncodeToString(b[:])
	if max := 63 - len(suffix); len(prefix) > max {
		prefix = prefix[:max]
	}
	return prefix + suffix, nil
}

func open(t testing.TB, name, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		Require(t, name, err)
		return nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		Require(t, name, err)
		return nil
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func pingRedis(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return err
		}
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("unexpected reply to PING: %q", line)
	}
	return nil
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// redactURL hides the password of a URL-style DSN for messages.
func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(keyword/value DSN)"
	}
	return u.Redacted()
}

// redactMySQL hides the password of a go-sql-driver/mysql DSN for messages.
func redactMySQL(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN: " + err.Error() + ")"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxxxx"
	}
	return cfg.FormatDSN()
}

// Eventually polls cond every 10ms until it holds, failing the test after
// timeout or when the test ends. Tests use it instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
