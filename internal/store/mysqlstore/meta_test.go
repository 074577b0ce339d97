package mysqlstore_test

import (
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/store"
	"github.com/concordtm/concord/internal/store/mysqlstore"
	"github.com/concordtm/concord/internal/testenv"
)

// TestMigrateAddsMeta: a database made before the meta table existed
// (simulated by dropping it) gets it from Migrate, keeping its records;
// until then the metadata calls say to run Migrate.
func TestMigrateAddsMeta(t *testing.T) {
	prefix := testenv.UniqueName(t, "cmig") + "_"
	s := openTest(t, mysqlstore.Options{TablePrefix: prefix})
	if err := s.Commit(t.Context(), []store.Record{{GID: "g1", Mode: "saga", Status: "running", Data: []byte("d")}}); err != nil {
		t.Fatal(err)
	}
	db := testenv.MariaDB(t)
	if _, err := db.ExecContext(t.Context(), "DROP TABLE `"+prefix+"meta`"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMeta(t.Context(), "k", []byte("v"), 0); err == nil || !strings.Contains(err.Error(), "run Migrate") {
		t.Fatalf("PutMeta without the table: %v, want an error saying to run Migrate", err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMeta(t.Context(), "k", []byte("v"), 0); err != nil {
		t.Fatalf("PutMeta after Migrate: %v", err)
	}
	if r, err := s.Get(t.Context(), "g1"); err != nil || string(r.Data) != "d" {
		t.Fatalf("the record after Migrate: %+v, %v", r, err)
	}
}
