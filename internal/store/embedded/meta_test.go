package embedded

import "testing"

// TestMetaSurvivesReopen: metadata entries are on disk, not in memory.
func TestMetaSurvivesReopen(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, engine)
			if _, err := s.PutMeta(t.Context(), "sub/orders/billing", []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutMeta(t.Context(), "sub/orders/billing", []byte("w"), 1); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir, engine)
			defer s.Close()
			e, err := s.GetMeta(t.Context(), "sub/orders/billing")
			if err != nil || string(e.Value) != "w" || e.Version != 2 {
				t.Fatalf("after reopening: %+v, %v; want value w at version 2", e, err)
			}
		})
	}
}
