package server

import (
	"regexp"
	"testing"

	v1 "github.com/concordtm/concord/gen/concord/v1"
	"github.com/concordtm/concord/internal/broker"
	"github.com/concordtm/concord/internal/coordinator"
)

var topicPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// FuzzSubscribeJSON: whatever Subscribe accepts has valid names, a
// destination id "topic:subscriber" that is a valid branch id, and a URL
// the coordinator can deliver to.
func FuzzSubscribeJSON(f *testing.F) {
	for _, s := range []string{
		`{"topic":"orders","subscriber":"billing","url":"http://p/in"}`,
		`{"topic":"orders","subscriber":"audit","url":"nats://127.0.0.1:4222?subject=a"}`,
		`{"topic":"orders","subscriber":"audit","url":"nats://127.0.0.1:4222"}`,
		`{"topic":"a/b","subscriber":"x","url":"http://p"}`,
		`{"topic":"orders","subscriber":"a:b","url":"http://p"}`,
		`{"topic":"","subscriber":"x","url":"http://p"}`,
		`{"topic":"orders","subscriber":"x","url":"ftp://p"}`,
		`{"topic":"orders","subscriber":"x","url":"http://:"}`,
		`{"topic":"ordérs","subscriber":"x","url":"http://p"}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req v1.SubscribeRequest
		if err := (strictJSON{}).Unmarshal(data, &req); err != nil {
			return
		}
		if err := checkSubscribe(&req); err != nil {
			if err.Error() == "" {
				t.Fatal("refused without a message")
			}
			return
		}
		if !topicPattern.MatchString(req.Topic) || len(req.Topic) > 63 || !topicPattern.MatchString(req.Subscriber) {
			t.Fatalf("accepted topic %q, subscriber %q", req.Topic, req.Subscriber)
		}
		if id := req.Topic + ":" + req.Subscriber; !idPattern.MatchString(id) {
			t.Fatalf("destination id %q is not a valid branch id", id)
		}
		if coordinator.IsBrokerURL(req.Url) {
			if _, err := broker.ParseDestination(req.Url); err != nil {
				t.Fatalf("accepted broker URL %q: %v", req.Url, err)
			}
		} else if u := req.Url; len(u) < 4 || u[:4] != "grpc" {
			callable(t, "url", u)
		}
		roundTrip(t, &req, &v1.SubscribeRequest{})
	})
}

// FuzzMessageTopicsJSON: a message whose topics are accepted names each
// once, with valid names, within the limit.
func FuzzMessageTopicsJSON(f *testing.F) {
	for _, s := range []string{
		`{"payload":"x","topics":["orders"]}`,
		`{"payload":"x","topics":["orders","orders"]}`,
		`{"payload":"x","topics":["a","b","c","d","e"]}`,
		`{"payload":"x","topics":[""]}`,
		`{"payload":"x","topics":["a/b"]}`,
		`{"payload":"x"}`,
		`{"payload":"x","topics":["t"],"destinations":[{"url":"http://p"}]}`,
	} {
		f.Add([]byte(s))
	}
	svc := fuzzService()
	f.Fuzz(func(t *testing.T, data []byte) {
		var req v1.SendMessageRequest
		if err := (strictJSON{}).Unmarshal(data, &req); err != nil {
			return
		}
		if err := svc.checkMessage(req.Gid, req.Destinations, req.Topics, req.Payload, req.Options, req.DelayMs); err != nil {
			return
		}
		if len(req.Topics)+len(req.Destinations) == 0 || len(req.Topics) > svc.limits.MaxBranches {
			t.Fatalf("accepted %d topics and %d destinations", len(req.Topics), len(req.Destinations))
		}
		seen := map[string]bool{}
		for _, tp := range req.Topics {
			if seen[tp] || !topicPattern.MatchString(tp) || len(tp) > 63 {
				t.Fatalf("accepted topics %q", req.Topics)
			}
			seen[tp] = true
		}
		roundTrip(t, &req, &v1.SendMessageRequest{})
	})
}
