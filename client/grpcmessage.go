package client

import (
	"encoding/base64"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// GRPCMessage encodes m as the payload of a branch that calls an ordinary
// gRPC method with its own request type: the branch URL is
// grpc://host:port/pkg.Service/Method?message=base64 (grpcs:// with TLS),
// and the payload is m's protobuf wire bytes in base64, which the
// coordinator decodes and sends as the request message. Every operation
// of the branch (action and compensation, try/confirm/cancel, prepare and
// commit) receives the same message; the participant tells them apart by
// the branch metadata (participant.UnaryServerInterceptor), or by using a
// different method for each.
func GRPCMessage(m proto.Message) (string, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("%w: gRPC message: %v", ErrInvalid, err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
