package crash

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/failpoint"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// EnvSeed replays TestRandomKill9 with a given seed.
const EnvSeed = "CONCORD_CRASH_SEED"

// crashSeed returns the seed from EnvSeed, or a fresh one, and logs it.
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(EnvSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvSeed, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with %s=%d)", seed, EnvSeed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with seed %d (replay with %s=%d)", seed, EnvSeed, seed)
		}
	})
	return seed
}

// supervisor runs the coordinator over one data directory, kills it and
// restarts it, and hands the current client to whoever asks.
type supervisor struct {
	t   *testing.T
	dir string
	// arm, if set, names the failpoints of each new life ("" for none).
	// Only the test goroutine starts lives, so it needs no lock.
	arm func() string

	mu    sync.Mutex
	srv   *proc.Server
	armed string         // the failpoints of srv
	cl    *client.Client // nil while restarting
	ready chan struct{}  // closed once cl is set
	lives int
}

func newSupervisor(t *testing.T, dir string, arm func() string) *supervisor {
	s := &supervisor{t: t, dir: dir, arm: arm, ready: make(chan struct{})}
	s.start()
	return s
}

func (s *supervisor) start() {
	armed := ""
	if s.arm != nil {
		armed = s.arm()
	}
	srv := startCoord(s.t, s.dir, armed).Srv
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv, s.armed, s.cl = srv, armed, client.New(srv.URL)
	s.lives++
	close(s.ready)
}

// exited is closed when the current coordinator exits.
func (s *supervisor) exited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv.Exited()
}

// client returns the client of the running coordinator, waiting while it
// restarts.
func (s *supervisor) client(ctx context.Context) (*client.Client, error) {
	s.mu.Lock()
	cl, ready := s.cl, s.ready
	s.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	select {
	case <-ready:
		return s.client(ctx)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// kill9 kills the coordinator with SIGKILL and restarts it on the same
// data directory. It fails the test if the process had died on its own,
// other than at one of its armed failpoints. It reports how the life ended.
func (s *supervisor) kill9() (how string) {
	s.mu.Lock()
	srv, armed := s.srv, s.armed
	s.cl, s.ready = nil, make(chan struct{})
	s.mu.Unlock()
	how = "killed"
	select {
	case <-srv.Exited():
		how = "died on its own"
		killed, _ := srv.WaitExit(s.t.Context())
		for _, fp := range strings.Split(armed, ",") {
			name, _, _ := strings.Cut(fp, "@")
			if killed && name != "" && strings.Contains(srv.Stderr(), "failpoint: "+name+": SIGKILL") {
				how = "died at failpoint " + fp
			}
		}
		if how == "died on its own" {
			s.t.Errorf("the coordinator died on its own (pid %d):\n%s", srv.Pid(), srv.Stderr())
		}
	default:
	}
	srv.Kill()
	s.start()
	return how
}

// alive fails the test if the current coordinator has died on its own.
func (s *supervisor) alive() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	select {
	case <-srv.Exited():
		s.t.Fatalf("the coordinator died on its own (pid %d):\n%s", srv.Pid(), srv.Stderr())
	default:
	}
}

// submitAcked submits sg until the coordinator acknowledges it: after an
// error (the coordinator was killed under the call) it resubmits the same
// gid with the same content to whichever coordinator runs next. It gives
// up after settleTimeout without an acknowledgement.
func submitAcked(ctx context.Context, sup *supervisor, s sagaSpec, resubmits *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			resubmits.Add(1)
		}
		cl, err := sup.client(ctx)
		if err != nil {
			return fmt.Errorf("submit %s: no coordinator: %v (last error: %v)", s.gid, err, last)
		}
		_, err = s.build(cl).Submit(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, client.ErrConflict) || errors.Is(err, client.ErrInvalid) || errors.Is(err, client.ErrPrecondition) {
			return fmt.Errorf("resubmitting %s: %w", s.gid, err)
		}
		last = err
		// Not acknowledged: the coordinator died, or is going to. Look for
		// the next one after a short pause.
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("submit %s: not acknowledged after %v: %v", s.gid, settleTimeout, last)
		}
	}
}

// randomSaga makes a saga of 2 or 3 legs over random banks and accounts;
// about one leg in eight is rejected by rule, and the poor account rejects
// for lack of funds once it runs dry.
func randomSaga(rng *rand.Rand, gid string, banks []*bank, accounts []string) sagaSpec {
	s := sagaSpec{gid: gid}
	for range 2 + rng.IntN(2) {
		s.legs = append(s.legs, leg{
			bank: banks[rng.IntN(len(banks))],
			tr: transfer{
				Account: accounts[rng.IntN(len(accounts))],
				Amount:  1 + rng.Int64N(100),
				Reject:  rng.IntN(8) == 0,
			},
		})
	}
	return s
}

// TestRandomKill9 runs sagas from eight workers while the coordinator is
// killed with SIGKILL at random moments and restarted on the same data.
// Workers resubmit unacknowledged sagas (same gid, same content) until
// acknowledged. At the end every acknowledged saga must be final and the
// banks' ledgers and balances must agree with the outcomes.
func TestRandomKill9(t *testing.T) {
	storm(t, crashSeed(t), false)
}

// TestRandomFailpoints is TestRandomKill9 with every life but the last
// armed with a random named failpoint that fires on a random hit, so
// that many deaths come exactly between "written" and "synced" or
// between "decided" and "told", under load.
func TestRandomFailpoints(t *testing.T) {
	storm(t, crashSeed(t), true)
}

// storm is the body of the random kill tests.
func storm(t *testing.T, seed uint64, failpoints bool) {
	const (
		workers = 8
		tail    = time.Second // load after the last restart
	)
	accounts := map[string]int64{"alice": 10000, "bob": 10000, "carol": 10000, "dave": 300}
	// dave, poor and picked one time in ten, soon rejects for lack of funds.
	names := []string{"alice", "alice", "alice", "bob", "bob", "bob", "carol", "carol", "carol", "dave"}
	east, west := newBank(t, "east", accounts), newBank(t, "west", accounts)
	banks := []*bank{east, west}

	killer := rand.New(rand.NewPCG(seed, 0))
	var arm func() string
	if failpoints {
		points := []string{failpoint.AfterAccept, failpoint.BetweenBranches, failpoint.AfterDecision,
			failpoint.DuringCompensation, failpoint.BeforeCommitSync}
		arm = func() string {
			return fmt.Sprintf("%s@%d", points[killer.IntN(len(points))], 1+killer.IntN(60))
		}
	}
	sup := newSupervisor(t, t.TempDir(), arm)

	var (
		mu     sync.Mutex
		acked  = map[string]sagaSpec{}
		failed atomic.Bool
	)
	// work ends the workers on any early exit (t.Fatal included) before
	// the test waits for them; load only stops new sagas.
	var wg sync.WaitGroup
	defer wg.Wait()
	work, cancelWork := context.WithCancel(t.Context())
	defer cancelWork()
	load, stopLoad := context.WithCancel(work)
	defer stopLoad()
	var resubmits atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
			for n := 0; load.Err() == nil && !failed.Load(); n++ {
				s := randomSaga(rng, fmt.Sprintf("w%d-%05d", w, n), banks, names)
				// Once begun, a submission is retried until acknowledged,
				// even after the load stops: no gid is left in doubt.
				if err := submitAcked(work, sup, s, &resubmits); err != nil {
					if work.Err() == nil {
						t.Error(err)
					}
					failed.Store(true)
					return
				}
				mu.Lock()
				acked[s.gid] = s
				mu.Unlock()
				select {
				case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
				case <-load.Done():
				}
			}
		}()
	}

	kills := 4 + killer.IntN(2)
	if failpoints {
		kills *= 2 // failpoints often end a life before the killer does
	}
	for i := range kills {
		if i == kills-1 {
			sup.arm = nil // the last life runs to the end
		}
		pause := time.Duration(1000+killer.IntN(2000)) * time.Millisecond
		select {
		case <-time.After(pause):
		case <-sup.exited(): // a failpoint fired: restart now
		case <-t.Context().Done():
			t.Fatal("test ended while killing")
		}
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		start := time.Now()
		how := sup.kill9()
		t.Logf("life %d %s: %d sagas acknowledged so far; restarted in %v", i+1, how, n, time.Since(start).Round(time.Millisecond))
	}
	select {
	case <-time.After(tail):
	case <-t.Context().Done():
	}
	stopLoad()
	wg.Wait()
	sup.alive()
	if t.Failed() {
		return
	}

	// Let recovery finish everything, with no new traffic.
	cl, err := sup.client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gids := make([]string, 0, len(acked))
	for gid := range acked {
		gids = append(gids, gid)
	}
	sort.Strings(gids)
	settleStart := time.Now()
	final := make(map[string]*client.Transaction, len(gids))
	settle, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var fmu sync.Mutex
	next := make(chan string)
	var sw sync.WaitGroup
	for range workers {
		sw.Add(1)
		go func() {
			defer sw.Done()
			for gid := range next {
				tx, err := cl.Wait(settle, gid)
				if err != nil {
					t.Errorf("wait %s: %v (last seen %s)", gid, err, describeTx(tx))
					continue
				}
				fmu.Lock()
				final[gid] = tx
				fmu.Unlock()
			}
		}()
	}
	for _, gid := range gids {
		next <- gid
	}
	close(next)
	sw.Wait()
	t.Logf("all %d sagas final %v after the load stopped", len(gids), time.Since(settleStart).Round(time.Millisecond))
	sup.alive()
	if t.Failed() {
		return
	}

	// Invariants against the banks.
	l := readLedger(t, east, west)
	var settled []leg
	counts := map[string]int{}
	for _, gid := range gids {
		tx := final[gid]
		counts[tx.Status]++
		settled = append(settled, checkOutcome(t, l, acked[gid], tx)...)
	}
	for b, ops := range l {
		for k := range ops {
			if _, ok := acked[k.GID]; !ok {
				t.Errorf("bank %s applied %s for a saga nobody submitted", b.name, k)
			}
		}
	}
	east.CheckMoney(t, transfersAt(east, settled))
	west.CheckMoney(t, transfersAt(west, settled))
	t.Logf("%d sagas over %d coordinator lives (%d resubmissions): %d succeeded, %d aborted; %d repeated deliveries absorbed",
		len(gids), sup.lives, resubmits.Load(), counts[client.StatusSucceeded], counts[client.StatusAborted],
		east.Redelivered()+west.Redelivered())
	if counts[client.StatusSucceeded] == 0 || counts[client.StatusAborted] == 0 {
		t.Errorf("the workload should end with both outcomes: %v", counts)
	}
}
