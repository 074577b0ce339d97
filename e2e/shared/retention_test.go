package shared

import (
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// Finished transactions older than -retention are deleted by the sweep;
// unfinished and recent ones stay listed.
func TestRetention(t *testing.T) {
	stores := sharedStores(t)
	for name, args := range map[string][]string{
		"embedded": nil,
		"postgres": {"-store", stores["postgres"]},
		"redis":    {"-store", stores["redis"]},
	} {
		t.Run(name, func(t *testing.T) {
			srv := proc.Start(t, t.TempDir(), nil, append(args, "-retention", "1s", "-retention-interval", "200ms")...)
			c := client.New(srv.URL)
			ok := okServer(t)
			prefix := testenv.UniqueName(t, "ret")
			var old []string
			for i := range 30 {
				tx, err := c.NewSaga(prefix+"-old-"+string(rune('a'+i%26))+string(rune('a'+i/26))).Add(ok, ok, "x").SubmitAndWait(t.Context())
				if err != nil || tx.Status != client.StatusSucceeded {
					t.Fatalf("saga: %v %v", tx.GetStatus(), err)
				}
				old = append(old, tx.GID)
			}
			testenv.Eventually(t, 20*time.Second, "old finished sagas deleted", func() bool {
				txs, _, err := c.List(t.Context(), client.ListOptions{GIDPrefix: prefix + "-old-", Limit: 100})
				return err == nil && len(txs) == 0
			})
			fresh, err := c.NewSaga(prefix+"-new").Add(ok, ok, "x").SubmitAndWait(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			txs, _, err := c.List(t.Context(), client.ListOptions{GIDPrefix: prefix + "-new", Limit: 10})
			if err != nil || len(txs) != 1 || txs[0].GID != fresh.GID {
				t.Fatalf("a fresh saga is not listed: %v %v", txs, err)
			}
			if _, err := c.Get(t.Context(), old[0]); err == nil {
				t.Fatalf("%s is still there after the sweep", old[0])
			}
		})
	}
}
