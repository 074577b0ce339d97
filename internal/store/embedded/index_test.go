package embedded

import (
	"bytes"
	"fmt"
	"testing"
)

// checkIndexes reads the whole key space and fails the test unless the
// indexes hold exactly the entries the records call for.
func checkIndexes(t *testing.T, s *Store) {
	t.Helper()
	want := make(map[string][]byte) // index key -> value
	got := make(map[string][]byte)
	err := s.read(func(r reader) error {
		return r.scan(nil, nil, false, func(k, v []byte) (bool, error) {
			switch k[0] {
			case kindVersion:
				if !bytes.Equal(k, versionKey) || !bytes.Equal(v, []byte{schemaVersion}) {
					return false, fmt.Errorf("bad version entry %x = %x", k, v)
				}
			case kindRecord:
				rec, err := decodeRecord(string(k[1:]), v, true)
				if err != nil {
					return false, err
				}
				for _, kv := range indexKeys(rec) {
					want[string(kv.key)] = kv.value
				}
			case kindCreated, kindStatus, kindMode, kindLive, kindFinished:
				got[string(k)] = bytes.Clone(v)
			case kindEntry:
				if _, err := decodeEntry(string(k[1:]), v); err != nil {
					return false, err
				}
			default:
				return false, fmt.Errorf("unknown key %x", k)
			}
			return true, nil
		})
	})
	if err != nil {
		t.Fatalf("reading the key space: %v", err)
	}
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("index entry %q is missing", k)
		case !bytes.Equal(g, v):
			t.Errorf("index entry %q = %x, want %x", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("stale index entry %q", k)
		}
	}
}
