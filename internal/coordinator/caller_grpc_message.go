package coordinator

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/participant"
)

// A branch URL grpc://host:port/pkg.Service/Method?message=base64 calls an
// ordinary gRPC method with its own request type: the branch payload is
// the request message's wire bytes in base64 (the API's payload is text),
// decoded and sent as the request body; the response message is read and
// discarded. The branch identity travels as metadata concord-gid,
// concord-branch, concord-op, concord-mode (and concord-peers), which
// participant.UnaryServerInterceptor reads. Outcomes: OK is success (with
// the response header concord-vote: read-only on a prepare, a read-only
// vote); ABORTED is rejected; ALREADY_EXISTS with the metadata
// concord-outcome: done (what the interceptor's barrier answers to a
// repeated or null operation) is success; anything else is unknown.
const messageQuery = "message=base64"

// isMessageURL reports whether a gRPC branch URL carries the method's own
// request message.
func isMessageURL(raw string) bool { return strings.HasSuffix(raw, "?"+messageQuery) }

// wireMessage is a message already in protobuf wire form.
type wireMessage struct{ b []byte }

// wireCodec sends wireMessage bytes as they are: the coordinator never
// needs the participant's message types.
type wireCodec struct{}

func (wireCodec) Name() string { return "proto" }

func (wireCodec) Marshal(m any) ([]byte, error) {
	w, ok := m.(*wireMessage)
	if !ok {
		return nil, fmt.Errorf("coordinator: wire codec: %T", m)
	}
	return w.b, nil
}

func (wireCodec) Unmarshal(data []byte, m any) error {
	w, ok := m.(*wireMessage)
	if !ok {
		return fmt.Errorf("coordinator: wire codec: %T", m)
	}
	w.b = append(w.b[:0], data...)
	return nil
}

// messageClient returns the (cached) client for a ?message=base64 URL.
func (g *GRPCCaller) messageClient(raw string, d *credEntry) (*connect.Client[wireMessage, wireMessage], error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.messageClients[raw]; ok {
		return c, nil
	}
	hc, target, err := g.target(raw, d)
	if err != nil {
		return nil, err
	}
	c := connect.NewClient[wireMessage, wireMessage](hc, target, connect.WithGRPC(), connect.WithCodec(wireCodec{}))
	if len(g.messageClients) < 10000 {
		g.messageClients[raw] = c
	}
	return c, nil
}

// callMessage performs a branch call on an ordinary gRPC method.
func (g *GRPCCaller) callMessage(ctx context.Context, gid string, mode protocol.Mode, c protocol.Call, d *credEntry) (protocol.Outcome, string) {
	body, err := base64.StdEncoding.DecodeString(string(c.Payload))
	if err != nil {
		// Checked at submit; nothing was sent.
		return protocol.OutcomeUnknown, "payload is not base64: " + err.Error()
	}
	cl, err := g.messageClient(c.URL, d)
	if err != nil {
		return protocol.OutcomeUnknown, err.Error()
	}
	req := connect.NewRequest(&wireMessage{b: body})
	d.apply(req.Header())
	participant.Branch{GID: gid, BranchID: c.Branch, Op: participant.Op(c.Op), Mode: string(mode)}.SetHeaders(req.Header())
	if p := peersHeader(c); p != "" {
		req.Header().Set(participant.HeaderPeers, p)
	}
	if g.Decorate != nil {
		g.Decorate(ctx, req.Header())
	}
	resp, err := cl.CallUnary(ctx, req)
	if err != nil {
		var ce *connect.Error
		if errors.As(err, &ce) {
			switch {
			case ce.Code() == connect.CodeAborted:
				return protocol.OutcomeRejected, ce.Message()
			case ce.Code() == connect.CodeAlreadyExists && ce.Meta().Get(participant.HeaderOutcome) == "done":
				return protocol.OutcomeSuccess, ""
			}
		}
		return protocol.OutcomeUnknown, trimReason(err.Error())
	}
	if c.Op == protocol.OpPrepare && resp.Header().Get(participant.HeaderVote) == "read-only" {
		return protocol.OutcomeReadOnly, ""
	}
	return protocol.OutcomeSuccess, ""
}
