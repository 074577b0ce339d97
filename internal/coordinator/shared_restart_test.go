package coordinator

import (
	"testing"
	"time"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store/memstore"
	"github.com/concordtm/concord/internal/testenv"
)

// An instance restarted under the same name within its lease (a fixed
// -instance) resumes the unfinished transactions of its previous run: no
// other instance would claim them, since the name's lease never lapses.
func TestSharedRestartSameNameResumesItsOwn(t *testing.T) {
	st := memstore.New()
	caller := &scriptedCaller{store: st}
	hold := make(chan struct{})
	caller.answer = func(gid string, c protocol.Call) protocol.Outcome {
		if c.Attempt == 1 && c.Op == protocol.OpAction {
			<-hold // the first run's call never answers
			return protocol.OutcomeUnknown
		}
		return protocol.OutcomeSuccess
	}
	cfg := Config{Caller: caller, Shared: &SharedConfig{Instance: "fixed", LeaseTTL: 10 * time.Second, ClaimInterval: 100 * time.Millisecond}}
	first := New(cfg, st)
	if err := first.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := first.SubmitSaga(t.Context(), SagaSpec{GID: "mine", Branches: []protocol.Branch{
		{ID: "1", ForwardURL: "http://p/a", BackwardURL: "http://p/c"}}}); err != nil {
		t.Fatal(err)
	}
	// The first run dies with the action in flight (its loops stop; its
	// lease would run for 10 s more), and the same name starts again.
	first.cancel()
	close(hold)
	second := New(cfg, st)
	if err := second.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close(); first.Close() })
	testenv.Eventually(t, 5*time.Second, "the restarted instance to finish its own saga", func() bool {
		rec, err := st.Get(t.Context(), "mine")
		return err == nil && rec.Finished && rec.Owner == "fixed"
	})
	tx, err := second.Get(t.Context(), "mine")
	if err != nil || tx.Status != protocol.StatusSucceeded {
		t.Fatalf("after the restart: %s (%v), want succeeded", tx.Status, err)
	}
}
