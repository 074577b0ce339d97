package coordinator

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/concordtm/concord/internal/protocol"
)

// fill sets every field reachable from v to a non-zero value derived from
// *n, so that a field the codec forgets shows up as a difference.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n) * 1_000_003)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(s.Index(i), n)
		}
		v.Set(s)
	case reflect.Uint8:
		v.SetUint(uint64(*n))
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

// Every field of a transaction survives the binary round trip: a field
// added to protocol.Txn (or Branch, OpState, Attempt, Options) without a
// place in codec_binary.go fails here.
func TestBinaryCodecCoversEveryField(t *testing.T) {
	var tx protocol.Txn
	n := 0
	fill(reflect.ValueOf(&tx).Elem(), &n)
	data := encodeBinary(nil, &tx)
	got, err := decodeBinary(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tx) {
		t.Fatalf("round trip changed the transaction:\n got %+v\nwant %+v", got, tx)
	}
	// Every strict prefix is refused, never half read.
	for i := range len(data) {
		if _, err := decodeBinary(data[:i]); err == nil {
			t.Fatalf("a %d-byte prefix of a %d-byte record decoded", i, len(data))
		}
	}
	if _, err := decodeBinary(append(data, 0)); err == nil {
		t.Fatal("a record with a trailing byte decoded")
	}
}

// Records written before the binary format (JSON, version 1) still read,
// and read the same as their binary form.
func TestDecodeReadsJSONRecords(t *testing.T) {
	for _, seed := range fuzzSeeds(t) {
		want, err := decode(seed)
		if err != nil {
			t.Fatal(err)
		}
		old, err := json.Marshal(envelope{V: recordVersion, Txn: want})
		if err != nil {
			t.Fatal(err)
		}
		got, err := decode(old)
		if err != nil {
			t.Fatalf("decode of a version-1 record: %v", err)
		}
		if !reflect.DeepEqual(normalized(got), normalized(want)) {
			t.Fatalf("version-1 record read as %+v, want %+v", got, want)
		}
		if len(seed) >= len(old) {
			t.Errorf("binary record %d bytes, JSON %d: want it smaller", len(seed), len(old))
		}
	}
}

// benchTxn is a finished 2-branch TCC with its history, the record the
// benchmark writes most.
func benchTxn() protocol.Txn {
	tx := protocol.Txn{GID: NewGID(), Mode: protocol.ModeTCC, Status: protocol.StatusSucceeded, SpecHash: "0123456789abcdef01234567",
		Options: protocol.Options{Timeout: int64(time.Minute), BranchTimeout: int64(10 * time.Second), MaxAttempts: 8, MaxTotalAttempts: 64,
			RetryInitial: int64(200 * time.Millisecond), RetryMax: int64(30 * time.Second)},
		CreatedAt: time.Now().UnixNano(), UpdatedAt: time.Now().UnixNano(), DecidedAt: time.Now().UnixNano()}
	for _, id := range []string{"1", "2"} {
		tx.Branches = append(tx.Branches, protocol.Branch{ID: id, ForwardOp: protocol.OpConfirm, BackwardOp: protocol.OpCancel,
			ForwardURL: "http://127.0.0.1:8081/confirm", BackwardURL: "http://127.0.0.1:8081/cancel", Payload: []byte(`{"order":"o-1","amount":30}`),
			Fwd: protocol.OpState{Status: protocol.OpDone, Attempts: 1, Tries: 1}, Bwd: protocol.OpState{Status: protocol.OpSkipped},
			History: []protocol.Attempt{{Op: protocol.OpConfirm, Number: 1, Started: time.Now().UnixNano(), Duration: 1e6, Outcome: protocol.OutcomeSuccess}}})
	}
	return tx
}

func BenchmarkEncodeRecord(b *testing.B) {
	tx := benchTxn()
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			rec, _ := encode(&tx)
			size = len(rec.Data)
		}
		b.ReportMetric(float64(size), "bytes/record")
	})
	b.Run("json-v1", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			data, _ := json.Marshal(envelope{V: recordVersion, Txn: tx})
			size = len(data)
		}
		b.ReportMetric(float64(size), "bytes/record")
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	tx := benchTxn()
	rec, _ := encode(&tx)
	old, _ := json.Marshal(envelope{V: recordVersion, Txn: tx})
	for name, data := range map[string][]byte{"binary": rec.Data, "json-v1": old} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
