package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// serve starts `concord serve` with args on a fresh data directory.
func serve(t *testing.T, args ...string) *proc.Server {
	t.Helper()
	return proc.Start(t, t.TempDir(), nil, args...)
}

// newGID returns a gid unique to this test run, starting with prefix.
func newGID(prefix string) string { return prefix + "-" + rand.Text()[:12] }

// wait waits for gid to settle (final or stuck) and fails the test if it
// does not within a minute.
func wait(t *testing.T, c *client.Client, gid string) *client.Transaction {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tx, err := c.Wait(ctx, gid)
	if err != nil {
		t.Fatalf("Wait(%s): %v", gid, err)
	}
	return tx
}

// wantStatus fails the test unless tx has the given status.
func wantStatus(t *testing.T, tx *client.Transaction, status string) {
	t.Helper()
	if tx.Status != status {
		t.Fatalf("%s: status %q (reason %q), want %q", tx.GID, tx.Status, tx.Reason, status)
	}
}

// branchOf returns tx's branch id, failing the test if there is none.
func branchOf(t *testing.T, tx *client.Transaction, id string) *client.BranchState {
	t.Helper()
	if b := tx.Branch(id); b != nil {
		return b
	}
	t.Fatalf("%s has no branch %q", tx.GID, id)
	return nil
}

// apiReply is the outcome of one raw Connect/JSON call.
type apiReply struct {
	status  int
	code    string // error code, for an error reply
	message string // error message, for an error reply
	body    []byte
}

// post makes a Connect unary call by hand, as curl would: POST a JSON
// body to /concord.v1.CoordinatorService/<method>. header holds extra
// "Key: Value" lines.
func post(t *testing.T, base, method, body string, header ...string) apiReply {
	t.Helper()
	return postType(t, base, method, "application/json", body, header...)
}

func postType(t *testing.T, base, method, contentType, body string, header ...string) apiReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/concord.v1.CoordinatorService/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for _, h := range header {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading reply: %v", method, err)
	}
	r := apiReply{status: resp.StatusCode, body: raw}
	if resp.StatusCode != http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		var e struct{ Code, Message string }
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("POST %s: HTTP %d with a body that is not a JSON error: %q", method, resp.StatusCode, raw)
		}
		r.code, r.message = e.Code, e.Message
	}
	return r
}

// decode unmarshals a successful reply's JSON into v.
func (r apiReply) decode(t *testing.T, v any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("HTTP %d %s: %s", r.status, r.code, r.message)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("reply %q: %v", r.body, err)
	}
}

// txReply is the JSON shape of a reply holding one transaction.
type txReply struct {
	Transaction struct {
		GID      string `json:"gid"`
		Status   string `json:"status"`
		Reason   string `json:"reason"`
		Deadline string `json:"deadline_unix_ms"` // int64 travels as a string
		Branches []struct {
			ID string `json:"id"`
		} `json:"branches"`
	} `json:"transaction"`
}

// cliResult is what one run of the concord command did.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs the real concord binary with args and no CONCORD_* settings
// from the environment.
func cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, proc.Binary(t), args...)
	cmd.Env = append(os.Environ(), "CONCORD_ADDR=", "CONCORD_TOKEN=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	if msg := proc.CheckOutput(r.stderr); msg != "" {
		t.Errorf("concord %s %s", strings.Join(args, " "), msg)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("concord %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// wantExit fails the test unless the command exited with code.
func (r cliResult) wantExit(t *testing.T, code int) cliResult {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}
