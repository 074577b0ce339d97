package participant_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/concordtm/concord/participant"
)

// An existing net/http handler (mounted on chi, gin or echo the same way)
// learns which branch operation a call is from the context. Add
// participant.WithBarrier(br) to run it inside the barrier's transaction
// (participant.TxFromContext).
func ExampleMiddleware() {
	reserve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := participant.FromContext(r.Context()); ok {
			fmt.Println("branch", b.BranchID, "op", b.Op, "of", b.GID)
		}
		participant.WriteResult(w, nil)
	})
	srv := httptest.NewServer(participant.Middleware()(reserve))
	defer srv.Close()

	// What the coordinator sends:
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/reserve", strings.NewReader(`{"sku":"sku-1"}`))
	participant.Branch{GID: "order-1", BranchID: "1", Op: participant.OpAction, Mode: "saga"}.SetHeaders(req.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// branch 1 op action of order-1
	// 200 OK
}

// An existing grpc-go service installs the interceptor,
//
//	grpc.NewServer(grpc.UnaryInterceptor(participant.UnaryServerInterceptor(participant.WithBarrier(br))))
//
// and its methods find the branch in their context. Here the interceptor
// is called as grpc-go would call it for a request with the coordinator's
// metadata.
func ExampleUnaryServerInterceptor() {
	icpt := participant.UnaryServerInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		"concord-gid", "order-1", "concord-branch", "1", "concord-op", "compensate", "concord-mode", "saga"))
	release := func(ctx context.Context, req any) (any, error) {
		b, _ := participant.FromContext(ctx)
		fmt.Println("branch", b.BranchID, "op", b.Op, "of", b.GID, "request", req)
		return "ok", nil
	}
	resp, err := icpt(ctx, "sku-1", &grpc.UnaryServerInfo{FullMethod: "/stock.Stock/Release"}, release)
	fmt.Println(resp, err)
	// Output:
	// branch 1 op compensate of order-1 request sku-1
	// ok <nil>
}
