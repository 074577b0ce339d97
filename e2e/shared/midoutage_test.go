package shared

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// TestPostgresStoreOutageMidTransaction and TestRedisStoreOutageMidTransaction
// take the store away while transactions are in flight under load, not
// between them (see checkMidOutage).
func TestPostgresStoreOutageMidTransaction(t *testing.T) {
	pg := startPrivatePostgres(t)
	checkMidOutage(t, "postgres://postgres@127.0.0.1:"+pg.port+"/postgres?sslmode=disable", pg.stop, pg.start)
}

func TestRedisStoreOutageMidTransaction(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	r := startRedis(t, port, dir)
	checkMidOutage(t, "redis://127.0.0.1:"+port+"/0?namespace=midoutage", r.kill, func() { r = startRedis(t, port, dir) })
}

// midHeld is how many sagas have their first action held by the teller
// when the store goes away.
const midHeld = 8

// checkMidOutage runs sagas from 4 workers against one coordinator on the
// store; midHeld more are accepted and their first actions held at the
// participant. The store goes down; then the held actions take effect and
// answer, so the coordinator's write of their results fails and it must
// reload them from the store (Coordinator.writeFailed, reload). The store
// comes back. Every saga the API accepted must end succeeded or aborted
// with effects that match (teller.checkEffects), the submissions refused
// meanwhile must be unknown or consistent too, and the coordinator must
// have logged the failed writes of the held sagas.
func checkMidOutage(t *testing.T, storeURL string, down, up func()) {
	srv := proc.Start(t, t.TempDir(), nil, "-store", storeURL, "-lease-ttl", "2s",
		"-retry-initial", "20ms", "-retry-max", "200ms", "-branch-timeout", "5s", "-max-attempts", "200")
	t.Cleanup(func() { srv.CheckLog(t) })
	c := client.New(srv.URL)
	k := newTeller(t)
	run := testenv.UniqueName(t, "mo")

	var (
		mu              sync.Mutex
		accepted, maybe []string
		afterUp         int
		isUp            = true
	)
	record := func(gid string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			maybe = append(maybe, gid)
			return
		}
		accepted = append(accepted, gid)
		if isUp {
			afterUp++
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				gid := fmt.Sprintf("%s-w%d-%d", run, w, i)
				if i%5 == 0 {
					k.rejectB(gid)
				}
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := k.saga(c, gid).Submit(sctx)
				cancel()
				if ctx.Err() != nil && err != nil {
					record(gid, err) // cut short by the test's end: may be durable
					return
				}
				record(gid, err)
				if err != nil { // the store is down: do not spin
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		})
	}
	// Load runs before the held sagas start.
	testenv.Eventually(t, 20*time.Second, "20 sagas accepted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= 20
	})

	heldPrefix := run + "-held-"
	arrived := k.hold(func(gid string) bool { return strings.HasPrefix(gid, heldPrefix) })
	var held []string
	for i := range midHeld {
		gid := fmt.Sprintf("%s%d", heldPrefix, i)
		if i%2 == 1 {
			k.rejectB(gid) // half of them compensate after the outage
		}
		if _, err := k.saga(c, gid).Submit(t.Context()); err != nil {
			t.Fatalf("submit %s: %v", gid, err)
		}
		held = append(held, gid)
	}
	for range midHeld {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the held sagas' first actions did not all arrive")
		}
	}

	mu.Lock()
	isUp = false
	mu.Unlock()
	down()
	downAt := time.Now()
	k.release() // their effects land; the coordinator cannot record them
	testenv.Eventually(t, 20*time.Second, "the coordinator to fail writing each held saga's result", func() bool {
		return len(logged(srv.Stderr(), "store write failed; will reload the transaction", held)) == len(held)
	})
	mu.Lock()
	isUp, afterUp = true, 0
	mu.Unlock()
	up()
	upAt := time.Now()
	t.Logf("store down for %v", upAt.Sub(downAt).Round(time.Millisecond))
	testenv.Eventually(t, 30*time.Second, "20 sagas accepted after the store returned", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return afterUp >= 20
	})
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	out := k.checkEffects(t, c, append(accepted, held...), maybe, 45*time.Second)
	t.Logf("%d accepted (%d held through the outage), %d refused or cut short: %v; the last settled %v after the store returned",
		len(accepted)+len(held), len(held), len(maybe), out, time.Since(upAt).Round(time.Millisecond))
	if out[client.StatusSucceeded] == 0 || out[client.StatusAborted] == 0 {
		t.Errorf("outcomes %v: want both kinds", out)
	}
}

// logged returns the gids of gids named in a log line with msg.
func logged(log, msg string, gids []string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		for _, gid := range gids {
			if strings.Contains(line, "gid="+gid+" ") || strings.HasSuffix(line, "gid="+gid) {
				out[gid] = true
			}
		}
	}
	return out
}
