// Package dashboard tests the web dashboard in a real headless Chromium
// against a real `concord serve`, with real transactions and HTTP
// participants.
//
// Chromium must be at /usr/bin/chromium (Debian: apt-get install -y
// chromium; .ci/run installs it). Without it the test skips, except under
// CI=true, where it fails. `go test ./e2e/dashboard -artifacts` keeps the
// screenshot of the transaction page (its path is logged).
package dashboard

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

const chromium = "/usr/bin/chromium"

const token = "dash-secret"

// browser starts a headless Chromium with a fresh profile and returns a
// tab context bounded by timeout. Every JavaScript dialog (confirm) is
// accepted, as an operator would.
func browser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	_, err := os.Stat(chromium)
	testenv.Require(t, "Chromium at "+chromium+" (apt-get install -y chromium)", err)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancel)
	// Accept every dialog from another goroutine: the click that opens
	// one waits until it is closed.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text returns the text of the first element matching the CSS selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`document.querySelector(%q)?.textContent ?? "(no element)"`, sel))
}

// waitJS polls a JavaScript condition until it is true.
func waitJS(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !eval[bool](t, ctx, "!!("+cond+")") {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%s); page text:\n%s", what, cond, eval[string](t, ctx, `document.body.innerText`))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setFilter sets a filter control and fires its input or change event.
func setFilter(t *testing.T, ctx context.Context, id, value string) {
	t.Helper()
	eval[bool](t, ctx, fmt.Sprintf(`(() => { const e = document.getElementById(%q);
		if (e.type === "checkbox") e.checked = %q === "true"; else e.value = %q;
		e.dispatchEvent(new Event(e.tagName === "INPUT" && e.type !== "checkbox" ? "input" : "change")); return true })()`, id, value, value))
}

func TestDashboard(t *testing.T) {
	ctx := browser(t, 50*time.Second)

	var healthy atomic.Bool
	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/no/"):
			http.Error(w, "out of stock", http.StatusConflict)
		case strings.HasPrefix(r.URL.Path, "/down/"):
			http.Error(w, "database down", http.StatusInternalServerError)
		case strings.HasPrefix(r.URL.Path, "/flaky/") && !healthy.Load():
			http.Error(w, "database down", http.StatusInternalServerError)
		case strings.HasPrefix(r.URL.Path, "/doubt/") && r.Header.Get("Concord-Op") != "prepare":
			http.Error(w, "cannot reach the database", http.StatusServiceUnavailable)
		}
	}))
	defer participant.Close()
	p := func(path string) string { return participant.URL + path }

	srv := proc.Start(t, t.TempDir(), nil, "-token", token, "-log-level", "info")
	c := client.New(srv.URL, client.WithToken(token))
	tag := strings.ToLower(rand.Text()[:6])
	okGID, compGID, stuckGID := "ok-"+tag, "comp-"+tag, "stuck-"+tag

	tx, err := c.NewSaga(okGID).Add(p("/a/action"), p("/a/compensate"), "one").
		Add(p("/b/action"), p("/b/compensate"), "two").SubmitAndWait(t.Context())
	if err != nil || tx.Status != client.StatusSucceeded {
		t.Fatalf("saga %s: %v %v", okGID, tx.GetStatus(), err)
	}
	tx, err = c.NewSaga(compGID).Add(p("/a/action"), p("/a/compensate"), "one").
		Add(p("/no/action"), p("/no/compensate"), "two").SubmitAndWait(t.Context())
	if err != nil || tx.Status != client.StatusAborted {
		t.Fatalf("saga %s: %v %v", compGID, tx.GetStatus(), err)
	}
	tx, err = c.NewSaga(stuckGID).WithOptions(client.Options{MaxAttempts: 1}).
		Add(p("/a/action"), p("/flaky/compensate"), "one").
		Add(p("/no/action"), p("/no/compensate"), "two").SubmitAndWait(t.Context())
	if err != nil || tx.Status != client.StatusStuck {
		t.Fatalf("saga %s: %v %v", stuckGID, tx.GetStatus(), err)
	}

	// A saga whose first action keeps failing: it retries for a long time.
	retryGID := "retry-" + tag
	if _, err := c.NewSaga(retryGID).WithOptions(client.Options{MaxAttempts: 200, RetryInitial: 100 * time.Millisecond, RetryMax: 150 * time.Millisecond}).
		Add(p("/down/action"), p("/down/compensate"), "one").Submit(t.Context()); err != nil {
		t.Fatalf("saga %s: %v", retryGID, err)
	}

	row := func(gid string) string { return fmt.Sprintf(`document.querySelector('tr[data-gid=%q]')`, gid) }

	// Without the token, the page says so.
	run(t, ctx, "open the dashboard", chromedp.Navigate(srv.URL+"/ui/"))
	waitJS(t, ctx, "the unauthorized message", `document.getElementById("banner").innerText.includes("Not authorized")`)

	// A wrong token is refused the same way; the right one shows the list.
	run(t, ctx, "enter a wrong token", chromedp.SetValue(chromedp.CSS("#token"), "wrong"), chromedp.Click(chromedp.CSS("#token-form button")))
	waitJS(t, ctx, "the unauthorized message for a wrong token", `document.getElementById("banner").innerText.includes("token is missing or wrong")`)
	run(t, ctx, "enter the token", chromedp.SetValue(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#token-form button")))
	waitJS(t, ctx, "the three transactions in the list", row(okGID)+` && `+row(compGID)+` && `+row(stuckGID))
	if b := text(t, ctx, "#banner"); b != "" {
		t.Errorf("banner %q with the right token", b)
	}
	if s := text(t, ctx, fmt.Sprintf(`tr[data-gid=%q] .status`, compGID)); s != "aborted" {
		t.Errorf("%s listed as %q", compGID, s)
	}
	waitJS(t, ctx, "live counts", `document.querySelector('#counts [data-status="succeeded"] b')?.innerText === "1" &&
		document.querySelector('#counts [data-status="stuck"] b')?.innerText === "1"`)

	// Filters: status aborted, then stuck only, then a gid prefix.
	setFilter(t, ctx, "f-status", "aborted")
	waitJS(t, ctx, "only the aborted saga", row(compGID)+` && !`+row(okGID)+` && !`+row(stuckGID))
	setFilter(t, ctx, "f-status", "")
	setFilter(t, ctx, "f-stuck", "true")
	waitJS(t, ctx, "only the stuck saga", row(stuckGID)+` && !`+row(okGID)+` && !`+row(compGID))
	setFilter(t, ctx, "f-stuck", "false")
	setFilter(t, ctx, "f-prefix", "ok-"+tag)
	waitJS(t, ctx, "only the prefix match", row(okGID)+` && !`+row(compGID))
	setFilter(t, ctx, "f-prefix", "bad prefix!")
	waitJS(t, ctx, "the bad-prefix message", `document.getElementById("banner").innerText.includes("gid prefix")`)
	setFilter(t, ctx, "f-prefix", "")

	// The compensated saga's page draws its timeline.
	run(t, ctx, "open "+compGID, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-gid=%q] a`, compGID))))
	waitJS(t, ctx, "the timeline of "+compGID, `!!document.querySelector('#timeline svg[data-status="aborted"]')`)
	for _, sel := range []string{
		`g.head[data-lifeline="coordinator"]`, `g.head[data-lifeline="1"]`, `g.head[data-lifeline="2"]`,
		`g.msg[data-branch="1"][data-op="action"][data-outcome="success"]`,
		`g.msg[data-branch="2"][data-op="action"][data-outcome="rejected"]`,
		`g.msg[data-branch="1"][data-op="compensate"][data-outcome="success"]`,
		`g.marker.accept`, `g.marker.decision`, `g.marker.final.aborted`,
	} {
		if n := eval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('#timeline svg %s').length`, sel)); n != 1 {
			t.Errorf("timeline: %d elements %s, want 1", n, sel)
		}
	}
	order := eval[[]string](t, ctx, `[...document.querySelectorAll('#timeline g.msg')].map(g => g.dataset.branch + "/" + g.dataset.op)`)
	if got := strings.Join(order, " "); got != "1/action 2/action 1/compensate" {
		t.Errorf("timeline order %q", got)
	}
	if s := text(t, ctx, "#timeline g.msg[data-outcome=rejected] text.err"); !strings.Contains(s, "out of stock") {
		t.Errorf("rejection reason %q not drawn", s)
	}
	if s := text(t, ctx, "#timeline g.marker.decision text:not(.time)"); !strings.Contains(s, "roll back") {
		t.Errorf("decision marker %q", s)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.ArtifactDir(), "transaction-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the transaction page: %s", shot)

	// A 2PC branch that voted yes and cannot get its commit through is
	// shown in doubt; a message's destinations show their delivery state.
	doubtGID, msgGID := "doubt-"+tag, "msg-"+tag
	if _, err := c.NewTwoPC(doubtGID).AddBranch("bank", p("/doubt/"), "x").Submit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if tx, err := c.NewMessage(msgGID).Payload("hello").ToBranch("mail", p("/m/"), nil).SendAndWait(t.Context()); err != nil || tx.Status != client.StatusSucceeded {
		t.Fatalf("message %s: %v %v", msgGID, tx.GetStatus(), err)
	}
	run(t, ctx, "open "+doubtGID, chromedp.Navigate(srv.URL+"/ui/#/tx/"+doubtGID))
	waitJS(t, ctx, "the in-doubt branch", `(document.querySelector('tr[data-branch="bank"] td[data-state]')||{innerText:""}).innerText.includes("in doubt")`)
	run(t, ctx, "open "+msgGID, chromedp.Navigate(srv.URL+"/ui/#/tx/"+msgGID))
	waitJS(t, ctx, "the delivered destination", `(document.querySelector('tr[data-branch="mail"] td[data-state]')||{innerText:""}).innerText === "delivered"`)

	// Every mode and status can be filtered on.
	if opts := eval[string](t, ctx, `[...document.querySelectorAll('#f-mode option, #f-status option')].map(o => o.value).join(" ")`); !strings.Contains(opts, "3pc") || !strings.Contains(opts, "precommitting") {
		t.Errorf("filter options %q lack 3pc or precommitting", opts)
	}

	// The retrying saga: its failed calls are drawn once, collapsed, and
	// the branch says when it is called next and how many calls are left.
	testenv.Eventually(t, 20*time.Second, "five failed calls of "+retryGID, func() bool {
		tx, err := c.Get(t.Context(), retryGID)
		return err == nil && len(tx.Branches) == 1 && len(tx.Branches[0].Attempts) >= 5
	})
	run(t, ctx, "open "+retryGID, chromedp.Navigate(srv.URL+"/ui/#/tx/"+retryGID))
	waitJS(t, ctx, "the retry schedule of branch 1", `(document.querySelector('tr[data-branch="1"] td[data-retry="action"]')||{innerText:""}).innerText.includes("calls left before it is given up")`)
	waitJS(t, ctx, "the collapsed failed calls", `document.querySelectorAll('#timeline g.msg[data-branch="1"][data-op="action"][data-outcome="unknown"]').length === 1 &&
		document.querySelector('#timeline g.msg[data-branch="1"][data-op="action"][data-outcome="unknown"] text.op').textContent.includes("×")`)
	if _, err := c.Abort(t.Context(), retryGID, "test over"); err != nil {
		t.Errorf("abort %s: %v", retryGID, err)
	}

	// Unknown gid.
	run(t, ctx, "open an unknown gid", chromedp.Navigate(srv.URL+"/ui/#/tx/nope-"+tag))
	waitJS(t, ctx, "the not-found message", `document.getElementById("banner").innerText.includes('No transaction with gid "nope-`+tag+`"')`)

	// The stuck saga: force abort is refused (it decided to compensate
	// already), then the participant recovers and Retry now finishes it.
	run(t, ctx, "open "+stuckGID, chromedp.Navigate(srv.URL+"/ui/#/tx/"+stuckGID))
	waitJS(t, ctx, "the stuck timeline", `!!document.querySelector('#timeline svg[data-status="stuck"] g.marker.stuck')`)
	run(t, ctx, "force abort", chromedp.Click(chromedp.CSS("#btn-abort")))
	waitJS(t, ctx, "the failed-precondition message", `document.getElementById("action-msg").innerText.includes("Not allowed in this state")`)
	healthy.Store(true)
	run(t, ctx, "retry now", chromedp.Click(chromedp.CSS("#btn-retry")))
	waitJS(t, ctx, "the retried saga to finish", `!!document.querySelector('#timeline svg[data-status="aborted"]')`)
	if n := eval[int](t, ctx, `document.querySelectorAll('#timeline g.msg[data-branch="1"][data-op="compensate"]').length`); n != 2 {
		t.Errorf("%d compensate calls drawn for branch 1, want 2 (the failed one and the retried one)", n)
	}
	if tx, err := c.Get(t.Context(), stuckGID); err != nil || tx.Status != client.StatusAborted {
		t.Errorf("after retry from the page: %v %v", tx.GetStatus(), err)
	}
	// Each operator action left an audit line.
	testenv.Eventually(t, 10*time.Second, "audit lines", func() bool {
		log := srv.Stderr()
		return strings.Contains(log, "AUDIT operator abort") && strings.Contains(log, "AUDIT operator retry") &&
			strings.Count(log, "gid="+stuckGID) >= 2
	})
}
