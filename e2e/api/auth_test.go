package api

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/concordtm/concord/client"
	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// TestAuth runs a coordinator with -token and checks every way in: raw
// HTTP, the SDK over Connect and gRPC, grpc-go, and the CLI.
func TestAuth(t *testing.T) {
	t.Parallel()
	srv := serve(t, "-token", "secret")

	t.Run("raw HTTP", func(t *testing.T) {
		for _, hdr := range [][]string{nil, {"Authorization: Bearer wrong"}, {"Authorization: secret"}, {"Authorization: Bearer secret2"}, {"Authorization: Basic c2VjcmV0"}} {
			r := post(t, srv.URL, "NewGID", `{}`, hdr...)
			if r.status != 401 || r.code != "unauthenticated" || !strings.Contains(r.message, "token") {
				t.Errorf("with %q: HTTP %d %s %q, want 401 unauthenticated", hdr, r.status, r.code, r.message)
			}
		}
		r := post(t, srv.URL, "NewGID", `{}`, "Authorization: Bearer secret")
		if r.status != 200 {
			t.Errorf("with the token: HTTP %d %s %q", r.status, r.code, r.message)
		}
		checkAlive(t, srv.URL) // health checks need no token
	})

	t.Run("SDK", func(t *testing.T) {
		for name, c := range map[string]*client.Client{
			"connect":     client.New(srv.URL),
			"grpc":        client.New(srv.URL, client.WithGRPC()),
			"wrong token": client.New(srv.URL, client.WithToken("guess")),
		} {
			if _, err := c.NewGID(t.Context()); !errors.Is(err, client.ErrUnauthorized) {
				t.Errorf("%s: %v, want ErrUnauthorized", name, err)
			}
		}
		for name, c := range map[string]*client.Client{
			"connect": client.New(srv.URL, client.WithToken("secret")),
			"grpc":    client.New(srv.URL, client.WithToken("secret"), client.WithGRPC()),
		} {
			p := newRecorder(t)
			tx, err := c.NewSaga(newGID("auth-"+name)).Add(p.url("/a"), p.url("/a/undo"), nil).SubmitAndWait(t.Context())
			if err != nil {
				t.Fatalf("%s with the token: %v", name, err)
			}
			wantStatus(t, tx, client.StatusSucceeded)
			if h := p.only(t, "/a").Header.Get("Authorization"); h != "" {
				t.Errorf("the coordinator's token leaked to a participant: Authorization %q", h)
			}
		}
	})

	t.Run("grpc-go", func(t *testing.T) {
		conn := dialGRPC(t, srv.URL)
		var resp v1.NewGIDResponse
		err := conn.Invoke(t.Context(), method+"NewGID", &v1.NewGIDRequest{}, &resp)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("without the token: %v, want Unauthenticated", err)
		}
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer secret")
		if err := conn.Invoke(ctx, method+"NewGID", &v1.NewGIDRequest{}, &resp); err != nil || resp.Gid == "" {
			t.Errorf("with the token: %q, %v", resp.Gid, err)
		}
	})

	t.Run("CLI", func(t *testing.T) {
		gid := newGID("auth-cli")
		c := client.New(srv.URL, client.WithToken("secret"))
		p := newRecorder(t)
		if _, err := c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), nil).SubmitAndWait(t.Context()); err != nil {
			t.Fatal(err)
		}
		out := cli(t, "tx", "list", "-addr", srv.URL, "-token", "secret").wantExit(t, 0)
		if !strings.Contains(out.stdout, gid) {
			t.Errorf("tx list with -token:\n%s", out.stdout)
		}
		cli(t, "tx", "show", "-addr", srv.URL, "-token", "secret", gid).wantExit(t, 0)
		out = cli(t, "tx", "list", "-addr", srv.URL).wantExit(t, 1)
		if !strings.Contains(out.stderr, "unauthenticated") {
			t.Errorf("tx list without -token; stderr:\n%s", out.stderr)
		}
		out = cli(t, "tx", "show", "-addr", srv.URL, "-token", "nope", gid).wantExit(t, 1)
		if !strings.Contains(out.stderr, "unauthenticated") {
			t.Errorf("tx show with a wrong token; stderr:\n%s", out.stderr)
		}
	})
}
