package server

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// fuzzService validates with small limits, so that the fuzzer reaches
// them; validation never touches the coordinator.
func fuzzService() *Service { return NewService(nil, Limits{MaxBranches: 4, MaxPayloadBytes: 64}) }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{0,128}$`)

// callable fails unless raw is a URL the coordinator can call: http or
// https, a host name to connect to, and a request can be formed from it.
func callable(t *testing.T, what, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		t.Fatalf("%s %q accepted, but it is not an http(s) URL with a host name (parse error %v)", what, raw, err)
	}
	if _, err := http.NewRequest(http.MethodPost, raw, nil); err != nil {
		t.Fatalf("%s %q accepted but cannot form a request: %v", what, raw, err)
	}
}

// roundTrip checks that an accepted request survives the JSON codec:
// what the server would echo back decodes to the same message.
func roundTrip(t *testing.T, m, fresh proto.Message) {
	t.Helper()
	b, err := strictJSON{}.Marshal(m)
	if err != nil {
		t.Fatalf("marshal an accepted request: %v", err)
	}
	if err := (strictJSON{}).Unmarshal(b, fresh); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if !proto.Equal(m, fresh) {
		t.Fatalf("JSON round trip changed the request:\n%v\n%v", m, fresh)
	}
}

// FuzzSubmitSagaJSON feeds bytes through the API's JSON codec and the
// saga validation: never a panic, and whatever is accepted is within
// every limit and can be called.
func FuzzSubmitSagaJSON(f *testing.F) {
	for _, s := range []string{
		`{"branches":[{"action":"http://p/a","compensate":"http://p/a/undo","payload":"{\"n\":1}"}]}`,
		`{"gid":"order-42","wait":true,"branches":[{"id":"pay","action":"https://pay.example:8443/x?y=1","compensate":"https://pay.example/undo"}],"options":{"timeout_ms":"60000","max_attempts":3,"retry_initial_ms":20,"retry_max_ms":1000,"branch_timeout_ms":500,"max_total_attempts":9}}`,
		`{"concurrent":true,"branches":[{"id":"a","action":"http://p/a","compensate":"http://p/u"},{"id":"b","action":"http://p/b","compensate":"http://p/u","after":["a"]}]}`,
		`{"branchez":[]}`,
		`{"branches":[`,
		``,
		`null`,
		`{}`,
		`{"branches":[null]}`,
		`{"branches":[{"action":"ftp://p/a","compensate":"http://p/u"}]}`,
		`{"branches":[{"action":"http:///a","compensate":"http://p/u"}]}`,
		`{"branches":[{"action":"http://[::1]:80/a","compensate":"http://p/u"}]}`,
		`{"branches":[{"action":"http://p/a","compensate":"http://p/u","after":[""]}]}`,
		`{"gid":"a b","branches":[{"action":"http://p/a","compensate":"http://p/u"}]}`,
		`{"gid":"ordér","branches":[{"action":"http://p/a","compensate":"http://p/u"}]}`,
		`{"branches":[{"action":"http://p/a","compensate":"http://p/u","payload":"` + strings.Repeat("x", 65) + `"}]}`,
		`{"branches":[{"action":"http://p/a","compensate":"http://p/u"}],"options":{"timeout_ms":-1}}`,
		`{"branches":[{"action":"http://p/a","compensate":"http://p/u"}],"options":{"timeout_ms":"9223372036854775807"}}`,
		`{"branches":[{"action":"http://p/a","compensate":"http://p/u"}],"options":{"max_attempts":2147483647}}`,
		`{"branches":[{},{},{},{},{}]}`,
		`{"branches":[{"action":"http://p/a","compensate":"http://p/u","id":"x"}],"gid":"\u0000"}`,
		// A host part with no host name: nothing to connect to.
		`{"branches":[{"action":"http://:","compensate":"http://p/u"}]}`,
		`{"branches":[{"action":"http://p/a","compensate":"https://:8443/undo"}]}`,
	} {
		f.Add([]byte(s))
	}
	svc := fuzzService()
	f.Fuzz(func(t *testing.T, data []byte) {
		var req v1.SubmitSagaRequest
		if err := (strictJSON{}).Unmarshal(data, &req); err != nil {
			return
		}
		if err := svc.checkSaga(&req); err != nil {
			if err.Error() == "" {
				t.Fatal("refused without a message")
			}
			return
		}
		if n := len(req.Branches); n == 0 || n > svc.limits.MaxBranches {
			t.Fatalf("accepted %d branches, limit %d", n, svc.limits.MaxBranches)
		}
		if !idPattern.MatchString(req.Gid) {
			t.Fatalf("accepted gid %q", req.Gid)
		}
		for _, b := range req.Branches {
			if !idPattern.MatchString(b.Id) || len(b.Payload) > svc.limits.MaxPayloadBytes {
				t.Fatalf("accepted branch id %q with a %d-byte payload", b.Id, len(b.Payload))
			}
			for _, a := range b.After {
				if a == "" || !idPattern.MatchString(a) {
					t.Fatalf("accepted after %q", a)
				}
			}
			callable(t, "action", b.Action)
			callable(t, "compensate", b.Compensate)
		}
		o := optionsFromProto(req.Options)
		if o.Timeout < 0 || o.BranchTimeout < 0 || o.RetryInitial < 0 || o.RetryMax < 0 || o.MaxAttempts < 0 || o.MaxTotalAttempts < 0 {
			t.Fatalf("accepted options convert to negative values: %+v", o)
		}
		roundTrip(t, &req, &v1.SubmitSagaRequest{})
	})
}

// FuzzRegisterJSON does the same for RegisterBranch.
func FuzzRegisterJSON(f *testing.F) {
	for _, s := range []string{
		`{"gid":"g","branch_id":"x","confirm":"http://p/c","cancel":"http://p/x","payload":"p"}`,
		`{"gid":"g:1","branch_id":"x.sub","confirm":"https://p:9/c","cancel":"https://p/x"}`,
		`{"gid":"g","branch_id":"x","confirm":"http://p/c"}`,
		`{"gid":"g","confirm":"http://p/c","cancel":"http://p/x"}`,
		`{"branch_id":"x","confirm":"http://p/c","cancel":"http://p/x"}`,
		`{"gid":"g","branch_id":"x","confirm":"mailto:a@b","cancel":"http://p/x"}`,
		`{"gid":"g","branch_id":"x/y","confirm":"http://p/c","cancel":"http://p/x"}`,
		`{"gid":"g","branch_id":"x","confirm":"http://p/c","cancel":"http://p/x","payload":"` + strings.Repeat("x", 65) + `"}`,
		`{"gid":"g","branch_id":"x","confirm":"http://p/c","cancel":"http://p/x","extra":1}`,
		`{"gid":"g","branch_id":"x","confirm":"http://:/c","cancel":"http://p/x"}`,
		`{"gid":1}`,
		`{`,
		``,
	} {
		f.Add([]byte(s))
	}
	svc := fuzzService()
	f.Fuzz(func(t *testing.T, data []byte) {
		var req v1.RegisterBranchRequest
		if err := (strictJSON{}).Unmarshal(data, &req); err != nil {
			return
		}
		if err := svc.checkRegister(&req); err != nil {
			if err.Error() == "" {
				t.Fatal("refused without a message")
			}
			return
		}
		if req.Gid == "" || req.BranchId == "" || !idPattern.MatchString(req.Gid) || !idPattern.MatchString(req.BranchId) {
			t.Fatalf("accepted gid %q branch_id %q", req.Gid, req.BranchId)
		}
		if len(req.Payload) > svc.limits.MaxPayloadBytes {
			t.Fatalf("accepted a %d-byte payload", len(req.Payload))
		}
		callable(t, "confirm", req.Confirm)
		callable(t, "cancel", req.Cancel)
		roundTrip(t, &req, &v1.RegisterBranchRequest{})
	})
}
