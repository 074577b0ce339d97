package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/concordtm/concord/client"
	v1 "github.com/concordtm/concord/gen/concord/v1"
)

const method = "/concord.v1.CoordinatorService/"

// dialGRPC connects a standard grpc-go client, without TLS, to srvURL.
func dialGRPC(t *testing.T, srvURL string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(strings.TrimPrefix(srvURL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGRPC(t *testing.T) {
	t.Parallel()
	srv := serve(t)

	t.Run("SDK over gRPC runs a saga", func(t *testing.T) {
		t.Parallel()
		c := client.New(srv.URL, client.WithGRPC())
		p := newRecorder(t)
		p.on("/b2/action", fixed(409, "no"))
		ok, err := c.NewSaga(newGID("grpc")).
			Add(p.url("/b1/action"), p.url("/b1/compensate"), `{"via":"grpc"}`).
			SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, ok, client.StatusSucceeded)
		if got := p.only(t, "/b1/action").Body; got != `{"via":"grpc"}` {
			t.Errorf("payload %q", got)
		}
		// Errors keep their meaning over gRPC.
		if _, err := c.Get(t.Context(), "no-such-gid"); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("Get of an unknown gid over gRPC: %v, want ErrNotFound", err)
		}
		if _, err := c.NewSaga("bad gid!").Add(p.url("/a"), p.url("/u"), nil).Submit(t.Context()); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("bad gid over gRPC: %v, want ErrInvalid", err)
		}
		if _, err := c.NewSaga(ok.GID).Add(p.url("/other"), p.url("/u"), nil).Submit(t.Context()); !errors.Is(err, client.ErrConflict) {
			t.Errorf("reused gid over gRPC: %v, want ErrConflict", err)
		}
		txs, _, err := c.List(t.Context(), client.ListOptions{GIDPrefix: ok.GID})
		if err != nil || len(txs) != 1 {
			t.Errorf("List over gRPC: %d, %v", len(txs), err)
		}
	})

	t.Run("SDK over gRPC with JSON", func(t *testing.T) {
		t.Parallel()
		c := client.New(srv.URL, client.WithGRPC(), client.WithJSON())
		gid, err := c.NewGID(t.Context())
		if err != nil || gid == "" {
			t.Fatalf("NewGID over gRPC+JSON: %q, %v", gid, err)
		}
		p := newRecorder(t)
		tx, err := c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), "json").SubmitAndWait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		p.only(t, "/a")
	})

	// The initiator's SDK calls each Try itself, over plain HTTP/1.1 to
	// an ordinary participant, even when it talks gRPC to the coordinator.
	t.Run("SDK over gRPC runs a TCC", func(t *testing.T) {
		t.Parallel()
		c := client.New(srv.URL, client.WithGRPC())
		p := newRecorder(t)
		tx, err := c.RunTCC(t.Context(), newGID("grpc-tcc"), client.Options{}, tccBranches(p, "x", "y"))
		if err != nil {
			t.Fatalf("RunTCC with client.WithGRPC(): %v", err)
		}
		wantStatus(t, tx, client.StatusSucceeded)
		p.only(t, "/x/confirm")
		p.only(t, "/y/confirm")
	})

	t.Run("standard grpc-go client", func(t *testing.T) {
		t.Parallel()
		conn := dialGRPC(t, srv.URL)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()

		var gidResp v1.NewGIDResponse
		if err := conn.Invoke(ctx, method+"NewGID", &v1.NewGIDRequest{}, &gidResp); err != nil {
			t.Fatalf("NewGID: %v", err)
		}
		if gidResp.Gid == "" {
			t.Fatal("NewGID returned an empty gid")
		}

		p := newRecorder(t)
		req := &v1.SubmitSagaRequest{Gid: gidResp.Gid, Wait: true, Branches: []*v1.SagaBranch{
			{Action: p.url("/a"), Compensate: p.url("/a/undo"), Payload: "from grpc-go"},
		}}
		var sub v1.SubmitResponse
		if err := conn.Invoke(ctx, method+"SubmitSaga", req, &sub); err != nil {
			t.Fatalf("SubmitSaga: %v", err)
		}
		if sub.Transaction.GetStatus() != client.StatusSucceeded || sub.Transaction.GetGid() != gidResp.Gid {
			t.Fatalf("SubmitSaga with wait: %v", sub.Transaction)
		}
		if got := p.only(t, "/a"); got.Body != "from grpc-go" || got.gid() != gidResp.Gid {
			t.Errorf("participant got body %q gid %q", got.Body, got.gid())
		}

		var get v1.GetTransactionResponse
		if err := conn.Invoke(ctx, method+"GetTransaction", &v1.GetTransactionRequest{Gid: gidResp.Gid}, &get); err != nil {
			t.Fatalf("GetTransaction: %v", err)
		}
		if n := len(get.Transaction.GetBranches()); n != 1 {
			t.Errorf("GetTransaction: %d branches", n)
		}

		for _, tc := range []struct {
			name string
			rpc  string
			req  any
			code codes.Code
		}{
			{"unknown gid", "GetTransaction", &v1.GetTransactionRequest{Gid: "no-such-gid"}, codes.NotFound},
			{"bad URL", "SubmitSaga", &v1.SubmitSagaRequest{Branches: []*v1.SagaBranch{{Action: "ftp://x/y", Compensate: p.url("/u")}}}, codes.InvalidArgument},
			{"reused gid", "SubmitSaga", &v1.SubmitSagaRequest{Gid: gidResp.Gid, Branches: []*v1.SagaBranch{{Action: p.url("/b"), Compensate: p.url("/u")}}}, codes.AlreadyExists},
			{"abort a decided saga", "AbortTransaction", &v1.AbortTransactionRequest{Gid: gidResp.Gid}, codes.FailedPrecondition},
		} {
			var out v1.SubmitResponse
			var reply any = &out
			switch tc.rpc {
			case "GetTransaction":
				reply = &v1.GetTransactionResponse{}
			case "AbortTransaction":
				reply = &v1.AbortTransactionResponse{}
			}
			err := conn.Invoke(ctx, method+tc.rpc, tc.req, reply)
			if status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
			}
		}
	})
}
