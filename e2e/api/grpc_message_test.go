package api

import (
	"context"
	"database/sql"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
)

// stockService is an ordinary grpc-go service, registered the way
// generated code does (a ServiceDesc), whose methods take a
// google.protobuf.StringValue (the SKU) and return google.protobuf.Empty:
// it knows nothing of Concord's BranchRequest. Its interceptor puts the
// branch in the context and applies a barrier on SQLite.
type stockService struct {
	addr string
	db   *sql.DB
	mu   sync.Mutex
	ops  []string // "Method op branch sku"
	lost map[string]bool
}

func (s *stockService) handle(method string) func(ctx context.Context, sku *wrapperspb.StringValue) (*emptypb.Empty, error) {
	return func(ctx context.Context, sku *wrapperspb.StringValue) (*emptypb.Empty, error) {
		b, ok := participant.FromContext(ctx)
		if !ok {
			return nil, status.Error(codes.InvalidArgument, "not a branch call")
		}
		tx, ok := participant.TxFromContext(ctx)
		if !ok {
			return nil, status.Error(codes.Internal, "no barrier transaction")
		}
		if method == "Reserve" && sku.GetValue() == "sku-none" {
			return nil, status.Error(codes.Aborted, "out of stock: "+sku.GetValue())
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO moves (gid, op, sku) VALUES (?, ?, ?)", b.GID, method, sku.GetValue()); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.ops = append(s.ops, method+" "+string(b.Op)+" "+b.BranchID+" "+sku.GetValue())
		s.mu.Unlock()
		return &emptypb.Empty{}, nil
	}
}

// loseFirstAnswer is an outer interceptor: for the SKU "sku-lost" it lets
// the first call run (and commit) and then answers UNAVAILABLE, as if the
// answer were lost, so the coordinator calls again.
func (s *stockService) loseFirstAnswer(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if sv, ok := req.(*wrapperspb.StringValue); ok && sv.GetValue() == "sku-lost" && err == nil {
		s.mu.Lock()
		first := !s.lost[info.FullMethod]
		s.lost[info.FullMethod] = true
		s.mu.Unlock()
		if first {
			return nil, status.Error(codes.Unavailable, "answer lost")
		}
	}
	return resp, err
}

func (s *stockService) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops)
}

func (s *stockService) moves(t *testing.T, gid string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(t.Context(), "SELECT count(*) FROM moves WHERE gid = ?", gid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func unaryMethod(name string, fn func(context.Context, *wrapperspb.StringValue) (*emptypb.Empty, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) { return fn(ctx, req.(*wrapperspb.StringValue)) }
		if icpt == nil {
			return h(ctx, in)
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/stock.Stock/" + name}, h)
	}}
}

func newStockService(t *testing.T) *stockService {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "stock.db")+"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	br, err := participant.NewBarrier(db, participant.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE moves (gid TEXT, op TEXT, sku TEXT)"); err != nil {
		t.Fatal(err)
	}
	s := &stockService{db: db, lost: map[string]bool{}}
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(s.loseFirstAnswer, participant.UnaryServerInterceptor(participant.WithBarrier(br))))
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "stock.Stock",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{unaryMethod("Reserve", s.handle("Reserve")), unaryMethod("Release", s.handle("Release"))},
	}, s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	s.addr = "grpc://" + ln.Addr().String()
	return s
}

// TestGRPCMessageParticipant: branches call an ordinary grpc-go service's
// own methods with their own request message (?message=base64);
// participant.UnaryServerInterceptor gives the method its branch and a
// barrier transaction; ABORTED is a no, a repeated delivery after a lost
// answer is "done" (the work committed once).
func TestGRPCMessageParticipant(t *testing.T) {
	t.Parallel()
	srv := serve(t)
	c := client.New(srv.URL)
	stock := newStockService(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	reserve, release := stock.addr+"/stock.Stock/Reserve?message=base64", stock.addr+"/stock.Stock/Release?message=base64"
	msg := func(sku string) string {
		p, err := client.GRPCMessage(wrapperspb.String(sku))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("a no compensates what ran", func(t *testing.T) {
		tx, err := c.NewSaga("").Add(reserve, release, msg("sku-1")).Add(reserve, release, msg("sku-none")).SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "aborted")
		if !strings.Contains(tx.Reason, "out of stock: sku-none") {
			t.Errorf("reason %q does not carry the participant's no", tx.Reason)
		}
		want := []string{"Reserve action 1 sku-1", "Release compensate 1 sku-1"}
		var got []string
		for _, op := range stock.got() {
			if strings.HasSuffix(op, "sku-1") || strings.HasSuffix(op, "sku-none") {
				got = append(got, op)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		if n := stock.moves(t, tx.GID); n != 2 {
			t.Errorf("%d rows committed, want 2 (reserve, release)", n)
		}
	})

	t.Run("a lost answer is retried and the barrier answers done", func(t *testing.T) {
		tx, err := c.NewSaga("").Add(reserve, release, msg("sku-lost")).
			WithOptions(client.Options{RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}).
			SubmitAndWait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, tx, "succeeded")
		b := tx.Branches[0]
		if len(b.Attempts) != 2 || b.Attempts[0].Outcome != "unknown" || b.Attempts[1].Outcome != "success" {
			t.Errorf("attempts %+v, want unknown then success", b.Attempts)
		}
		if n := stock.moves(t, tx.GID); n != 1 {
			t.Errorf("%d rows committed, want 1: the repeated delivery must not run again", n)
		}
	})

	t.Run("a payload that is not base64 is refused at submit", func(t *testing.T) {
		_, err := c.NewSaga("").Add(reserve, release, "not base64!").Submit(ctx)
		if err == nil || !strings.Contains(err.Error(), "base64") {
			t.Fatalf("submit: %v, want an invalid-argument error naming base64", err)
		}
	})
}
