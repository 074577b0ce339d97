package client

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// A Transaction converts from the API's form without losing a field, and
// its JSON is the API's JSON.
func TestTransactionFromProtoAndJSON(t *testing.T) {
	p := &v1.Transaction{
		Gid: "g-1", Mode: "saga", Status: "stuck", Reason: "r", StuckPhase: "compensating", StuckReason: "sr",
		CreatedAtUnixMs: 1_700_000_000_001, UpdatedAtUnixMs: 1_700_000_000_050, DeadlineUnixMs: 1_700_000_060_000,
		DecidedAtUnixMs: 1_700_000_000_020, Concurrent: true, TotalAttempts: 7,
		Branches: []*v1.Branch{{
			Id: "1", ForwardUrl: "http://a", BackwardUrl: "http://c", ForwardOp: "action", BackwardOp: "compensate",
			ForwardStatus: "rejected", BackwardStatus: "retrying", After: []string{"0"}, PayloadBytes: 12,
			MidOp: "m", MidStatus: "ms", RetryingOp: "compensate", NextRetryAtUnixMs: 1_700_000_000_070, AttemptsLeft: 2, ForwardUnsure: true,
			Attempts: []*v1.Attempt{{Op: "action", Number: 2, StartedAtUnixMs: 1_700_000_000_010, DurationUs: 1500, Outcome: "rejected", Error: "no"}},
		}},
	}
	tx := fromProto(p)
	if tx.GID != "g-1" || !tx.DecidedAt.Equal(time.UnixMilli(1_700_000_000_020)) || tx.TotalAttempts != 7 {
		t.Fatalf("converted: %+v", tx)
	}
	b := tx.Branch("1")
	if b == nil || !b.ForwardUnsure || b.AttemptsLeft != 2 || b.Attempts[0].Duration != 1500*time.Microsecond || tx.Branch("nope") != nil {
		t.Fatalf("branch: %+v", b)
	}
	if back := tx.toProto(); !reflect.DeepEqual(protojson.Format(back), protojson.Format(p)) {
		t.Fatalf("round trip lost something:\n got %s\nwant %s", protojson.Format(back), protojson.Format(p))
	}
	js, err := json.Marshal(tx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(p)
	var a, w any
	if json.Unmarshal(js, &a) != nil || json.Unmarshal(want, &w) != nil || !reflect.DeepEqual(a, w) {
		t.Fatalf("JSON %s\nwant the API's %s", js, want)
	}
	var again Transaction
	if err := json.Unmarshal(js, &again); err != nil || !reflect.DeepEqual(&again, tx) {
		t.Fatalf("JSON round trip: %+v (%v)", again, err)
	}
	if fromProto(nil) != nil || Settled(nil) {
		t.Fatal("nil handling")
	}
}
