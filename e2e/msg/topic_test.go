package msg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// concordCLI runs the real binary with args against srv and returns its
// output and exit code.
func concordCLI(t *testing.T, srv *proc.Server, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(proc.Binary(t), args...)
	cmd.Env = append(cmd.Environ(), "CONCORD_ADDR="+srv.URL)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("concord %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func mustCLI(t *testing.T, srv *proc.Server, args ...string) string {
	t.Helper()
	out, errs, code := concordCLI(t, srv, args...)
	if code != 0 {
		t.Fatalf("concord %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// TestTopicFanOut: one message to a topic with three subscribers (two
// HTTP consumers deduplicating on MariaDB, one of them failing three
// times, and a NATS JetStream subject) reaches each exactly once; each
// subscriber is a destination of its own, retried on its own, and `concord
// tx show` lists every subscriber's attempts. Subscriptions are managed
// with `concord sub`, and removing one changes later messages only.
func TestTopicFanOut(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t, "tp")
	nc, err := nats.Connect(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".orders"}})
	if err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(context.Background(), name)
	natsURL := testenv.NATSURL(t) + "?subject=" + name + ".orders&stream=" + name

	billing := newConsumer(t, "billing", 0)
	stock := newConsumer(t, "stock", 3)
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)

	for _, sub := range [][2]string{{"billing", billing.srv.URL + "/orders"}, {"stock", stock.srv.URL + "/orders"}, {"audit", natsURL}} {
		if out := mustCLI(t, srv, "sub", "add", "orders", sub[0], sub[1]); !strings.HasPrefix(out, "created: orders/"+sub[0]) {
			t.Fatalf("sub add %s: %q", sub[0], out)
		}
	}
	// Idempotent: the same subscription again changes nothing.
	if out := mustCLI(t, srv, "sub", "add", "orders", "billing", billing.srv.URL+"/orders"); !strings.HasPrefix(out, "updated: ") {
		t.Fatalf("repeated sub add: %q", out)
	}
	list := mustCLI(t, srv, "sub", "list", "orders")
	for _, s := range []string{"audit", "billing", "stock"} {
		if !strings.Contains(list, "orders  "+s) {
			t.Fatalf("sub list lacks %s:\n%s", s, list)
		}
	}

	retry := client.Options{RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	m := c.NewMessage("").ToTopic("orders").Payload(`{"order":7}`).WithOptions(retry)
	tx, err := m.SendAndWait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want(t, tx, "succeeded")
	var ids []string
	for _, b := range tx.Branches {
		ids = append(ids, b.ID)
	}
	if !slices.Equal(ids, []string{"orders:audit", "orders:billing", "orders:stock"}) {
		t.Fatalf("destinations %q", ids)
	}
	gid := m.GID()
	if billing.received(t, gid) != 1 || billing.attempts(gid) != 1 {
		t.Errorf("billing: received %d after %d attempts, want 1 after 1", billing.received(t, gid), billing.attempts(gid))
	}
	if stock.received(t, gid) != 1 || stock.attempts(gid) != 4 {
		t.Errorf("stock: received %d after %d attempts, want 1 after 4", stock.received(t, gid), stock.attempts(gid))
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("nats stream holds %d messages, want 1", info.State.Msgs)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	nm, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if nm.Headers().Get("Concord-Gid") != gid || nm.Headers().Get("Concord-Branch") != "orders:audit" || string(nm.Data()) != `{"order":7}` {
		t.Errorf("nats: gid %q branch %q body %q", nm.Headers().Get("Concord-Gid"), nm.Headers().Get("Concord-Branch"), nm.Data())
	}

	// concord tx show: every subscriber with its delivery attempts.
	show := mustCLI(t, srv, "tx", "show", gid)
	for _, s := range []string{"branch orders:audit  deliver=done", "branch orders:billing  deliver=done", "branch orders:stock  deliver=done"} {
		if !strings.Contains(show, s) {
			t.Errorf("tx show lacks %q:\n%s", s, show)
		}
	}
	stockPart := show[strings.Index(show, "branch orders:stock"):]
	attempts := regexp.MustCompile(`deliver\s+#(\d+)\s+(\w+)`).FindAllStringSubmatch(stockPart, -1)
	if len(attempts) != 4 || attempts[3][1] != "4" || attempts[3][2] != "success" || attempts[0][2] != "unknown" {
		t.Errorf("tx show: orders:stock attempts %q, want 3 unknown then #4 success:\n%s", attempts, show)
	}

	// Unsubscribe: later messages no longer go to stock.
	if out := mustCLI(t, srv, "sub", "rm", "orders", "stock"); !strings.HasPrefix(out, "removed: orders/stock") {
		t.Fatalf("sub rm: %q", out)
	}
	m2 := c.NewMessage("").ToTopic("orders").Payload(`{"order":8}`).WithOptions(retry)
	tx2, err := m2.SendAndWait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want(t, tx2, "succeeded")
	if len(tx2.Branches) != 2 || stock.attempts(m2.GID()) != 0 || billing.received(t, m2.GID()) != 1 {
		t.Fatalf("after sub rm: %d destinations, stock called %d times, billing received %d", len(tx2.Branches), stock.attempts(m2.GID()), billing.received(t, m2.GID()))
	}
}

// apiCall POSTs a JSON request to the real server and returns the status
// and the decoded error body.
func apiCall(t *testing.T, srv *proc.Server, method, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/concord.v1.CoordinatorService/"+method, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %d %q: %v", method, resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

// TestTopicBadInput: bad input is a 4xx naming the problem, and changes
// neither the subscriptions nor the transactions.
func TestTopicBadInput(t *testing.T) {
	srv := proc.Start(t, t.TempDir(), nil)
	c := client.New(srv.URL)
	ctx := t.Context()
	if _, _, err := c.Subscribe(ctx, "orders", "billing", "http://127.0.0.1:9/orders"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, body string
		status       int
		code, names  string
	}{
		{"Subscribe", `{"topic":"bad/name","subscriber":"x","url":"http://127.0.0.1:9/x"}`, 400, "invalid_argument", `"bad/name"`},
		{"Subscribe", `{"topic":"orders","subscriber":"x:y","url":"http://127.0.0.1:9/x"}`, 400, "invalid_argument", `"x:y"`},
		{"Subscribe", `{"topic":"` + strings.Repeat("t", 64) + `","subscriber":"x","url":"http://127.0.0.1:9/x"}`, 400, "invalid_argument", "at most 63"},
		{"Subscribe", `{"topic":"orders","subscriber":"x","url":"ftp://127.0.0.1/x"}`, 400, "invalid_argument", `"ftp://127.0.0.1/x"`},
		{"Subscribe", `{"topic":"orders","subscriber":"x","url":"nats://127.0.0.1:4222"}`, 400, "invalid_argument", "subject"},
		{"Subscribe", `{"topic":"orders","subscriber":"x"}`, 400, "invalid_argument", "URL is required"},
		{"Unsubscribe", `{"topic":"orders","subscriber":"nobody"}`, 404, "not_found", `"nobody"`},
		{"Unsubscribe", `{"topic":"nothing","subscriber":"billing"}`, 404, "not_found", `"nothing"`},
		{"ListSubscriptions", `{"topic":"bad topic"}`, 400, "invalid_argument", `"bad topic"`},
		{"SendMessage", `{"payload":"x","topics":["unknown"]}`, 400, "failed_precondition", `topic "unknown"`},
		{"SendMessage", `{"payload":"x","topics":["orders","unknown"]}`, 400, "failed_precondition", `topic "unknown"`},
		{"SendMessage", `{"payload":"x","topics":["bad/name"]}`, 400, "invalid_argument", `"bad/name"`},
		{"SendMessage", `{"payload":"x","topics":["orders","orders"]}`, 400, "invalid_argument", "named twice"},
		{"SendMessage", `{"payload":"x","topics":["orders"],"destinations":[{"id":"orders:billing","url":"http://127.0.0.1:9/y"}]}`, 400, "invalid_argument", `"orders:billing"`},
		{"SendMessage", `{"payload":"x"}`, 400, "invalid_argument", "destination or topic"},
		{"PrepareMessage", `{"payload":"x","topics":["unknown"],"check_url":"http://127.0.0.1:9/check"}`, 400, "failed_precondition", `topic "unknown"`},
	} {
		status, out := apiCall(t, srv, tc.method, tc.body)
		msg, _ := out["message"].(string)
		if status != tc.status || out["code"] != tc.code || !strings.Contains(msg, tc.names) {
			t.Errorf("%s %s: %d %v; want %d %s naming %s", tc.method, tc.body, status, out, tc.status, tc.code, tc.names)
		}
	}
	subs, err := c.Subscriptions(ctx, "")
	if err != nil || len(subs) != 1 || subs[0].Subscriber != "billing" || subs[0].Url != "http://127.0.0.1:9/orders" {
		t.Fatalf("subscriptions after bad input: %v, %v", subs, err)
	}
	txs, _, err := c.List(ctx, client.ListOptions{})
	if err != nil || len(txs) != 0 {
		t.Fatalf("bad input created %d transactions (%v)", len(txs), err)
	}

	// The CLI: a refused argument exits 2, an unknown subscription 1; both
	// name the problem.
	for _, tc := range []struct {
		args  []string
		code  int
		names string
	}{
		{[]string{"sub", "add", "bad/name", "x", "http://127.0.0.1:9/x"}, 2, `"bad/name"`},
		{[]string{"sub", "add", "orders"}, 2, "want TOPIC SUBSCRIBER URL"},
		{[]string{"sub", "rm", "orders", "nobody"}, 1, `"nobody"`},
		{[]string{"sub", "frob"}, 2, `unknown subcommand "frob"`},
	} {
		_, errs, code := concordCLI(t, srv, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.names) {
			t.Errorf("concord %s: exit %d, %q; want exit %d naming %s", strings.Join(tc.args, " "), code, errs, tc.code, tc.names)
		}
	}
}

// TestSubscriptionsSurviveKill: subscriptions on the embedded store are
// durable when Subscribe returns; kill -9 loses none.
func TestSubscriptionsSurviveKill(t *testing.T) {
	dir := t.TempDir()
	srv := proc.Start(t, dir, nil)
	c := client.New(srv.URL)
	for _, s := range []string{"a", "b", "c"} {
		if _, _, err := c.Subscribe(t.Context(), "orders", s, "http://127.0.0.1:9/"+s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Unsubscribe(t.Context(), "orders", "b"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv = restartOn(t, dir, strings.TrimPrefix(srv.URL, "http://"))
	subs, err := client.New(srv.URL).Subscriptions(t.Context(), "orders")
	if err != nil || len(subs) != 2 || subs[0].Subscriber != "a" || subs[1].Subscriber != "c" {
		t.Fatalf("after kill -9 and restart: %v, %v; want a and c", subs, err)
	}
}
