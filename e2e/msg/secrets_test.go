package msg

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/daemon"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// TestBrokerPasswordsNeverShown: a message to a Redis that needs a
// password is delivered (the record keeps the password), and neither that
// password, nor the one of an unreachable RabbitMQ destination, nor the
// alert webhook's password and token appear in any API answer
// (GetTransaction, ListTransactions, ListSubscriptions: what the
// dashboard and `concord tx` show) or in any line the real binary logs,
// at debug level, while the unreachable branch fails, the message gets
// stuck and the webhook (unreachable too) fails.
func TestBrokerPasswordsNeverShown(t *testing.T) {
	t.Parallel()
	const redisPass, amqpPass, hookPass, hookToken = "RedisPw-7f3a91", "AmqpPw-c0de55", "HookPw-91c2aa", "HookTok-55e1bb"
	secrets := []string{redisPass, amqpPass, hookPass, hookToken}
	rd := daemon.RedisAuth(t, redisPass)
	dead := deadAddr(t)
	name := "secret-" + newGID("s")
	redisURL := "redis://:" + redisPass + "@" + rd.Addr + "/0?stream=" + name
	amqpURL := "amqp://guest:" + amqpPass + "@" + dead + "/?exchange=x"
	hook := "http://alert:" + hookPass + "@" + dead + "/hook?token=" + hookToken

	srv := proc.Start(t, t.TempDir(), nil, "-log-level", "debug", "-alert-webhook", hook)
	gid := newGID("secret")
	call := func(method, body string) string {
		t.Helper()
		resp, err := http.Post(srv.URL+"/concord.v1.CoordinatorService/"+method, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s", method, resp.StatusCode, b)
		}
		return string(b)
	}
	call("Subscribe", fmt.Sprintf(`{"topic":"orders","subscriber":"audit","url":%q}`, redisURL))
	call("SendMessage", fmt.Sprintf(`{"gid":%q,"payload":"{}","destinations":[{"id":"redis","url":%q},{"id":"rabbit","url":%q}],
		"options":{"max_attempts":2,"max_total_attempts":4,"retry_initial_ms":20,"retry_max_ms":50}}`, gid, redisURL, amqpURL))

	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr, Password: redisPass})
	defer rdb.Close()
	testenv.Eventually(t, 30*time.Second, "the message in the password-protected Redis", func() bool {
		n, err := rdb.XLen(context.Background(), name).Result()
		return err == nil && n == 1
	})
	testenv.Eventually(t, 30*time.Second, "the message stuck and the webhook failed", func() bool {
		return strings.Contains(call("GetTransaction", fmt.Sprintf(`{"gid":%q}`, gid)), `"stuck"`) &&
			strings.Contains(srv.Stderr(), "alert webhook failed")
	})

	answers := map[string]string{
		"GetTransaction":    call("GetTransaction", fmt.Sprintf(`{"gid":%q}`, gid)),
		"ListTransactions":  call("ListTransactions", `{}`),
		"ListSubscriptions": call("ListSubscriptions", `{}`),
	}
	if !strings.Contains(answers["GetTransaction"], "redis://:xxxxx@"+rd.Addr) || !strings.Contains(answers["GetTransaction"], "amqp://guest:xxxxx@") {
		t.Errorf("GetTransaction does not show the redacted URLs:\n%s", answers["GetTransaction"])
	}
	if !strings.Contains(answers["ListSubscriptions"], "redis://:xxxxx@") {
		t.Errorf("ListSubscriptions does not show the redacted URL:\n%s", answers["ListSubscriptions"])
	}
	srv.Stop()
	for _, s := range secrets {
		for what, body := range answers {
			if strings.Contains(body, s) {
				t.Errorf("%s shows %s:\n%s", what, s, body)
			}
		}
		for _, line := range strings.Split(srv.Stderr(), "\n") {
			if strings.Contains(line, s) {
				t.Errorf("the log shows %s: %s", s, line)
			}
		}
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
