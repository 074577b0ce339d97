package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/participant"
)

func TestWithPeers(t *testing.T) {
	txn := func(mode protocol.Mode) protocol.Txn {
		return protocol.Txn{GID: "g", Mode: mode, Branches: []protocol.Branch{
			{ID: "a", ForwardURL: "http://a/x"}, {ID: "b", ForwardURL: "grpc://b:1/s.S/M"}, {ID: "c", ForwardURL: "http://c/x"},
		}}
	}
	for _, tc := range []struct {
		mode protocol.Mode
		op   protocol.Op
		want bool
	}{
		{protocol.ModeTwoPC, protocol.OpPrepare, true},
		{protocol.ModeTwoPC, protocol.OpCommit, false},
		{protocol.ModeTwoPC, protocol.OpAbort, false},
		{protocol.ModeThreePC, protocol.OpCanCommit, true},
		{protocol.ModeThreePC, protocol.OpPreCommit, true},
		{protocol.ModeThreePC, protocol.OpDoCommit, false},
		{protocol.ModeSaga, protocol.OpAction, false},
	} {
		got := withPeers(txn(tc.mode), protocol.Call{Branch: "b", Op: tc.op})
		want := []protocol.Peer(nil)
		if tc.want {
			want = []protocol.Peer{{Branch: "a", URL: "http://a/x"}, {Branch: "c", URL: "http://c/x"}}
		}
		if !slices.Equal(got.Peers, want) {
			t.Errorf("%s %s: peers %v, want %v", tc.mode, tc.op, got.Peers, want)
		}
	}
}

// The HTTP and gRPC callers send the peers in the form the participant
// SDK reads back.
func TestCallersSendPeers(t *testing.T) {
	peers := []protocol.Peer{{Branch: "a", URL: "http://a:8080/3pc?x=1,2"}, {Branch: "c", URL: "grpc://c:9/s.S/M"}}
	want := []participant.Peer{{Branch: "a", URL: "http://a:8080/3pc?x=1,2"}, {Branch: "c", URL: "grpc://c:9/s.S/M"}}
	got := make(chan []participant.Peer, 2)
	check := func(ctx context.Context, b participant.Branch, _ []byte) error {
		if b.Op != participant.OpPreCommit {
			return errors.New("wrong op")
		}
		got <- b.Peers
		return nil
	}
	hsrv := httptest.NewServer(participant.Handler(check))
	defer hsrv.Close()
	mux := http.NewServeMux()
	mux.Handle(participant.GRPCHandler("/t.P/Call", check))
	gsrv := httptest.NewUnstartedServer(mux)
	gsrv.EnableHTTP2 = true
	gsrv.Config.Protocols = new(http.Protocols)
	gsrv.Config.Protocols.SetHTTP1(true)
	gsrv.Config.Protocols.SetUnencryptedHTTP2(true)
	gsrv.Start()
	defer gsrv.Close()
	sc := NewSchemeCaller()
	for _, u := range []string{hsrv.URL + "/x", "grpc://" + gsrv.Listener.Addr().String() + "/t.P/Call"} {
		out, msg := sc.Call(t.Context(), "g1", protocol.ModeThreePC, protocol.Call{Branch: "b", Op: protocol.OpPreCommit, URL: u, Peers: peers})
		if out != protocol.OutcomeSuccess {
			t.Fatalf("%s: %s %s", u, out, msg)
		}
		if p := <-got; !slices.Equal(p, want) {
			t.Errorf("%s: participant read peers %v, want %v", u, p, want)
		}
	}
}

// A peer list too long for one header line is left out.
func TestPeersHeaderBounded(t *testing.T) {
	var peers []protocol.Peer
	for i := range 100 {
		peers = append(peers, protocol.Peer{Branch: fmt.Sprintf("branch-%03d", i), URL: "http://participant.example/" + strings.Repeat("p", 40)})
	}
	if h := peersHeader(protocol.Call{Peers: peers[:10]}); h == "" || len(h) > maxPeersHeader {
		t.Errorf("10 peers: %d bytes", len(h))
	}
	if h := peersHeader(protocol.Call{Peers: peers}); h != "" {
		t.Errorf("100 peers: %d bytes sent, want none", len(h))
	}
}
