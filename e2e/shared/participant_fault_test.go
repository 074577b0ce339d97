package shared

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// faultFlags: short retries, a budget that outlasts a participant's outage
// of a few seconds, and a short branch timeout for the hang.
var faultFlags = []string{
	"-lease-ttl", "2s", "-retry-initial", "20ms", "-retry-max", "200ms",
	"-branch-timeout", "1s", "-max-attempts", "300", "-max-total-attempts", "3000",
}

// startOnPostgres starts one coordinator on the shared PostgreSQL store.
func startOnPostgres(t *testing.T) (*proc.Server, *client.Client) {
	testenv.Postgres(t)
	prefix := testenv.UniqueName(t, "pf") + "_"
	u := withParam(testenv.PostgresDSN(), "table_prefix="+prefix)
	t.Cleanup(func() { drop(u) })
	srv := proc.Start(t, t.TempDir(), nil, append([]string{"-store", u}, faultFlags...)...)
	t.Cleanup(func() { srv.CheckLog(t) })
	return srv, client.New(srv.URL)
}

// attempts returns how many calls of op the coordinator recorded for
// branch id of gid.
func attempts(t *testing.T, c *client.Client, gid, id, op string) int {
	tx, err := c.Get(t.Context(), gid)
	if err != nil {
		t.Fatalf("get %s: %v", gid, err)
	}
	n := 0
	for _, b := range tx.Branches {
		if b.ID != id {
			continue
		}
		for _, a := range b.Attempts {
			if a.Op == op {
				n++
			}
		}
	}
	return n
}

// TestParticipantKilledMidBranch: the participant dies (its listener and
// every connection closed at once) while it handles the first action of
// 8 sagas; for half of them the action had committed before the death,
// for the others not. Every call to it is refused while it is down; then
// it comes back on the same address. Every saga ends, each effect once at
// most and matching the outcome: the coordinator must treat the dropped
// calls as unknown, not as done nor as refused.
func TestParticipantKilledMidBranch(t *testing.T) {
	_, c := startOnPostgres(t)
	k := newTeller(t)
	prefix := testenv.UniqueName(t, "kill") + "-"
	arrived := k.hold(func(gid string) bool { return strings.HasPrefix(gid, prefix) })
	var gids []string
	for i := range 8 {
		gid := fmt.Sprintf("%s%d", prefix, i)
		if i%4 >= 2 {
			k.rejectB(gid) // so also compensations of effects whose answer was lost
		}
		if _, err := k.saga(c, gid).Submit(t.Context()); err != nil {
			t.Fatalf("submit %s: %v", gid, err)
		}
		gids = append(gids, gid)
	}
	for range gids {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("not every first action reached the participant")
		}
	}
	k.kill(func(key callKey) bool { return key.gid[len(key.gid)-1]%2 == 0 }) // even: committed, then died
	k.release()
	// While it is down the coordinator keeps trying.
	testenv.Eventually(t, 20*time.Second, "a refused retry of every first action", func() bool {
		for _, gid := range gids {
			if attempts(t, c, gid, "a", "action") < 2 {
				return false
			}
		}
		return true
	})
	k.revive()
	out := k.checkEffects(t, c, gids, nil, 30*time.Second)
	t.Logf("outcomes %v; calls received: %v", out, k.callsOf())
	if out[client.StatusSucceeded] == 0 || out[client.StatusAborted] == 0 {
		t.Errorf("outcomes %v: want both kinds", out)
	}
}

// TestParticipantHangs: the participant stops answering the first action
// of 8 sagas (it keeps every request, retries included, past the 1s
// branch timeout). Half of the sagas have a 4s deadline, so they roll
// back while their action may still land. Once each saga's action was
// retried at least once (and the short ones passed their deadline), the
// participant wakes up and every held call lands late. Every saga ends,
// each effect once at most and matching the outcome: a late action after
// the compensation is refused by the barrier, a late action before it is
// compensated.
func TestParticipantHangs(t *testing.T) {
	_, c := startOnPostgres(t)
	k := newTeller(t)
	prefix := testenv.UniqueName(t, "hang") + "-"
	arrived := k.hold(func(gid string) bool { return strings.HasPrefix(gid, prefix) })
	var gids, short []string
	for i := range 8 {
		gid := fmt.Sprintf("%s%d", prefix, i)
		s := k.saga(c, gid)
		if i%2 == 1 {
			s = s.WithOptions(client.Options{Timeout: 4 * time.Second})
			short = append(short, gid)
		}
		if i%4 == 2 {
			k.rejectB(gid)
		}
		if _, err := s.Submit(t.Context()); err != nil {
			t.Fatalf("submit %s: %v", gid, err)
		}
		gids = append(gids, gid)
	}
	seen := map[string]int{}
	for len(seen) < len(gids) || minCount(seen) < 2 {
		select {
		case key := <-arrived:
			seen[key.gid]++
		case <-time.After(20 * time.Second):
			t.Fatalf("the coordinator did not retry every hung action: %v", seen)
		}
	}
	testenv.Eventually(t, 20*time.Second, "the short sagas to roll back around the hung actions", func() bool {
		for _, gid := range short {
			tx, err := c.Get(t.Context(), gid)
			if err != nil {
				t.Fatal(err)
			}
			if tx.Status == client.StatusRunning {
				return false
			}
		}
		return true
	})
	k.release() // every hung call lands now, late
	out := k.checkEffects(t, c, gids, nil, 30*time.Second)
	t.Logf("outcomes %v; calls received: %v", out, k.callsOf())
	for _, gid := range short {
		if tx, _ := c.Get(t.Context(), gid); tx.Status != client.StatusAborted {
			t.Errorf("%s passed its deadline with its action hung, yet ended %s", gid, tx.Status)
		}
	}
}

func minCount(m map[string]int) int {
	least := -1
	for _, n := range m {
		if least < 0 || n < least {
			least = n
		}
	}
	return least
}
