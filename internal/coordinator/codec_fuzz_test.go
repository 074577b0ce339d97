package coordinator

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
)

// fuzzSeeds returns encoded records of real transactions in several
// states, to start the fuzzer from the shape records really have.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	opts := protocol.Options{Timeout: int64(time.Minute), BranchTimeout: int64(time.Second), MaxAttempts: 3,
		MaxTotalAttempts: 10, RetryInitial: int64(10 * time.Millisecond), RetryMax: int64(time.Second)}
	saga := protocol.Txn{GID: "seed-saga", Mode: protocol.ModeSaga, Options: opts, Concurrent: true, SpecHash: "abc", Branches: []protocol.Branch{
		{ID: "a", ForwardURL: "http://p/a", BackwardURL: "http://p/a/undo", Payload: []byte(`{"n":1}`)},
		{ID: "b", ForwardURL: "http://p/b", BackwardURL: "http://p/b/undo", After: []string{"a"}},
	}}
	var out [][]byte
	add := func(t protocol.Txn) {
		rec, err := encode(&t)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, rec.Data)
	}
	st, _, err := machineFor(protocol.ModeSaga).Step(protocol.Txn{}, protocol.Submit{Now: 1, Txn: saga})
	if err != nil {
		tb.Fatal(err)
	}
	add(st) // running, a in flight
	st, _, err = machineFor(protocol.ModeSaga).Step(st, protocol.Result{Now: 2, Branch: "a", Op: protocol.OpAction, Attempt: 1, Started: 1, Outcome: protocol.OutcomeRejected, Error: "no"})
	if err != nil {
		tb.Fatal(err)
	}
	add(st) // aborted, with history
	tcc, _, err := machineFor(protocol.ModeTCC).Step(protocol.Txn{}, protocol.Submit{Now: 1, Txn: protocol.Txn{GID: "seed-tcc", Mode: protocol.ModeTCC, Options: opts}})
	if err != nil {
		tb.Fatal(err)
	}
	tcc, _, err = machineFor(protocol.ModeTCC).Step(tcc, protocol.Register{Now: 2, Branch: protocol.Branch{ID: "x", ForwardURL: "http://p/c", BackwardURL: "http://p/x", Payload: []byte("p")}})
	if err != nil {
		tb.Fatal(err)
	}
	add(tcc) // trying, one branch
	stuck := st
	stuck.Status, stuck.StuckPhase, stuck.StuckReason = protocol.StatusStuck, protocol.StatusCompensating, "compensation failed"
	add(stuck)
	return out
}

// FuzzDecodeRecord feeds arbitrary bytes to decode, as a damaged store
// would. decode must never panic; bytes it accepts must survive an
// encode/decode round trip unchanged; and since Start steps every record
// it accepts with Recover, that step must not panic either.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"v":1}`, `{"v":2,"txn":{"gid":"g","mode":"saga","status":"running"}}`,
		`{"v":1,"txn":{"gid":"g","mode":"xa","status":"running"}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"exploded"}}`,
		`{"v":1,"txn":{"gid":"","mode":"saga","status":"running"}}`,
		`{"v":1,"txn":{"gid":"g","mode":"tcc","status":"running","branches":[{"id":"a"},{"id":"a"}]}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"running","branches":[{"id":""}]}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"running","branches":[{"id":"a","after":["a"]}],"concurrent":true}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"stuck","stuck_phase":"running","branches":[{"id":"a","fwd":{"status":"failed"}}]}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"compensating","branches":[{"id":"a","fwd":{"status":"inflight","attempts":-1}}]}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"running","branches":[{"id":"a","payload":"not base64!"}]}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"running","branches":null,"created_at":1e400}}`,
		`{"v":1,"txn":{"gid":"g\u0000","mode":"tcc","status":"succeeded","branches":[]}}`,
		`{"v":1,"v":1,"TXN":{"GID":"g","Mode":"saga","Status":"aborted"}}`,
		`{"v":1,"txn":{"gid":"g","mode":"saga","status":"running","options":{"max_attempts":0},"branches":[{"id":"a","fwd":{"status":"retrying","next_at":-9}}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		txn, err := decode(data)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("decode error without store.ErrCorrupt: %v", err)
			}
			return
		}
		rec, err := encode(&txn)
		if err != nil {
			t.Fatalf("encode of a decoded record: %v", err)
		}
		if rec.GID != txn.GID || rec.Mode != string(txn.Mode) || rec.Status != string(txn.Status) ||
			rec.Finished != txn.Status.Final() || rec.CreatedAt != txn.CreatedAt || rec.UpdatedAt != txn.UpdatedAt {
			t.Fatalf("record metadata %+v does not match the transaction", rec)
		}
		again, err := decode(rec.Data)
		if err != nil {
			t.Fatalf("decode(encode(decode(x))) failed: %v\nrecord: %s", err, rec.Data)
		}
		if !reflect.DeepEqual(normalized(txn), normalized(again)) {
			t.Fatalf("round trip changed the transaction\nbefore: %+v\nafter:  %+v", txn, again)
		}
		rec2, err := encode(&again)
		if err != nil || !bytes.Equal(rec.Data, rec2.Data) {
			t.Fatalf("encoding is not stable: %v\n%s\n%s", err, rec.Data, rec2.Data)
		}

		// Start recovers every unfinished record it can decode.
		machineFor(txn.Mode).Step(txn, protocol.Recover{Now: time.Now().UnixNano()})
	})
}

// normalized treats empty and nil slices alike: JSON drops the difference
// for omitempty fields, and nothing reads it.
func normalized(t protocol.Txn) protocol.Txn {
	t = t.Clone()
	if len(t.Branches) == 0 {
		t.Branches = nil
	}
	for i := range t.Branches {
		b := &t.Branches[i]
		if len(b.Payload) == 0 {
			b.Payload = nil
		}
		if len(b.After) == 0 {
			b.After = nil
		}
		if len(b.History) == 0 {
			b.History = nil
		}
	}
	return t
}
