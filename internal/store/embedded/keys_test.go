package embedded

import (
	"bytes"
	"errors"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

func TestRecordRoundtrip(t *testing.T) {
	for _, r := range []store.Record{
		{GID: "g"},
		{GID: "g", Mode: "saga", Status: "running", CreatedAt: -5, UpdatedAt: 1 << 62, Data: []byte{0, 1}},
		{GID: "g", Finished: true, Status: "succeeded", CreatedAt: 1 << 62},
	} {
		got, err := decodeRecord(r.GID, encodeRecord(r), true)
		if err != nil || got.Mode != r.Mode || got.Status != r.Status || got.Finished != r.Finished ||
			got.CreatedAt != r.CreatedAt || got.UpdatedAt != r.UpdatedAt || !bytes.Equal(got.Data, r.Data) {
			t.Fatalf("roundtrip of %+v = %+v, %v", r, got, err)
		}
	}
}

func TestListKeyOrder(t *testing.T) {
	// Byte order of keys must be (CreatedAt, GID) order, negatives included.
	keys := [][]byte{
		listKey([]byte{kindCreated}, -1<<63, "a"),
		listKey([]byte{kindCreated}, -1, "z"),
		listKey([]byte{kindCreated}, 0, ""),
		listKey([]byte{kindCreated}, 0, "a"),
		listKey([]byte{kindCreated}, 0, "ab"),
		listKey([]byte{kindCreated}, 0, "b"),
		listKey([]byte{kindCreated}, 1, "a"),
		listKey([]byte{kindCreated}, 1<<63-1, "a"),
	}
	for i := 1; i < len(keys); i++ {
		if bytes.Compare(keys[i-1], keys[i]) >= 0 {
			t.Fatalf("key %d %x does not sort before key %d %x", i-1, keys[i-1], i, keys[i])
		}
	}
	// A longer status must not fall inside a shorter status's range.
	short, long := listPrefix("run", ""), listPrefix("running", "")
	if bytes.HasPrefix(long, short) {
		t.Fatalf("status prefix %x is a prefix of %x", short, long)
	}
}

// FuzzDecodeRecord feeds arbitrary bytes, as a damaged disk could, to the
// record decoder: it must fail with store.ErrCorrupt or return a record that
// encodes and decodes back to itself.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(store.Record{GID: "g", Mode: "saga", Status: "running", CreatedAt: 1, UpdatedAt: 2, Data: []byte("d")}))
	f.Add(encodeRecord(store.Record{Finished: true, CreatedAt: -1}))
	f.Add([]byte{recordV1, 0, 0x80})
	f.Add([]byte{recordV2, 0, 2, 4, 0, 0, 1, 'o', 6})
	f.Add(encodeRecord(store.Record{GID: "g", Owner: "node-1", Version: 7, Data: []byte("d")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decodeRecord("g", v, true)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("error %v does not wrap store.ErrCorrupt", err)
			}
			return
		}
		again, err := decodeRecord("g", encodeRecord(r), false)
		if err != nil || again.Mode != r.Mode || again.Status != r.Status || again.Finished != r.Finished ||
			again.CreatedAt != r.CreatedAt || again.UpdatedAt != r.UpdatedAt || !bytes.Equal(again.Data, r.Data) ||
			again.Owner != r.Owner || again.Version != r.Version {
			t.Fatalf("re-encoding %+v gave %+v, %v", r, again, err)
		}
	})
}

// FuzzDecodeIndex feeds arbitrary index keys and values to their decoders.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(listKey(listPrefix("running", ""), 42, "gid"), len(listPrefix("running", "")), encodeMeta("running", "saga"))
	f.Add([]byte{kindCreated, 1}, 1, []byte{5, 'a'})
	f.Add([]byte{kindCreated, 1, 2, 3, 4, 5, 6, 7, 8}, int(^uint(0)>>1), []byte{})
	f.Fuzz(func(t *testing.T, k []byte, prefixLen int, v []byte) {
		if ts, gid, err := decodeListKey(k, prefixLen); err == nil {
			if re := listKey(k[:prefixLen], ts, gid); !bytes.Equal(re, k) {
				t.Fatalf("key %x decoded to (%d, %q), which encodes to %x", k, ts, gid, re)
			}
		} else if !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("error %v does not wrap store.ErrCorrupt", err)
		}
		if status, mode, err := decodeMeta(v); err == nil {
			s2, m2, err := decodeMeta(encodeMeta(status, mode))
			if err != nil || s2 != status || m2 != mode {
				t.Fatalf("meta %x decoded to (%q, %q), which re-decodes to (%q, %q), %v", v, status, mode, s2, m2, err)
			}
		} else if !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("error %v does not wrap store.ErrCorrupt", err)
		}
	})
}
