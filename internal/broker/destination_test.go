package broker

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Destination
	}{
		{"amqp://guest:guest@127.0.0.1:5672/?exchange=orders&routing_key=created", Destination{
			Kind: RabbitMQ, Addrs: []string{"127.0.0.1:5672"}, User: "guest", Password: "guest",
			VHost: "/", Exchange: "orders", RoutingKey: "created"}},
		{"amqps://u:p%40ss@mq.example.com/prod", Destination{
			Kind: RabbitMQ, TLS: true, Addrs: []string{"mq.example.com:5671"}, User: "u", Password: "p@ss", VHost: "prod"}},
		{"nats://a:4222,b?subject=orders.created&stream=ORDERS", Destination{
			Kind: NATS, Addrs: []string{"a:4222", "b:4222"}, Subject: "orders.created", Stream: "ORDERS"}},
		{"redis://127.0.0.1:6379/2?stream=orders&maxlen=1000&dedup_ttl=1h", Destination{
			Kind: Redis, Addrs: []string{"127.0.0.1:6379"}, DB: 2, Stream: "orders", MaxLen: 1000, DedupTTL: time.Hour}},
		{"kafka://k1:9092,[::1]:9093?topic=orders", Destination{
			Kind: Kafka, Addrs: []string{"k1:9092", "[::1]:9093"}, Topic: "orders"}},
	} {
		got, err := ParseDestination(tc.raw)
		if err != nil {
			t.Errorf("ParseDestination(%q): %v", tc.raw, err)
			continue
		}
		if got.String() != tc.want.String() || strings.Join(got.Addrs, ",") != strings.Join(tc.want.Addrs, ",") ||
			got.Password != tc.want.Password || got.VHost != tc.want.VHost || got.DedupTTL != tc.want.DedupTTL {
			t.Errorf("ParseDestination(%q) = %+v, want %+v", tc.raw, got, tc.want)
		}
		// String round-trips (except the hidden password).
		if tc.want.Password == "" {
			again, err := ParseDestination(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("round trip of %q: %v, %v", got.String(), again, err)
			}
		}
	}
}

func TestParseDestinationErrors(t *testing.T) {
	for raw, want := range map[string]string{
		"":                                     "missing scheme",
		"mqtt://h?topic=x":                     `unknown scheme "mqtt"`,
		"kafka://h:9092":                       "missing required parameter topic",
		"kafka://h:99999?topic=t":              `bad port "99999"`,
		"kafka://h:abc?topic=t":                `bad port "abc"`,
		"amqp://0[":                            `bad host "0["`, // found by FuzzParseDestination
		"kafka://[a]b]?topic=t":                `bad host "a]b"`,
		"nats://h":                             "missing required parameter subject",
		"nats://h?subject=a.*":                 "literal subject",
		"redis://h/x?stream=s":                 `database "x"`,
		"redis://h?stream=s&maxlen=-1":         "maxlen",
		"redis://h?stream=s&dedup_ttl=soon":    "dedup_ttl",
		"redis://a,b?stream=s":                 "takes one host",
		"amqp://h?exchange=x&routingkey=y":     "unknown parameter(s) routingkey",
		"amqp://h?exchange=x&exchange=y":       "given 2 times",
		"amqp://u:secret@h:0/?exchange=x":      `bad port "0"`,
		"amqp:///vhost":                        "missing host",
		"kafka://,h?topic=t":                   "empty host",
		"kafka://h?topic=t#frag":               "fragment",
		"nats://h:4222/path?subject=s":         "no path",
		"amqp://fe80::1/?exchange=x":           "brackets",
		"redis://h?stream=s&dedup_ttl=1ns":     "at least 1ms",
		"kafka://h:9092/?topic=t&partitions=3": "unknown parameter(s) partitions",
	} {
		_, err := ParseDestination(raw)
		if err == nil {
			t.Errorf("ParseDestination(%q): no error, want %q", raw, want)
			continue
		}
		if !errors.Is(err, ErrBadDestination) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDestination(%q) = %v, want an ErrBadDestination mentioning %q", raw, err, want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseDestination(%q) leaks the password: %v", raw, err)
		}
	}
}

func TestErrorClasses(t *testing.T) {
	base := errors.New("boom")
	if IsPermanent(base) {
		t.Error("plain error is permanent")
	}
	p := permanent(base, ErrTooLarge)
	if !IsPermanent(p) || !errors.Is(p, ErrTooLarge) || !errors.Is(p, base) {
		t.Errorf("permanent(base, ErrTooLarge) = %v loses a sentinel", p)
	}
	if permanent(p) != p {
		t.Error("permanent wraps twice")
	}
}

func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"amqp://u:p@h:1/v?exchange=e", "kafka://a,b:2?topic=t", "redis://h/1?stream=s&maxlen=5", "nats://h?subject=s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		d, err := ParseDestination(raw)
		if err != nil {
			return
		}
		if len(d.Addrs) == 0 {
			t.Fatalf("%q parsed without addresses", raw)
		}
		if _, err := ParseDestination(d.String()); err != nil && d.Password == "" {
			t.Fatalf("String() of %q = %q does not parse: %v", raw, d.String(), err)
		}
	})
}
