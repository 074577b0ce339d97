package shared

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/cli"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
)

// callKey names one operation of one branch.
type callKey struct{ gid, branch, op string }

func (k callKey) String() string { return k.gid + "/" + k.branch + "/" + k.op }

// A teller is the fault tests' saga participant: action and compensation
// go through the barrier on PostgreSQL and write a ledger row each, so the
// ledger holds the operations that took effect, once each at most. It also
// counts every call it received, and can hold actions, answer them after
// its listener died, or hang; its listener can be killed and revived on
// the same address.
type teller struct {
	t      *testing.T
	db     *sql.DB
	br     *participant.Barrier
	ledger string
	addr   string // host:port, kept across restarts
	url    string

	mu       sync.Mutex
	calls    map[callKey]int
	reject   map[string]bool       // gid -> branch "b" refuses its action
	holding  func(gid string) bool // nil: hold nothing
	gate     chan struct{}         // held actions wait until it is closed
	arrived  chan callKey          // each held action announces itself
	inHold   sync.WaitGroup        // held actions not yet returned
	srv      *http.Server
	serving  chan struct{}          // closed when srv stops serving
	dying    bool                   // held actions end without answering
	applyDie func(key callKey) bool // which dying actions apply their effect first
}

func newTeller(t *testing.T) *teller {
	db := testenv.Postgres(t)
	db.SetMaxOpenConns(16) // PostgreSQL is shared with the other tests
	db.SetMaxIdleConns(16)
	table := testenv.UniqueName(t, "shteller")
	br, err := participant.NewBarrier(db, participant.Postgres, participant.WithBarrierTable(table))
	if err != nil {
		t.Fatal(err)
	}
	if err := br.CreateTable(t.Context()); err != nil {
		t.Fatal(err)
	}
	ledger := table + "_ledger"
	if _, err := db.Exec("CREATE TABLE " + ledger + " (gid TEXT NOT NULL, branch TEXT NOT NULL, op TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table + ", " + ledger) })
	k := &teller{t: t, db: db, br: br, ledger: ledger, calls: map[callKey]int{}, reject: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	k.url = "http://" + k.addr
	k.serve(ln)
	t.Cleanup(func() {
		k.mu.Lock()
		srv := k.srv
		if k.gate != nil {
			close(k.gate)
			k.gate = nil
		}
		k.mu.Unlock()
		if srv != nil {
			srv.Close()
		}
	})
	return k
}

func (k *teller) serve(ln net.Listener) {
	srv := &http.Server{Handler: participant.Handler(k.handle)}
	done := make(chan struct{})
	k.mu.Lock()
	k.srv, k.serving = srv, done
	k.mu.Unlock()
	go func() { srv.Serve(ln); close(done) }()
}

// kill closes the listener and every open connection at once, as the
// death of the participant's process would: the coordinator's calls in
// flight end with a dropped connection. Held actions stay held until
// released; then they end without an answer, after applying their
// effect if applyDie says so (died after its commit, before its answer).
func (k *teller) kill(applyDie func(key callKey) bool) {
	k.mu.Lock()
	srv, done := k.srv, k.serving
	k.srv, k.dying, k.applyDie = nil, true, applyDie
	k.mu.Unlock()
	srv.Close()
	<-done
}

// revive listens again on the same address.
func (k *teller) revive() {
	ln, err := net.Listen("tcp", k.addr)
	if err != nil {
		k.t.Fatalf("teller: listen again on %s: %v", k.addr, err)
	}
	k.mu.Lock()
	k.dying = false
	k.mu.Unlock()
	k.serve(ln)
}

// hold makes the actions of the gids match accepts wait; it returns the
// channel on which each announces itself.
func (k *teller) hold(match func(gid string) bool) <-chan callKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.holding, k.gate, k.arrived = match, make(chan struct{}), make(chan callKey, 1024)
	return k.arrived
}

// release lets the held actions go on, holds nothing more, and returns
// once every held action has returned.
func (k *teller) release() {
	k.mu.Lock()
	if k.gate != nil {
		close(k.gate)
	}
	k.holding, k.gate = nil, nil
	k.mu.Unlock()
	k.inHold.Wait()
}

func (k *teller) rejectB(gid string) {
	k.mu.Lock()
	k.reject[gid] = true
	k.mu.Unlock()
}

func (k *teller) handle(ctx context.Context, b participant.Branch, _ []byte) error {
	key := callKey{b.GID, b.BranchID, string(b.Op)}
	k.mu.Lock()
	k.calls[key]++
	var gate chan struct{}
	if b.Op == participant.OpAction && k.holding != nil && k.holding(b.GID) {
		gate = k.gate
		k.inHold.Add(1)
		defer k.inHold.Done()
		select {
		case k.arrived <- key:
		default:
		}
	}
	reject := k.reject[b.GID] && b.BranchID == "b" && b.Op == participant.OpAction
	k.mu.Unlock()
	if gate != nil {
		<-gate // not the request's context: a hung or dying handler ignores its caller
		k.mu.Lock()
		dying, applyDie := k.dying, k.applyDie
		k.mu.Unlock()
		if dying && !applyDie(key) {
			return fmt.Errorf("died before %s took effect", key)
		}
		// applyDie: the effect is committed; its answer goes nowhere.
	}
	if reject {
		return participant.Reject("insufficient funds")
	}
	return k.br.Do(context.WithoutCancel(ctx), b, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO "+k.ledger+" (gid, branch, op) VALUES ($1, $2, $3)", b.GID, b.BranchID, string(b.Op))
		return err
	})
}

// callsOf returns how many times the teller received each operation.
func (k *teller) callsOf() map[callKey]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[callKey]int, len(k.calls))
	for key, n := range k.calls {
		out[key] = n
	}
	return out
}

// applied returns how many times each operation took effect.
func (k *teller) applied(t *testing.T) map[callKey]int {
	rows, err := k.db.QueryContext(t.Context(), "SELECT gid, branch, op FROM "+k.ledger)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[callKey]int{}
	for rows.Next() {
		var key callKey
		if err := rows.Scan(&key.gid, &key.branch, &key.op); err != nil {
			t.Fatal(err)
		}
		out[key]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// saga builds the two-branch saga the fault tests run: "a" and "b", both
// on the teller.
func (k *teller) saga(c *client.Client, gid string) *client.Saga {
	return c.NewSaga(gid).
		AddBranch(client.Branch{ID: "a", Action: k.url, Compensate: k.url, Payload: "10"}).
		AddBranch(client.Branch{ID: "b", Action: k.url, Compensate: k.url, Payload: "10"})
}

// checkEffects waits until every gid of accepted is final, through c, and
// checks that the teller's ledger matches each outcome: a succeeded saga
// applied each action once and no compensation; an aborted one left each
// branch net zero (an action at most once, compensated iff it took
// effect); b never took effect where it was made to refuse. Gids of maybe
// (submissions that failed, and so may or may not be durable) must be
// unknown, or final and consistent too. It returns the count per status.
func (k *teller) checkEffects(t *testing.T, c *client.Client, accepted, maybe []string, within time.Duration) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	final := map[string]*client.Transaction{}
	out := map[string]int{}
	settle := func(gid string, mustExist bool) {
		tx, err := c.Get(ctx, gid)
		if !mustExist && isNotFound(err) {
			out["never accepted"]++
			return
		}
		if err == nil && !client.Settled(tx) {
			tx, err = c.Wait(ctx, gid)
		}
		if err != nil {
			t.Fatalf("%s (accepted %v) did not settle within %v: %v\n%s", gid, mustExist, within, err, show(tx))
		}
		final[gid] = tx
		out[tx.Status]++
	}
	for _, gid := range accepted {
		settle(gid, true)
	}
	for _, gid := range maybe {
		settle(gid, false)
	}
	eff := k.applied(t)
	k.mu.Lock()
	reject := make(map[string]bool, len(k.reject))
	for gid := range k.reject {
		reject[gid] = true
	}
	k.mu.Unlock()
	for _, gid := range append(append([]string(nil), accepted...), maybe...) {
		tx := final[gid]
		n := func(br string, op participant.Op) int { return eff[callKey{gid, br, string(op)}] }
		a := [2]int{n("a", participant.OpAction), n("a", participant.OpCompensate)}
		b := [2]int{n("b", participant.OpAction), n("b", participant.OpCompensate)}
		bad := ""
		switch {
		case tx == nil:
			if a != [2]int{} || b != [2]int{} {
				bad = "never accepted, yet has effects"
			}
		case tx.Status == client.StatusSucceeded:
			if reject[gid] || a != [2]int{1, 0} || b != [2]int{1, 0} {
				bad = "succeeded; want each action once and no compensation"
			}
		case tx.Status == client.StatusAborted:
			if a[0] > 1 || a[0] != a[1] || b[0] > 1 || b[0] != b[1] || (reject[gid] && b[0] != 0) {
				bad = "aborted; want each branch net zero, at most once"
			}
		default:
			bad = "ended " + tx.Status
		}
		if bad != "" {
			t.Errorf("%s: %s: effects a(action, compensate)=%v b=%v, refuse b=%v; calls received %v\n%s",
				gid, bad, a, b, reject[gid], k.callsFor(gid), show(tx))
		}
	}
	return out
}

// callsFor renders the calls the teller received for gid.
func (k *teller) callsFor(gid string) string {
	var parts []string
	for key, n := range k.callsOf() {
		if key.gid == gid {
			parts = append(parts, fmt.Sprintf("%s/%s×%d", key.branch, key.op, n))
		}
	}
	return strings.Join(parts, " ")
}

func isNotFound(err error) bool { return errors.Is(err, client.ErrNotFound) }

// show renders tx as `concord tx show` prints it.
func show(tx *client.Transaction) string {
	if tx == nil {
		return "(no record at the coordinator)"
	}
	var b strings.Builder
	cli.PrintTransaction(&b, tx)
	return b.String()
}
