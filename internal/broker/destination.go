package broker

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the kind of broker a destination names.
type Kind string

// The supported brokers.
const (
	RabbitMQ Kind = "amqp"  // amqp:// or amqps://
	NATS     Kind = "nats"  // nats:// (JetStream)
	Redis    Kind = "redis" // redis:// or rediss:// (Streams)
	Kafka    Kind = "kafka" // kafka://
)

// ErrBadDestination is wrapped by every ParseDestination error.
var ErrBadDestination = errors.New("broker: bad destination")

// A Destination says where a Publisher sends messages. Build it with
// ParseDestination; the fields that do not belong to Kind are empty.
type Destination struct {
	Kind Kind
	// TLS is set by the amqps and rediss schemes.
	TLS bool
	// Addrs are the brokers as host:port, at least one. Only NATS and Kafka
	// accept several (comma-separated in the URL).
	Addrs    []string
	User     string
	Password string

	// RabbitMQ: the virtual host (the URL path, default "/"), the exchange
	// ("" is the default exchange, which routes by queue name) and the
	// routing key (default: each message's Key).
	VHost      string
	Exchange   string
	RoutingKey string

	// NATS: the subject to publish on (required) and, optionally, the stream
	// that must capture it; Open fails permanently when that stream does
	// not exist. Redis: the stream key (required).
	Subject string
	Stream  string

	// Redis: the database number (the URL path, default 0), an approximate
	// length cap (XADD MAXLEN ~, 0 = none) and the dedup window (dedup_ttl,
	// 0 = no dedup; otherwise a second message with the same ID within the
	// window is not added).
	DB       int
	MaxLen   int64
	DedupTTL time.Duration

	// Kafka: the topic (required).
	Topic string
}

var defaultPorts = map[string]string{
	"amqp": "5672", "amqps": "5671", "nats": "4222", "redis": "6379", "rediss": "6379", "kafka": "9092",
}

// params lists the query parameters each kind accepts; any other is an
// error, so that a typo does not silently fall back to a default.
var params = map[Kind][]string{
	RabbitMQ: {"exchange", "routing_key"},
	NATS:     {"subject", "stream"},
	Redis:    {"stream", "maxlen", "dedup_ttl"},
	Kafka:    {"topic"},
}

// ParseDestination parses and validates a destination URL:
//
//	amqp://user:pass@host:port/vhost?exchange=X&routing_key=Y   (also amqps)
//	nats://host:port[,host2:port]?subject=S&stream=ST
//	redis://[user:pass@]host:port/db?stream=S&maxlen=N&dedup_ttl=24h   (also rediss)
//	kafka://host:port[,host2:port]?topic=T
//
// Ports default to the broker's usual one. The error names the problem and
// wraps ErrBadDestination.
func ParseDestination(raw string) (Destination, error) {
	d, err := parseDestination(raw)
	if err != nil {
		return Destination{}, fmt.Errorf("%w %q: %s", ErrBadDestination, redact(raw), err)
	}
	return d, nil
}

func parseDestination(raw string) (Destination, error) {
	var d Destination
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return d, errors.New("missing scheme (want amqp://, amqps://, nats://, redis://, rediss:// or kafka://)")
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "amqp", "amqps":
		d.Kind = RabbitMQ
	case "nats":
		d.Kind = NATS
	case "redis", "rediss":
		d.Kind = Redis
	case "kafka":
		d.Kind = Kafka
	default:
		return d, fmt.Errorf("unknown scheme %q (want amqp, amqps, nats, redis, rediss or kafka)", scheme)
	}
	d.TLS = scheme == "amqps" || scheme == "rediss"
	if strings.Contains(rest, "#") {
		return d, errors.New("a fragment (#...) is not allowed")
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo := authority[:i]
		authority = authority[i+1:]
		user, pass, _ := strings.Cut(userinfo, ":")
		var err error
		if d.User, err = url.PathUnescape(user); err != nil {
			return d, fmt.Errorf("bad user: %v", err)
		}
		if d.Password, err = url.PathUnescape(pass); err != nil {
			return d, errors.New("bad password encoding")
		}
	}
	if authority == "" {
		return d, errors.New("missing host")
	}
	for _, hp := range strings.Split(authority, ",") {
		addr, err := hostPort(hp, defaultPorts[scheme])
		if err != nil {
			return d, err
		}
		d.Addrs = append(d.Addrs, addr)
	}
	if len(d.Addrs) > 1 && d.Kind != NATS && d.Kind != Kafka {
		return d, fmt.Errorf("%s takes one host, got %d", scheme, len(d.Addrs))
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return d, fmt.Errorf("bad query: %v", err)
	}
	if err := checkParams(d.Kind, q); err != nil {
		return d, err
	}
	path, err = url.PathUnescape(path)
	if err != nil {
		return d, fmt.Errorf("bad path: %v", err)
	}
	switch d.Kind {
	case RabbitMQ:
		d.VHost = path
		if d.VHost == "" {
			d.VHost = "/"
		}
		d.Exchange = q.Get("exchange")
		d.RoutingKey = q.Get("routing_key")
	case NATS:
		if path != "" {
			return d, fmt.Errorf("nats takes no path, got %q", path)
		}
		d.Subject, d.Stream = q.Get("subject"), q.Get("stream")
		if d.Subject == "" {
			return d, errors.New("missing required parameter subject")
		}
		if strings.ContainsAny(d.Subject, " \t\r\n*>") {
			return d, fmt.Errorf("subject %q must be a literal subject (no spaces or wildcards)", d.Subject)
		}
	case Redis:
		if path != "" {
			if d.DB, err = strconv.Atoi(path); err != nil || d.DB < 0 {
				return d, fmt.Errorf("database %q is not a non-negative number", path)
			}
		}
		if d.Stream = q.Get("stream"); d.Stream == "" {
			return d, errors.New("missing required parameter stream")
		}
		if v := q.Get("maxlen"); v != "" {
			if d.MaxLen, err = strconv.ParseInt(v, 10, 64); err != nil || d.MaxLen < 0 {
				return d, fmt.Errorf("maxlen %q is not a non-negative number", v)
			}
		}
		if v := q.Get("dedup_ttl"); v != "" {
			if d.DedupTTL, err = time.ParseDuration(v); err != nil || d.DedupTTL < time.Millisecond {
				return d, fmt.Errorf("dedup_ttl %q is not a duration of at least 1ms", v)
			}
		}
	case Kafka:
		if path != "" {
			return d, fmt.Errorf("kafka takes no path, got %q", path)
		}
		if d.Topic = q.Get("topic"); d.Topic == "" {
			return d, errors.New("missing required parameter topic")
		}
	}
	return d, nil
}

func hostPort(hp, defPort string) (string, error) {
	if hp == "" {
		return "", errors.New("empty host in host list")
	}
	host, port := hp, defPort
	if strings.HasPrefix(hp, "[") || strings.Count(hp, ":") == 1 {
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			if !strings.HasSuffix(hp, "]") {
				return "", fmt.Errorf("bad host:port %q: %v", hp, err)
			}
			h, p = strings.Trim(hp, "[]"), defPort
		}
		host, port = h, p
	} else if strings.Contains(hp, ":") {
		return "", fmt.Errorf("bad host %q (put IPv6 addresses in brackets)", hp)
	}
	if host == "" {
		return "", fmt.Errorf("missing host in %q", hp)
	}
	if strings.ContainsAny(host, "[]") {
		// Brackets only enclose a whole IPv6 address; a host with one left
		// in would make an address nothing can dial or parse back.
		return "", fmt.Errorf("bad host %q in %q", host, hp)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad port %q in %q (want 1-65535)", port, hp)
	}
	return net.JoinHostPort(host, port), nil
}

func checkParams(k Kind, q url.Values) error {
	allowed := params[k]
	var unknown []string
	for name, vs := range q {
		found := false
		for _, a := range allowed {
			found = found || a == name
		}
		if !found {
			unknown = append(unknown, name)
			continue
		}
		if len(vs) > 1 {
			return fmt.Errorf("parameter %s given %d times", name, len(vs))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown parameter(s) %s for %s (allowed: %s)",
			strings.Join(unknown, ", "), k, strings.Join(allowed, ", "))
	}
	return nil
}

// String returns the destination as a URL with the password hidden.
func (d Destination) String() string {
	scheme := string(d.Kind)
	if d.TLS {
		scheme += "s"
	}
	var b strings.Builder
	b.WriteString(scheme + "://")
	if d.User != "" || d.Password != "" {
		b.WriteString(url.PathEscape(d.User))
		if d.Password != "" {
			b.WriteString(":xxxxx")
		}
		b.WriteString("@")
	}
	b.WriteString(strings.Join(d.Addrs, ","))
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	switch d.Kind {
	case RabbitMQ:
		if d.VHost != "/" {
			b.WriteString("/" + url.PathEscape(d.VHost))
		}
		set("exchange", d.Exchange)
		set("routing_key", d.RoutingKey)
	case NATS:
		set("subject", d.Subject)
		set("stream", d.Stream)
	case Redis:
		if d.DB != 0 {
			b.WriteString("/" + strconv.Itoa(d.DB))
		}
		set("stream", d.Stream)
		if d.MaxLen > 0 {
			set("maxlen", strconv.FormatInt(d.MaxLen, 10))
		}
		if d.DedupTTL > 0 {
			set("dedup_ttl", d.DedupTTL.String())
		}
	case Kafka:
		set("topic", d.Topic)
	}
	if len(q) > 0 {
		b.WriteString("?" + q.Encode())
	}
	return b.String()
}

// redact hides the password of a destination URL for error messages.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authEnd := strings.IndexAny(rest, "/?")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	at := strings.LastIndex(rest[:authEnd], "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
