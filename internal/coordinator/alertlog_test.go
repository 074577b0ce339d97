package coordinator

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store/memstore"
)

// An alert's log line is valid JSON with every key once (a second "msg"
// key, as alert lines once had, is legal for Go's decoder but loses one of
// the two values in most log pipelines).
func TestAlertLogLineHasUniqueKeys(t *testing.T) {
	var buf bytes.Buffer
	c := New(Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}, memstore.New())
	t.Cleanup(func() { c.Close() })
	c.raise(protocol.Txn{GID: "g1", Mode: protocol.ModeSaga}, protocol.Alert{Kind: "stuck", Message: "compensation of branch 1 failed"})
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("log line %q is not a JSON object: %v", buf.String(), err)
	}
	seen := map[string]string{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		key := k.(string)
		if _, dup := seen[key]; dup {
			t.Fatalf("key %q appears twice in %s", key, buf.String())
		}
		s, _ := v.(string)
		seen[key] = s
	}
	if seen["msg"] != "ALERT stuck" || seen["gid"] != "g1" || seen["detail"] != "compensation of branch 1 failed" {
		t.Fatalf("alert line %s: want msg \"ALERT stuck\", gid g1 and the detail", buf.String())
	}
}
