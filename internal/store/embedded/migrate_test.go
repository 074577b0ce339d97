package embedded

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/concordtm/concord/internal/store"
)

// TestMigrateV1 writes a store in the version-1 layout (records under 'r'),
// reopens it and checks every record, the indexes and the new stamp. More
// records than one migration batch, and some finished, so both indexes and
// the batching loop are exercised.
func TestMigrateV1(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openTest(t, dir, engine)
			const n = 2*migrateBatch + 17
			var batch []store.Record
			for i := range n {
				r := store.Record{
					GID: fmt.Sprintf("20261202T030000.000-%06d", i), Mode: "saga", Status: "running",
					CreatedAt: int64(i + 1), UpdatedAt: int64(i + 1), Data: []byte(fmt.Sprintf(`{"i":%d}`, i)),
				}
				if i%3 == 0 {
					r.Status, r.Finished = "succeeded", true
				}
				batch = append(batch, r)
			}
			if err := s.Commit(ctx, batch); err != nil {
				t.Fatal(err)
			}
			// Rewrite into the version-1 layout.
			err := s.eng.update(func(r reader, w writer) error {
				var keys, vals [][]byte
				err := r.scan([]byte{kindRecord}, []byte{kindRecord + 1}, false, func(k, v []byte) (bool, error) {
					keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(v))
					return true, nil
				})
				if err != nil {
					return err
				}
				for i, k := range keys {
					if err := w.set(append([]byte{kindRecordV1}, k[1:]...), vals[i]); err != nil {
						return err
					}
					if err := w.del(k); err != nil {
						return err
					}
				}
				return w.set(versionKey, []byte{1})
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = openTest(t, dir, engine)
			defer s.Close()
			for _, want := range batch {
				got, err := s.Get(ctx, want.GID)
				if err != nil {
					t.Fatalf("Get(%s) after the upgrade: %v", want.GID, err)
				}
				if got.Status != want.Status || got.Finished != want.Finished || !bytes.Equal(got.Data, want.Data) {
					t.Fatalf("Get(%s) = %+v, want %+v", want.GID, got, want)
				}
			}
			checkIndexes(t, s) // also fails on a leftover 'r' key or a version other than 2
			unf := 0
			if err := s.Unfinished(ctx, func(store.Record) error { unf++; return nil }); err != nil {
				t.Fatal(err)
			}
			if want := n - (n+2)/3; unf != want {
				t.Fatalf("Unfinished after the upgrade: %d records, want %d", unf, want)
			}
		})
	}
}
