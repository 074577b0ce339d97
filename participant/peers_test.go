package participant

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePeers(t *testing.T) {
	peers := []Peer{{Branch: "a", URL: "http://a:1/x?q=1,2"}, {Branch: "b", URL: "grpcs://b/s.S/M"}}
	got, err := ParsePeers(EncodePeers(peers))
	if err != nil || !slices.Equal(got, peers) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	if got, err := ParsePeers(""); err != nil || got != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{
		`a=http://x`,
		`{"branch":"a","url":"http://x"}`,
		`[{"branch":"a","url":"http://x"}] []`,
		`[{"branch":"","url":"http://x"}]`,
		`[{"branch":"a","url":"ftp://x"}]`,
		`[{"branch":"a","url":"http://"}]`,
		`[{"branch":"a","url":"http://x"},{"branch":"a","url":"http://y"}]`,
		`[{"branch":"a","url":"http://x","extra":1}]`,
	} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestHandlerRejectsBadPeers(t *testing.T) {
	srv := httptest.NewServer(Handler(func(context.Context, Branch, []byte) error { return nil }))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	Branch{GID: "g", BranchID: "b", Op: OpPrepare, Mode: "2pc"}.SetHeaders(req.Header)
	req.Header.Set(HeaderPeers, "not json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed %s: HTTP %d, want 400", HeaderPeers, resp.StatusCode)
	}
}

func TestAskPeer(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		b, err := FromRequest(r)
		if err != nil || b.Op != OpState || b.GID != "g" || b.BranchID != "b" || b.Mode != "3pc" {
			http.Error(w, "bad query", http.StatusBadRequest)
			return
		}
		WriteState(w, PeerPreCommitted, nil)
	})
	mux.HandleFunc("/weird", func(w http.ResponseWriter, r *http.Request) { WriteState(w, "maybe", nil) })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { WriteState(w, "", errors.New("db down")) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if st, err := AskPeer(ctx, nil, "g", "3pc", Peer{Branch: "b", URL: srv.URL + "/ok"}); err != nil || st != PeerPreCommitted {
		t.Errorf("ok: %q, %v", st, err)
	}
	for _, path := range []string{"/weird", "/fail"} {
		if _, err := AskPeer(ctx, nil, "g", "3pc", Peer{Branch: "b", URL: srv.URL + path}); !errors.Is(err, ErrNoAnswer) {
			t.Errorf("%s: %v, want ErrNoAnswer", path, err)
		}
	}
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if _, err := AskPeer(short, nil, "g", "3pc", Peer{Branch: "b", URL: srv.URL + "/slow"}); !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("slow: %v, want ErrNoAnswer after the deadline", err)
	}
}

// A gRPC participant answers state queries with WithStates, and AskPeer
// asks it over grpc://; without WithStates a state query is
// INVALID_ARGUMENT (no answer).
func TestAskPeerGRPC(t *testing.T) {
	fn := func(context.Context, Branch, []byte) error { return nil }
	mux := http.NewServeMux()
	mux.Handle(GRPCHandler("/t.P/States", fn, WithStates(func(_ context.Context, b Branch) (PeerState, error) {
		if b.Op != OpState || b.GID != "g" || b.BranchID != "b" || b.Mode != "2pc" {
			return "", errors.New("bad query")
		}
		return PeerVoted, nil
	})))
	mux.Handle(GRPCHandler("/t.P/NoStates", fn))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	var hc *http.Client // AskPeer's default for grpc://
	base := "grpc://" + srv.Listener.Addr().String()
	if st, err := AskPeer(t.Context(), hc, "g", "2pc", Peer{Branch: "b", URL: base + "/t.P/States"}); err != nil || st != PeerVoted {
		t.Errorf("with states: %q, %v", st, err)
	}
	if _, err := AskPeer(t.Context(), hc, "g", "2pc", Peer{Branch: "b", URL: base + "/t.P/NoStates"}); !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "invalid_argument") {
		t.Errorf("without states: %v, want ErrNoAnswer (invalid_argument)", err)
	}
}

// FuzzParsePeers: whatever a header holds, ParsePeers either rejects it or
// returns peers that encode and parse back to themselves.
func FuzzParsePeers(f *testing.F) {
	f.Add(`[{"branch":"a","url":"http://a/x"},{"branch":"b","url":"grpc://b:1/s.S/M"}]`)
	f.Add(`[]`)
	f.Add(`[{"branch":"a","url":"http://a/x"},{"branch":"a","url":"http://a/y"}]`)
	f.Add(`{"branch":"a"}`)
	f.Fuzz(func(t *testing.T, v string) {
		peers, err := ParsePeers(v)
		if err != nil {
			return
		}
		again, err := ParsePeers(EncodePeers(peers))
		if err != nil || !slices.Equal(again, peers) && len(peers) > 0 {
			t.Fatalf("%q: parsed %v, round trip %v, %v", v, peers, again, err)
		}
	})
}
