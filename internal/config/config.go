// Package config is the coordinator's configuration: one documented struct
// with defaults and validation, loaded from (in rising precedence) built-in
// defaults, an optional JSON file, CONCORD_* environment variables and
// command-line flags.
package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/concordtm/concord/internal/destination"
)

// Config is everything `concord serve` can be told. Each field's `name` tag
// is its flag (-name), its environment variable (CONCORD_NAME, dashes as
// underscores) and its key in the JSON config file.
type Config struct {
	Addr              string        `name:"addr" help:"listen address; loopback by default"`
	DataDir           string        `name:"data-dir" help:"directory of the embedded store"`
	Engine            string        `name:"engine" help:"embedded store engine: pebble (default) or bbolt; a data dir keeps the engine it was created with"`
	Store             string        `name:"store" help:"shared store URL (postgres://...?schema=S&table_prefix=P, mysql://...?table_prefix=P, redis://...?namespace=N); empty: the embedded store in data-dir"`
	Shared            string        `name:"shared" help:"run as one of several coordinators on the store: auto (yes for postgres/mysql/redis), true or false"`
	Instance          string        `name:"instance" help:"this coordinator's name in a shared store; empty: random per start"`
	LeaseTTL          time.Duration `name:"lease-ttl" help:"shared store: how long a silent instance keeps its transactions before others take them over"`
	Migrate           bool          `name:"migrate" help:"create or upgrade the store's schema on start"`
	Retention         time.Duration `name:"retention" help:"delete finished transactions this long after they finished; 0 keeps them"`
	RetentionInterval time.Duration `name:"retention-interval" help:"how often the retention sweep runs"`
	LogLevel          string        `name:"log-level" help:"debug, info, warn or error"`
	LogFormat         string        `name:"log-format" help:"text or json"`

	Token   string `name:"token" help:"if set, API calls need 'Authorization: Bearer <token>'"`
	TLSCert string `name:"tls-cert" help:"PEM certificate file; with tls-key, serve HTTPS"`
	TLSKey  string `name:"tls-key" help:"PEM private key file"`

	DestinationsConfig string `name:"destinations-config" help:"JSON file mapping branch URL prefixes or hosts to credentials for calling them: {headers, bearer_token, tls_cert, tls_key, ca}; see docs/operations.md"`
	AllowDestinations  string `name:"allow-destinations" help:"comma-separated hosts the coordinator may call (branches, check-backs, brokers): [scheme://]host, *.domain, IP or CIDR; empty: any (see docs/operations.md)"`

	AlertWebhook string        `name:"alert-webhook" help:"URL that receives a JSON POST for every alert (stuck transaction, in-doubt branch)"`
	InDoubtAlert time.Duration `name:"in-doubt-alert" help:"alert once when a 2PC branch has waited this long for phase 2 after voting yes; 0 turns it off"`

	MaxBranches     int           `name:"max-branches" help:"branches per transaction"`
	MaxPayloadBytes int           `name:"max-payload-bytes" help:"bytes per branch payload"`
	MaxRequestBytes int           `name:"max-request-bytes" help:"bytes per API request body"`
	MaxWait         time.Duration `name:"max-wait" help:"longest a wait=true call blocks"`

	ReadHeaderTimeout time.Duration `name:"read-header-timeout" help:"how long a client may take to send a request's headers"`
	BodyReadTimeout   time.Duration `name:"body-read-timeout" help:"how long a client may take to send a request's body, once its headers are in"`
	RateLimit         int           `name:"rate-limit" help:"API requests per second allowed from one client IP (429 beyond); 0: no limit"`
	RateBurst         int           `name:"rate-burst" help:"requests a client IP may send at once before -rate-limit applies; 0: the rate"`

	Timeout          time.Duration `name:"timeout" help:"default transaction deadline"`
	BranchTimeout    time.Duration `name:"branch-timeout" help:"default timeout of one branch call"`
	MaxAttempts      int           `name:"max-attempts" help:"default attempts per branch operation"`
	MaxTotalAttempts int           `name:"max-total-attempts" help:"default attempts per transaction"`
	RetryInitial     time.Duration `name:"retry-initial" help:"default first retry delay"`
	RetryMax         time.Duration `name:"retry-max" help:"default longest retry delay"`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Addr: "127.0.0.1:7070", DataDir: "concord-data", Engine: "pebble", LogLevel: "info", LogFormat: "text",
		Shared: "auto", LeaseTTL: 10 * time.Second, Migrate: true, RetentionInterval: time.Minute, InDoubtAlert: 5 * time.Minute,
		MaxBranches: 100, MaxPayloadBytes: 64 << 10, MaxRequestBytes: 4 << 20, MaxWait: 60 * time.Second,
		ReadHeaderTimeout: 10 * time.Second, BodyReadTimeout: 30 * time.Second,
		Timeout: 60 * time.Second, BranchTimeout: 10 * time.Second, MaxAttempts: 8, MaxTotalAttempts: 64,
		RetryInitial: 200 * time.Millisecond, RetryMax: 30 * time.Second,
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %v", c.Addr, err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir is required"))
	}
	if c.Engine != "pebble" && c.Engine != "bbolt" {
		errs = append(errs, fmt.Errorf("engine %q: want pebble or bbolt", c.Engine))
	}
	if c.Store != "" {
		if u, err := url.Parse(c.Store); err != nil || !slices.Contains([]string{"postgres", "postgresql", "mysql", "redis", "rediss"}, u.Scheme) {
			errs = append(errs, fmt.Errorf("store %q: want a postgres://, mysql:// or redis:// URL, or empty for the embedded store", redact(c.Store)))
		}
	}
	if c.Shared != "auto" && c.Shared != "true" && c.Shared != "false" {
		errs = append(errs, fmt.Errorf("shared %q: want auto, true or false", c.Shared))
	}
	if c.Shared == "true" && c.Store == "" {
		errs = append(errs, errors.New("shared=true needs a shared store (-store postgres://..., mysql://... or redis://...)"))
	}
	if c.LeaseTTL < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("lease-ttl %v: must be at least 100ms", c.LeaseTTL))
	}
	if c.InDoubtAlert < 0 {
		errs = append(errs, errors.New("in-doubt-alert must not be negative"))
	}
	if c.Retention < 0 {
		errs = append(errs, errors.New("retention must not be negative"))
	}
	if c.RetentionInterval <= 0 {
		errs = append(errs, errors.New("retention-interval must be positive"))
	}
	if _, err := c.Level(); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key go together"))
	}
	if _, err := destination.Parse(c.AllowDestinations); err != nil {
		errs = append(errs, err)
	}
	if c.AlertWebhook != "" {
		if u, err := url.Parse(c.AlertWebhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("alert-webhook %q: want an http or https URL", destination.Redact(c.AlertWebhook)))
		}
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"max-branches", int64(c.MaxBranches)}, {"max-payload-bytes", int64(c.MaxPayloadBytes)},
		{"max-request-bytes", int64(c.MaxRequestBytes)}, {"max-wait", int64(c.MaxWait)},
		{"timeout", int64(c.Timeout)}, {"branch-timeout", int64(c.BranchTimeout)},
		{"max-attempts", int64(c.MaxAttempts)}, {"max-total-attempts", int64(c.MaxTotalAttempts)},
		{"retry-initial", int64(c.RetryInitial)}, {"retry-max", int64(c.RetryMax)},
		{"read-header-timeout", int64(c.ReadHeaderTimeout)}, {"body-read-timeout", int64(c.BodyReadTimeout)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", p.name))
		}
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		errs = append(errs, errors.New("rate-limit and rate-burst must not be negative"))
	}
	if c.RetryMax < c.RetryInitial {
		errs = append(errs, errors.New("retry-max must not be below retry-initial"))
	}
	return errors.Join(errs...)
}

// IsShared reports whether the coordinator runs as one of several on its
// store.
func (c Config) IsShared() bool {
	return c.Shared == "true" || (c.Shared == "auto" && c.Store != "")
}

// RedactedStore is Store with any password hidden, for logs.
func (c Config) RedactedStore() string { return redact(c.Store) }

// redact hides a URL's password.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Level parses LogLevel.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

// Logger builds the slog logger the configuration asks for.
func (c Config) Logger() *slog.Logger {
	l, _ := c.Level()
	opts := &slog.HandlerOptions{Level: l}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// Load builds the configuration for `concord serve`: defaults, then the
// file named by -config (or CONCORD_CONFIG), then the environment, then
// flags. args are the command-line arguments after the subcommand.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	c := Default()
	var file string
	fs.StringVar(&file, "config", getenv("CONCORD_CONFIG"), "JSON config file (keys are the flag names)")
	fields := bind(fs, &c)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	// Flags were parsed into c; collect them, then layer file and env
	// underneath and re-apply the flags on top.
	flagValues := map[string]string{}
	for name := range set {
		flagValues[name] = fs.Lookup(name).Value.String()
	}
	c2 := Default()
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return c, fmt.Errorf("config file: %w", err)
		}
		if err := applyFile(&c2, raw); err != nil {
			return c, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	for _, f := range fields {
		env := "CONCORD_" + strings.ToUpper(strings.ReplaceAll(f.name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := setField(&c2, f.index, v); err != nil {
				return c, fmt.Errorf("%s: %w", env, err)
			}
		}
	}
	for name, v := range flagValues {
		if name == "config" {
			continue
		}
		if err := setField(&c2, fieldIndex(fields, name), v); err != nil {
			return c, fmt.Errorf("-%s: %w", name, err)
		}
	}
	return c2, c2.Validate()
}

type field struct {
	name  string
	index int
}

func fieldIndex(fields []field, name string) int {
	for _, f := range fields {
		if f.name == name {
			return f.index
		}
	}
	return -1
}

// bind registers one flag per tagged field of c.
func bind(fs *flag.FlagSet, c *Config) []field {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := sf.Tag.Get("name")
		help := sf.Tag.Get("help")
		out = append(out, field{name: name, index: i})
		switch p := v.Field(i).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, help)
		case *int:
			fs.IntVar(p, name, *p, help)
		case *time.Duration:
			fs.DurationVar(p, name, *p, help)
		case *bool:
			fs.BoolVar(p, name, *p, help)
		default:
			panic("config: unsupported field type " + sf.Type.String())
		}
	}
	return out
}

func setField(c *Config, index int, s string) error {
	if index < 0 {
		return errors.New("unknown setting")
	}
	f := reflect.ValueOf(c).Elem().Field(index)
	switch p := f.Addr().Interface().(type) {
	case *string:
		*p = s
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 500ms or 10s", s)
		}
		*p = d
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		*p = b
	}
	return nil
}

// applyFile reads a JSON object whose keys are flag names; values are
// strings, or numbers for whole-number settings. Unknown keys are errors.
func applyFile(c *Config, raw []byte) error {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	fields := bind(flag.NewFlagSet("", flag.ContinueOnError), &Config{})
	for k, v := range m {
		idx := fieldIndex(fields, k)
		if idx < 0 {
			return fmt.Errorf("unknown key %q", k)
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case float64:
			s = strconv.FormatFloat(v, 'f', -1, 64)
		case bool:
			if reflect.TypeFor[Config]().Field(idx).Type.Kind() != reflect.Bool {
				return fmt.Errorf("key %q: want a string or a number, not true/false", k)
			}
			s = strconv.FormatBool(v)
		default:
			return fmt.Errorf("key %q: want a string, a number or true/false", k)
		}
		if err := setField(c, idx, s); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
	}
	return nil
}
