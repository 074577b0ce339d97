package participant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// This file is the participant-to-participant side of the commit
// protocols' termination protocols: the coordinator names each voting
// branch's peers (HeaderPeers), and a participant that times out asks them
// for their state (op "state", answered in HeaderState) instead of
// deciding alone.

// Header names of the termination protocols.
const (
	// HeaderPeers, on a 2PC prepare and a 3PC can-commit or pre-commit,
	// lists the other voting branches of the transaction as a JSON array
	// of {"branch": id, "url": participant URL}. gRPC participants get it
	// as the request metadata "concord-peers".
	HeaderPeers = "Concord-Peers"
	// HeaderState carries the answer to a state query (OpState): one of
	// the PeerState values. gRPC participants set it as response metadata.
	HeaderState = "Concord-State"
)

// MaxPeers bounds how many peers a Concord-Peers header may name.
const MaxPeers = 1000

// Peer is another voting branch of the same transaction: its branch id and
// the URL the coordinator calls it at (http(s):// or grpc(s)://).
type Peer struct {
	Branch string `json:"branch"`
	URL    string `json:"url"`
}

// EncodePeers returns the Concord-Peers value naming peers ("" for none).
func EncodePeers(peers []Peer) string {
	if len(peers) == 0 {
		return ""
	}
	raw, _ := json.Marshal(peers) // a slice of string pairs always marshals
	return string(raw)
}

// ParsePeers reads a Concord-Peers value. An empty value is no peers; a
// value that is not a JSON array of peers with a branch id and an http,
// https, grpc or grpcs URL, or that names a branch twice, is an error.
func ParsePeers(v string) ([]Peer, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	var peers []Peer
	if err := dec.Decode(&peers); err != nil {
		return nil, fmt.Errorf("participant: %s: %v", HeaderPeers, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("participant: %s: trailing data after the array", HeaderPeers)
	}
	if len(peers) > MaxPeers {
		return nil, fmt.Errorf("participant: %s: %d peers, at most %d", HeaderPeers, len(peers), MaxPeers)
	}
	seen := make(map[string]bool, len(peers))
	for i, p := range peers {
		if p.Branch == "" {
			return nil, fmt.Errorf("participant: %s[%d]: empty branch id", HeaderPeers, i)
		}
		if seen[p.Branch] {
			return nil, fmt.Errorf("participant: %s[%d]: branch %q named twice", HeaderPeers, i, p.Branch)
		}
		seen[p.Branch] = true
		u, err := url.Parse(p.URL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("participant: %s[%d]: invalid url %q", HeaderPeers, i, p.URL)
		}
		switch u.Scheme {
		case "http", "https", "grpc", "grpcs":
		default:
			return nil, fmt.Errorf("participant: %s[%d]: url %q: scheme must be http, https, grpc or grpcs", HeaderPeers, i, p.URL)
		}
	}
	return peers, nil
}

// PeerState is a participant's answer to a state query: where the branch
// stands in its durable record. The values are the participant machines'
// states (internal/protocol.PState).
type PeerState string

// Answers to a state query.
const (
	// PeerInit: nothing promised. A participant asked about a branch in
	// this state aborts it first (durably) and answers PeerAborted, so
	// PeerInit is only seen from participants that cannot abort.
	PeerInit         PeerState = "init"
	PeerVoted        PeerState = "voted"        // said yes (2PC: prepared), uncertain of the outcome
	PeerPreCommitted PeerState = "precommitted" // 3PC: did the work, waits for do-commit
	PeerCommitted    PeerState = "committed"
	PeerAborted      PeerState = "aborted"
)

// Valid reports whether s is one of the answers.
func (s PeerState) Valid() bool {
	switch s {
	case PeerInit, PeerVoted, PeerPreCommitted, PeerCommitted, PeerAborted:
		return true
	}
	return false
}

// StateFunc answers a peer's state query about branch b (b.Op is OpState,
// b.Mode the protocol). It may change the branch (a participant that has
// not voted aborts); the answer must be durable before it returns.
type StateFunc func(ctx context.Context, b Branch) (PeerState, error)

// WriteState answers a state query over HTTP: 200 with HeaderState set
// (and the state as the body), or err in the wire form of WriteResult.
func WriteState(w http.ResponseWriter, st PeerState, err error) {
	if err != nil {
		WriteResult(w, err)
		return
	}
	w.Header().Set(HeaderState, string(st))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, string(st)+"\n")
}

// h2cClient asks grpc:// peers: gRPC needs HTTP/2, and without TLS that is
// cleartext HTTP/2.
var h2cClient = func() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}()

// ErrNoAnswer is returned (wrapped) by AskPeer when the peer gave no
// usable answer: unreachable, timed out, an error status, or a state
// that is not one of PeerState's values. The termination protocols treat
// it as no answer.
var ErrNoAnswer = errors.New("participant: peer gave no answer")

// AskPeer asks peer p for its state in transaction gid (mode "2pc" or
// "3pc"): an HTTP POST with the branch headers and Concord-Op: state for
// http(s) URLs, the peer's gRPC method with op "state" for grpc(s) URLs.
// hc sends it; nil picks a client by the URL's scheme: http.DefaultClient
// for http, https and grpcs, one speaking cleartext HTTP/2 for grpc (a
// client given for a grpc:// peer must speak it too). Bound it with ctx.
func AskPeer(ctx context.Context, hc *http.Client, gid, mode string, p Peer) (PeerState, error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNoAnswer, p.Branch, err)
	}
	if hc == nil {
		hc = http.DefaultClient
		if u.Scheme == "grpc" {
			hc = h2cClient
		}
	}
	var st string
	switch u.Scheme {
	case "grpc", "grpcs":
		scheme := "http"
		if u.Scheme == "grpcs" {
			scheme = "https"
		}
		c := connect.NewClient[v1.BranchRequest, v1.BranchResponse](hc, scheme+"://"+u.Host+u.Path, connect.WithGRPC())
		resp, err := c.CallUnary(ctx, connect.NewRequest(&v1.BranchRequest{Gid: gid, BranchId: p.Branch, Op: string(OpState), Mode: mode}))
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNoAnswer, p.Branch, err)
		}
		st = resp.Header().Get(HeaderState)
	default:
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(nil))
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNoAnswer, p.Branch, err)
		}
		Branch{GID: gid, BranchID: p.Branch, Op: OpState, Mode: mode}.SetHeaders(req.Header)
		resp, err := hc.Do(req)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNoAnswer, p.Branch, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%w: %s: HTTP %d: %s", ErrNoAnswer, p.Branch, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		st = resp.Header.Get(HeaderState)
	}
	if !PeerState(st).Valid() {
		return "", fmt.Errorf("%w: %s: state %q", ErrNoAnswer, p.Branch, st)
	}
	return PeerState(st), nil
}
