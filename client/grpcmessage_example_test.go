package client_test

import (
	"fmt"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/concordtm/concord/client"
)

// A branch that calls an existing gRPC method, stock.Stock/Reserve, whose
// request is (here) a google.protobuf.StringValue: the URL ends in
// ?message=base64 and the payload is the message, encoded by GRPCMessage.
func ExampleGRPCMessage() {
	p, err := client.GRPCMessage(wrapperspb.String("sku-1"))
	if err != nil {
		panic(err)
	}
	saga := client.New("http://127.0.0.1:7070").NewSaga("").
		Add("grpc://stock:9090/stock.Stock/Reserve?message=base64", "grpc://stock:9090/stock.Stock/Release?message=base64", p)
	_ = saga // saga.SubmitAndWait(ctx) runs it
	fmt.Println(p)
	// Output: CgVza3UtMQ==
}
