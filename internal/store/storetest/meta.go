package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

// metaTests check store.Meta, which every backend must implement.
var metaTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"MetaRoundtrip", meta(testMetaRoundtrip)},
	{"MetaCompareAndSet", meta(testMetaCAS)},
	{"MetaDelete", meta(testMetaDelete)},
	{"MetaListPrefix", meta(testMetaList)},
	{"MetaInvalid", meta(testMetaInvalid)},
	{"MetaLimits", meta(testMetaLimits)},
	{"MetaApartFromRecords", meta(testMetaApart)},
	{"MetaConcurrentIncrements", meta(testMetaConcurrent)},
	{"MetaConcurrentUnconditional", meta(testMetaConcurrentAny)},
}

// meta adapts a Meta test to the suite's signature.
func meta(fn func(t *testing.T, m store.Meta)) func(t *testing.T, s store.Store) {
	return func(t *testing.T, s store.Store) {
		m, ok := s.(store.Meta)
		if !ok {
			t.Fatalf("%T does not implement store.Meta", s)
		}
		fn(t, m)
	}
}

func putMeta(t testing.TB, m store.Meta, key, value string, expected int64) int64 {
	t.Helper()
	v, err := m.PutMeta(t.Context(), key, []byte(value), expected)
	if err != nil {
		t.Fatalf("PutMeta(%q, expected %d): %v", key, expected, err)
	}
	return v
}

func checkMeta(t testing.TB, m store.Meta, key, value string, version int64) {
	t.Helper()
	e, err := m.GetMeta(t.Context(), key)
	if err != nil {
		t.Fatalf("GetMeta(%q): %v", key, err)
	}
	if e.Key != key || string(e.Value) != value || e.Version != version {
		t.Fatalf("GetMeta(%q) = {%q, %q, v%d}, want {%q, %q, v%d}", key, e.Key, e.Value, e.Version, key, value, version)
	}
}

func testMetaRoundtrip(t *testing.T, m store.Meta) {
	if _, err := m.GetMeta(t.Context(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetMeta of an absent key: %v, want ErrNotFound", err)
	}
	if v := putMeta(t, m, "k", "one", 0); v != 1 {
		t.Fatalf("first PutMeta returned version %d, want 1", v)
	}
	checkMeta(t, m, "k", "one", 1)
	if v := putMeta(t, m, "k", "two", 1); v != 2 {
		t.Fatalf("PutMeta at version 1 returned %d, want 2", v)
	}
	if v := putMeta(t, m, "k", "", store.MetaAny); v != 3 {
		t.Fatalf("unconditional PutMeta returned %d, want 3", v)
	}
	checkMeta(t, m, "k", "", 3)
	if v := putMeta(t, m, "fresh", "x", store.MetaAny); v != 1 {
		t.Fatalf("unconditional PutMeta of a new key returned %d, want 1", v)
	}
	// Values are copied in and out.
	buf := []byte("abc")
	if _, err := m.PutMeta(t.Context(), "copy", buf, 0); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X'
	e, err := m.GetMeta(t.Context(), "copy")
	if err != nil {
		t.Fatal(err)
	}
	e.Value[1] = 'Y'
	checkMeta(t, m, "copy", "abc", 1)
}

func testMetaCAS(t *testing.T, m store.Meta) {
	putMeta(t, m, "k", "v1", 0)
	putMeta(t, m, "k", "v2", 1)
	for _, tc := range []struct {
		key      string
		expected int64
	}{
		{"k", 0},      // must be absent, exists
		{"k", 1},      // stale
		{"k", 3},      // from the future
		{"absent", 1}, // must exist
	} {
		_, err := m.PutMeta(t.Context(), tc.key, []byte("bad"), tc.expected)
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutMeta(%q, expected %d): %v, want ErrConflict", tc.key, tc.expected, err)
		}
	}
	checkMeta(t, m, "k", "v2", 2)
	if _, err := m.GetMeta(t.Context(), "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a conflicting PutMeta created the key: %v", err)
	}
}

func testMetaDelete(t *testing.T, m store.Meta) {
	if err := m.DeleteMeta(t.Context(), "absent", store.MetaAny); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteMeta of an absent key: %v, want ErrNotFound", err)
	}
	putMeta(t, m, "k", "v1", 0)
	putMeta(t, m, "k", "v2", 1)
	if err := m.DeleteMeta(t.Context(), "k", 1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("DeleteMeta at a stale version: %v, want ErrConflict", err)
	}
	checkMeta(t, m, "k", "v2", 2)
	if err := m.DeleteMeta(t.Context(), "k", 2); err != nil {
		t.Fatalf("DeleteMeta at the stored version: %v", err)
	}
	if _, err := m.GetMeta(t.Context(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetMeta after DeleteMeta: %v, want ErrNotFound", err)
	}
	if v := putMeta(t, m, "k", "again", 0); v != 1 {
		t.Fatalf("re-created key has version %d, want 1", v)
	}
	if err := m.DeleteMeta(t.Context(), "k", store.MetaAny); err != nil {
		t.Fatalf("unconditional DeleteMeta: %v", err)
	}
	if es, err := m.ListMeta(t.Context(), ""); err != nil || len(es) != 0 {
		t.Fatalf("ListMeta after deleting everything: %d entries, %v", len(es), err)
	}
}

func testMetaList(t *testing.T, m store.Meta) {
	// Keys with the wildcards of LIKE and glob patterns, upper case sorting
	// before lower case (bytes, not a collation), and a multi-byte rune.
	keys := []string{
		"a", "a/", "a/b", "a/b/c", "a0", "a%", "a_x", "a*", "a[", `a\`,
		"B", "b", "é", "a/\xc3\xa9",
	}
	for i, k := range keys {
		putMeta(t, m, k, fmt.Sprint(i), 0)
	}
	for _, prefix := range []string{"", "a", "a/", "a/b", "a%", "a_", "a*", "a[", `a\`, "B", "b", "c", "\xc3"} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		sortBytes(want)
		es, err := m.ListMeta(t.Context(), prefix)
		if err != nil {
			t.Fatalf("ListMeta(%q): %v", prefix, err)
		}
		got := make([]string, len(es))
		for i, e := range es {
			got[i] = e.Key
			idx := -1
			for j, k := range keys {
				if k == e.Key {
					idx = j
				}
			}
			if string(e.Value) != fmt.Sprint(idx) || e.Version != 1 {
				t.Errorf("ListMeta(%q): entry %q = {%q, v%d}, want {%q, v1}", prefix, e.Key, e.Value, e.Version, fmt.Sprint(idx))
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("ListMeta(%q) = %q, want %q", prefix, got, want)
		}
	}
}

// sortBytes sorts keys in byte order (insertion sort: the lists are short).
func sortBytes(keys []string) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

func testMetaInvalid(t *testing.T, m store.Meta) {
	for _, tc := range []struct {
		name  string
		key   string
		value []byte
	}{
		{"empty key", "", nil},
		{"key too long", strings.Repeat("k", store.MaxMetaKey+1), nil},
		{"value too large", "k", make([]byte, store.MaxMetaValue+1)},
	} {
		if _, err := m.PutMeta(t.Context(), tc.key, tc.value, store.MetaAny); !errors.Is(err, store.ErrInvalidMeta) {
			t.Errorf("PutMeta with %s: %v, want ErrInvalidMeta", tc.name, err)
		}
	}
	if es, err := m.ListMeta(t.Context(), ""); err != nil || len(es) != 0 {
		t.Fatalf("refused writes left %d entries (%v)", len(es), err)
	}
}

func testMetaLimits(t *testing.T, m store.Meta) {
	key := strings.Repeat("k", store.MaxMetaKey)
	value := bytes.Repeat([]byte{0, 1, 0xff, 'v'}, store.MaxMetaValue/4)
	putMeta(t, m, key, string(value), 0)
	e, err := m.GetMeta(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Value, value) {
		t.Fatalf("a %d-byte value came back as %d bytes, or different", len(value), len(e.Value))
	}
}

func testMetaApart(t *testing.T, m store.Meta) {
	s := m.(store.Store)
	commit(t, s, record("g1", "saga", "running", false, 100, []byte("data")))
	putMeta(t, m, "g1", "meta", 0)
	putMeta(t, m, "g2", "meta", 0)
	checkRecord(t, mustGet(t, s, "g1"), record("g1", "saga", "running", false, 100, []byte("data")))
	if _, err := s.Get(t.Context(), "g2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a metadata entry is visible as a record: %v", err)
	}
	checkGIDs(t, "List", mustList(t, s, store.ListOptions{}), []string{"g1"})
	if got := unfinished(t, s); len(got) != 1 {
		t.Fatalf("Unfinished reports %d records, want 1", len(got))
	}
	es, err := m.ListMeta(t.Context(), "")
	if err != nil || len(es) != 2 {
		t.Fatalf("ListMeta: %d entries, %v; want 2", len(es), err)
	}
}

// testMetaConcurrent increments a counter with read-modify-write loops
// from several goroutines: compare-and-set must lose no increment.
func testMetaConcurrent(t *testing.T, m store.Meta) {
	const workers, each = 4, 10
	putMeta(t, m, "counter", "0", 0)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				e, err := m.GetMeta(t.Context(), "counter")
				if err != nil {
					errs <- err
					return
				}
				var n int
				fmt.Sscan(string(e.Value), &n)
				_, err = m.PutMeta(t.Context(), "counter", []byte(fmt.Sprint(n+1)), e.Version)
				switch {
				case err == nil:
					done++
				case !errors.Is(err, store.ErrConflict):
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkMeta(t, m, "counter", fmt.Sprint(workers*each), workers*each+1)
}

// testMetaConcurrentAny writes one new key unconditionally from several
// goroutines at once: every write gets its own version.
func testMetaConcurrentAny(t *testing.T, m store.Meta) {
	const workers = 6
	versions := make(chan int64, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := m.PutMeta(t.Context(), "race", []byte(fmt.Sprint(i)), store.MetaAny)
			if err != nil {
				errs <- err
				return
			}
			versions <- v
		}()
	}
	wg.Wait()
	close(errs)
	close(versions)
	for err := range errs {
		t.Fatalf("unconditional PutMeta: %v", err)
	}
	seen := make(map[int64]bool)
	for v := range versions {
		if seen[v] || v < 1 || v > workers {
			t.Fatalf("unconditional PutMeta returned version %d twice or out of 1..%d", v, workers)
		}
		seen[v] = true
	}
	e, err := m.GetMeta(t.Context(), "race")
	if err != nil || e.Version != workers {
		t.Fatalf("after %d writes: %+v, %v; want version %d", workers, e, err, workers)
	}
}
