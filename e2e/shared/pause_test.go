package shared

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// TestPausedCoordinator freezes a coordinator (SIGSTOP) while it drives
// transactions, past its lease, on shared PostgreSQL and on MariaDB (see
// checkPaused).
func TestPausedCoordinator(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		testenv.Postgres(t)
		prefix := testenv.UniqueName(t, "pz") + "_"
		u := withParam(testenv.PostgresDSN(), "table_prefix="+prefix)
		t.Cleanup(func() { drop(u) })
		checkPaused(t, u)
	})
	t.Run("mysql", func(t *testing.T) {
		testenv.MariaDB(t)
		cfg, err := mysql.ParseDSN(testenv.MariaDBDSN())
		if err != nil {
			t.Fatal(err)
		}
		user := cfg.User
		if cfg.Passwd != "" {
			user += ":" + cfg.Passwd
		}
		prefix := testenv.UniqueName(t, "pz") + "_"
		u := fmt.Sprintf("mysql://%s@%s/%s?table_prefix=%s", user, cfg.Addr, cfg.DBName, prefix)
		t.Cleanup(func() { drop(u) })
		checkPaused(t, u)
	})
}

// pausedHeld is how many sagas the paused coordinator is driving.
const pausedHeld = 8

// checkPaused runs three coordinators on the store. Node 0 accepts
// pausedHeld sagas whose first actions the participant holds; node 0 is
// stopped (SIGSTOP) with those calls out, and only then do they take
// effect and answer, into a frozen process. An operator aborts two of
// them through node 1 (an immediate takeover); past node 0's lease, nodes
// 1 and 2 take the others over and finish them, while two workers keep
// submitting to them. Node 0 is then continued (SIGCONT): it must find every write
// refused (fencing) and drop the sagas (logged "transaction moved to
// another instance"), change no outcome, and no operation may take effect
// twice; every outcome, read through any node, matches the effects.
func checkPaused(t *testing.T, storeURL string) {
	const ttl = 2 * time.Second
	args := append([]string{"-store", storeURL}, faultFlags...)
	args = append(args, "-lease-ttl", ttl.String(), "-branch-timeout", "5s")
	var nodes []*proc.Server
	var clients []*client.Client
	for i := range 3 {
		a := args
		if i == 0 {
			a = append(append([]string(nil), args...), "-log-level", "info") // its disowns are logged at info
		}
		n := proc.Start(t, t.TempDir(), nil, a...)
		t.Cleanup(func() { n.CheckLog(t) })
		nodes, clients = append(nodes, n), append(clients, client.New(n.URL))
	}
	paused := nodes[0]
	t.Cleanup(func() { syscall.Kill(paused.Pid(), syscall.SIGCONT) }) // so that cleanup's SIGKILL is not held up
	k := newTeller(t)
	run := testenv.UniqueName(t, "pz")

	heldPrefix := run + "-held-"
	arrived := k.hold(func(gid string) bool { return strings.HasPrefix(gid, heldPrefix) })
	var held, aborted []string
	for i := range pausedHeld {
		gid := fmt.Sprintf("%s%d", heldPrefix, i)
		switch i % 4 {
		case 1, 3:
			k.rejectB(gid)
		case 2:
			aborted = append(aborted, gid)
		}
		if _, err := k.saga(clients[0], gid).Submit(t.Context()); err != nil {
			t.Fatalf("submit %s: %v", gid, err)
		}
		held = append(held, gid)
	}
	for range pausedHeld {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the held sagas' first actions did not all arrive")
		}
	}

	// Load on the two others, before, during and after the pause.
	var (
		mu       sync.Mutex
		accepted []string
		maybe    []string
	)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				gid := fmt.Sprintf("%s-w%d-%d", run, w, i)
				if i%5 == 0 {
					k.rejectB(gid)
				}
				_, err := k.saga(clients[1+w], gid).Submit(ctx)
				mu.Lock()
				if err != nil {
					maybe = append(maybe, gid)
				} else {
					accepted = append(accepted, gid)
				}
				mu.Unlock()
				// The store is healthy and nodes 1 and 2 run: a submission
				// to them must not fail (on MariaDB, InnoDB deadlocks
				// between two instances' commits once made some answer
				// 503; mysqlstore now reads at READ COMMITTED).
				if err != nil && ctx.Err() == nil {
					t.Errorf("submit %s to node %d: %v", gid, 1+w, err)
				}
			}
		})
	}

	if err := syscall.Kill(paused.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	k.release() // effects land; the answers go to a frozen process
	// An operator aborts some of them through node 1, which takes them
	// over at once (a fenced write, before the lease lapses). Node 0,
	// once it wakes, has the answers of their first actions and, not
	// knowing, calls their second actions: the abort must have
	// compensated the second branch too (null compensation), so that the
	// barrier refuses that late action.
	for _, gid := range aborted {
		if _, err := clients[1].Abort(t.Context(), gid, "its coordinator is frozen"); err != nil {
			t.Fatalf("abort %s through node 1: %v", gid, err)
		}
	}

	// The others take the sagas over after the lease and finish them.
	final := map[string]string{}
	for i, gid := range held {
		wctx, cancel := context.WithTimeout(t.Context(), ttl+25*time.Second)
		tx, err := clients[1+i%2].Wait(wctx, gid)
		cancel()
		if err != nil || !client.Settled(tx) {
			t.Fatalf("%s was not taken over and finished while its owner was paused: %v\n%s", gid, err, show(tx))
		}
		final[gid] = tx.Status
	}
	t.Logf("the survivors finished the paused node's sagas %v after the pause", time.Since(pausedAt).Round(time.Millisecond))
	effectsBefore := k.applied(t)
	callsBefore := k.callsOf()

	if err := syscall.Kill(paused.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Fencing: the resumed node's writes are refused and it drops each
	// saga it was driving.
	testenv.Eventually(t, 20*time.Second, "the resumed node to drop every saga taken from it", func() bool {
		return len(logged(paused.Stderr(), "transaction moved to another instance", held)) == len(held)
	})
	for _, gid := range aborted {
		if final[gid] != client.StatusAborted {
			t.Errorf("%s was aborted by the operator but ended %s", gid, final[gid])
		}
	}
	// It still serves reads, from the store: the survivors' outcomes.
	for _, gid := range held {
		tx, err := clients[0].Get(t.Context(), gid)
		if err != nil || tx.Status != final[gid] {
			t.Errorf("%s: the resumed node says %v (%v), the survivors said %s\n%s", gid, tx.GetStatus(), err, final[gid], show(tx))
		}
	}
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	out := k.checkEffects(t, clients[1], append(accepted, held...), maybe, 30*time.Second)
	// Nothing of the paused node's sagas took effect after the takeover
	// finished them, and no operation took effect twice.
	after := k.applied(t)
	for _, gid := range held {
		for key, n := range after {
			if key.gid == gid && n != effectsBefore[key] {
				t.Errorf("%s took effect again after the resumed node woke: %d times, %d before", key, n, effectsBefore[key])
			}
		}
	}
	for key, n := range after {
		if n > 1 {
			t.Errorf("%s took effect %d times", key, n)
		}
	}
	calls := k.callsOf()
	var resent []string
	for _, gid := range held {
		for key, n := range calls {
			if key.gid == gid && n > callsBefore[key] {
				resent = append(resent, fmt.Sprintf("%s ×%d", key, n-callsBefore[key]))
			}
		}
	}
	t.Logf("%d sagas: %v; paused node's sagas: %v; calls of them after SIGCONT (absorbed by the barrier): %v",
		len(accepted)+len(held), out, final, resent)
}
