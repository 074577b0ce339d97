package bank

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concordtm/concord/participant"
)

// fault is what a participant does to one call.
type fault int

const (
	faultNone       fault = iota
	faultReject           // 409, nothing done (forward operations only)
	faultFailBefore       // 500, nothing done
	faultFailAfter        // apply, then 500
	faultLate             // sleep past the branch timeout, then apply
	faultHang             // never answer, never apply
	faultDropBefore       // close the connection, nothing done
	faultDropAfter        // apply, then close the connection unanswered
	numFaults
)

var faultNames = [numFaults]string{"none", "reject", "500-before", "500-after", "late", "hang", "drop-before", "drop-after"}

func (f fault) String() string { return faultNames[f] }

// Weights, in percent, of each fault for a forward call (action, try) and
// for any other call (compensate, confirm, cancel, which must not refuse).
var (
	forwardWeights = [numFaults]int{faultNone: 48, faultReject: 10, faultFailBefore: 5, faultFailAfter: 5,
		faultLate: 14, faultHang: 3, faultDropBefore: 5, faultDropAfter: 10}
	otherWeights = [numFaults]int{faultNone: 58, faultFailBefore: 8, faultFailAfter: 8,
		faultLate: 10, faultHang: 4, faultDropBefore: 6, faultDropAfter: 6}
)

// hangCap bounds a hanging call whose caller never goes away.
const hangCap = 15 * time.Second

// faults draws a fault for every participant call while it is on, counts
// them, keeps a short trace per gid for failure reports, and counts the
// calls still running, late landings included.
type faults struct {
	on       atomic.Bool
	late     time.Duration // the branch timeout: late landings sleep longer
	mu       sync.Mutex
	rng      *rand.Rand
	trace    map[string][]string // gid → "bank op/branch fault at"
	injected [numFaults]atomic.Int64
	calls    atomic.Int64
	inflight atomic.Int64
	noFunds  atomic.Int64 // refusals for lack of funds (not injected)
}

func newFaults(seed uint64, branchTimeout time.Duration) *faults {
	f := &faults{rng: rand.New(rand.NewPCG(seed, 0xfa)), late: branchTimeout, trace: map[string][]string{}}
	f.on.Store(true)
	return f
}

// draw picks the fault of one call and records it.
func (f *faults) draw(bank string, b participant.Branch) fault {
	f.calls.Add(1)
	got := faultNone
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.on.Load() {
		w := &otherWeights
		if b.Op == participant.OpAction || b.Op == participant.OpTry {
			w = &forwardWeights
		}
		n := f.rng.IntN(100)
		for i, p := range w {
			if n < p {
				got = fault(i)
				break
			}
			n -= p
		}
	}
	f.injected[got].Add(1)
	f.trace[b.GID] = append(f.trace[b.GID], fmt.Sprintf("%s %s %s/%s %s", time.Now().UTC().Format("15:04:05.000"), bank, b.Op, b.BranchID, got))
	return got
}

// lateDelay is how long a late call sleeps: past the branch timeout, long
// enough for the coordinator's retry to arrive first.
func (f *faults) lateDelay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.late + time.Duration(100+f.rng.IntN(1400))*time.Millisecond
}

// Trace returns what the participants did to gid's calls.
func (f *faults) Trace(gid string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.trace[gid], "\n")
}

// Summary renders the injected faults by kind.
func (f *faults) Summary() string {
	var parts []string
	total := int64(0)
	for i := faultReject; i < numFaults; i++ {
		n := f.injected[i].Load()
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", i, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d participant calls, %d faults injected (%s), %d refusals for lack of funds",
		f.calls.Load(), total, strings.Join(parts, ", "), f.noFunds.Load())
}

type faultKey struct{}

func faultOf(ctx context.Context) fault {
	f, _ := ctx.Value(faultKey{}).(fault)
	return f
}

// wrap puts the injector in front of a participant handler: it draws the
// call's fault and carries it out, handing the fault to h in the request's
// context for the faults that happen inside the operation.
func (f *faults) wrap(bank string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.inflight.Add(1)
		defer f.inflight.Add(-1)
		b, err := participant.FromRequest(r)
		if err != nil || r.URL.Path != "/"+string(b.Op) {
			http.Error(w, fmt.Sprintf("operation %q called at %s (%v)", b.Op, r.URL.Path, err), http.StatusBadRequest)
			return
		}
		ft := f.draw(bank, b)
		r = r.WithContext(context.WithValue(r.Context(), faultKey{}, ft))
		switch ft {
		case faultDropBefore:
			drop(w)
		case faultDropAfter:
			// Apply (the answer goes nowhere), then hang up.
			h.ServeHTTP(&discard{h: http.Header{}}, r)
			drop(w)
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// drop closes the call's connection without an answer.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(fmt.Sprintf("hijack: %v", err)) // httptest serves HTTP/1.1: cannot happen
	}
	conn.Close()
}

// discard is a ResponseWriter that forgets the answer.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (d *discard) WriteHeader(int)             {}
