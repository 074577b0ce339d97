package api

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

// grpcShop is a participant served over gRPC (h2c): its methods record the
// operations they receive; Inventory.Reserve says no to "100".
type grpcShop struct {
	addr string
	mu   sync.Mutex
	ops  []string // "method op branch"
}

func newGRPCShop(t *testing.T) *grpcShop {
	s := &grpcShop{}
	mux := http.NewServeMux()
	for _, m := range []string{"/shop.Order/Create", "/shop.Order/Cancel", "/shop.Inventory/Reserve", "/shop.Inventory/Release", "/shop.Ledger/TwoPC"} {
		mux.Handle(participant.GRPCHandler(m, func(ctx context.Context, b participant.Branch, payload []byte) error {
			s.mu.Lock()
			s.ops = append(s.ops, m+" "+string(b.Op)+" "+b.BranchID)
			s.mu.Unlock()
			switch {
			case m == "/shop.Inventory/Reserve" && string(payload) == "100":
				return participant.Reject("stock short: have 10, want 100")
			case b.Op == participant.OpPrepare && string(payload) == "read-only":
				return participant.ErrReadOnly
			}
			return nil
		}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.addr = "grpc://" + ln.Addr().String()
	return s
}

func (s *grpcShop) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops)
}

func TestGRPCParticipants(t *testing.T) {
	srv := serve(t)
	c := client.New(srv.URL)
	shop := newGRPCShop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	t.Run("saga over gRPC: a rejection compensates what ran", func(t *testing.T) {
		tx, err := c.NewSaga("").
			Add(shop.addr+"/shop.Order/Create", shop.addr+"/shop.Order/Cancel", "100").
			Add(shop.addr+"/shop.Inventory/Reserve", shop.addr+"/shop.Inventory/Release", "100").
			SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "aborted")
		if !strings.Contains(tx.Reason, "stock short") {
			t.Errorf("reason %q does not carry the participant's no", tx.Reason)
		}
		want := []string{"/shop.Order/Create action 1", "/shop.Inventory/Reserve action 2", "/shop.Order/Cancel compensate 1"}
		if got := shop.got(); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})

	t.Run("2pc over gRPC with a read-only voter", func(t *testing.T) {
		tx, err := c.NewTwoPC("").AddBranch("ro", shop.addr+"/shop.Ledger/TwoPC", "read-only").
			AddBranch("rw", shop.addr+"/shop.Ledger/TwoPC", "yes").SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "succeeded")
		var ro, rw []string
		for _, op := range shop.got() {
			if strings.HasSuffix(op, " ro") {
				ro = append(ro, op)
			}
			if strings.HasSuffix(op, " rw") {
				rw = append(rw, op)
			}
		}
		if !slices.Equal(ro, []string{"/shop.Ledger/TwoPC prepare ro"}) || !slices.Equal(rw, []string{"/shop.Ledger/TwoPC prepare rw", "/shop.Ledger/TwoPC commit rw"}) {
			t.Errorf("read-only branch got %v, read-write branch got %v", ro, rw)
		}
	})

	t.Run("a gRPC participant that is down is retried, not rejected", func(t *testing.T) {
		tx, err := c.NewSaga("").Add("grpc://127.0.0.1:1/shop.Order/Create", "grpc://127.0.0.1:1/shop.Order/Cancel", nil).
			WithOptions(client.Options{MaxAttempts: 2, RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}).
			SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The action's outcome stayed unknown: it may have run, so the saga
		// compensates it (and the compensation cannot reach it either).
		if tx.Status != "stuck" || tx.Branches[0].ForwardStatus != "failed" {
			t.Fatalf("status %s, action %s; want stuck with the action failed (unknown)", tx.Status, tx.Branches[0].ForwardStatus)
		}
	})
}
