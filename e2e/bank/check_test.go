package bank

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/cli"
	"github.com/concordtm/concord/participant"
)

// unfinished are the statuses `concord tx list -status` can show for a
// transaction that is not over.
var unfinished = []string{client.StatusRunning, client.StatusConfirming, client.StatusCompensating,
	client.StatusCancelling, client.StatusCommitting, client.StatusStuck}

// settle waits until every transfer's transaction is final and returns
// each, by gid (nil for a TCC the coordinator never heard of).
func (r *run) settle() map[string]*client.Transaction {
	t := r.t
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	r.mu.Lock()
	gids := make([]string, 0, len(r.transfers))
	for gid := range r.transfers {
		gids = append(gids, gid)
	}
	r.mu.Unlock()
	sort.Strings(gids)
	final := make(map[string]*client.Transaction, len(gids))
	var mu sync.Mutex
	next := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for gid := range next {
				tx, err := r.waitFinal(ctx, gid)
				if err != nil {
					t.Errorf("%s did not finish: %v\n%s", gid, err, r.explain(gid, tx))
					continue
				}
				mu.Lock()
				final[gid] = tx
				mu.Unlock()
			}
		}()
	}
	for _, gid := range gids {
		next <- gid
	}
	close(next)
	wg.Wait()
	return final
}

// waitFinal waits until gid is succeeded or aborted. A stuck transaction
// is an error at once: nothing in this test may exhaust a retry budget.
func (r *run) waitFinal(ctx context.Context, gid string) (*client.Transaction, error) {
	var tx *client.Transaction
	for {
		cl, err := r.cluster.client(ctx)
		if err != nil {
			return tx, err
		}
		got, err := cl.Wait(ctx, gid)
		if got != nil {
			tx = got
		}
		switch {
		case errors.Is(err, client.ErrNotFound):
			r.mu.Lock()
			tcc := r.transfers[gid].tcc
			r.mu.Unlock()
			if tcc {
				return nil, nil // a TCC that never began
			}
			return nil, fmt.Errorf("an acknowledged saga is unknown to the coordinator: %w", err)
		case err != nil:
			if ctx.Err() != nil {
				return tx, err
			}
			time.Sleep(20 * time.Millisecond)
		case got.Status == client.StatusStuck:
			return got, fmt.Errorf("stuck (%s): %s", got.StuckPhase, got.StuckReason)
		case client.Settled(got):
			return got, nil
		}
	}
}

// checkUnfinished lists, as `concord tx list -status` does, every
// transaction of this run that is not over, and fails the test for each.
func (r *run) checkUnfinished() {
	t := r.t
	cl, err := r.cluster.client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range unfinished {
		token := ""
		for {
			txs, next, err := cl.List(t.Context(), client.ListOptions{Status: status, GIDPrefix: r.prefix, Limit: 1000, PageToken: token})
			if err != nil {
				t.Fatalf("list %s: %v", status, err)
			}
			for _, tx := range txs {
				t.Errorf("%s is %s after everything settled\n%s", tx.GID, tx.Status, r.explain(tx.GID, tx))
			}
			if token = next; token == "" {
				break
			}
		}
	}
}

// outcome counts the transfers by mode and final status.
type outcome map[string]int

func (o outcome) String() string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, o[k]))
	}
	return strings.Join(parts, ", ")
}

// check compares both ledgers with the coordinator's decision for every
// gid, and the balances with the succeeded transfers.
func (r *run) check(final map[string]*client.Transaction) outcome {
	t := r.t
	applied := map[*bank]map[opKey]int{}
	for _, k := range r.banks {
		applied[k] = k.Applied(t)
	}
	// want is every account's expected money: the initial balances moved
	// by the succeeded transfers, nothing frozen or pending.
	want := map[*bank]map[string]account{}
	for _, k := range r.banks {
		want[k] = map[string]account{}
		for id, v := range k.initial {
			want[k][id] = account{Balance: v}
		}
	}
	counts := outcome{}
	gids := make([]string, 0, len(final))
	for gid := range final {
		gids = append(gids, gid)
	}
	sort.Strings(gids)
	for _, gid := range gids {
		tr, tx := r.transfers[gid], final[gid]
		mode := "saga"
		fwd, bwd, conf := participant.OpAction, participant.OpCompensate, participant.Op("")
		if tr.tcc {
			mode = "tcc"
			fwd, bwd, conf = participant.OpTry, participant.OpCancel, participant.OpConfirm
		}
		status := "never began"
		if tx != nil {
			status = tx.Status
		}
		counts[mode+" "+status]++
		var problems []string
		for _, side := range []struct {
			k  *bank
			id string
		}{{tr.from, debit}, {tr.to, credit}} {
			n := func(op participant.Op) int { return applied[side.k][opKey{gid, side.id, op}] }
			got := fmt.Sprintf("%s=%d %s=%d", fwd, n(fwd), bwd, n(bwd))
			if conf != "" {
				got += fmt.Sprintf(" %s=%d", conf, n(conf))
			}
			var ok bool
			switch status {
			case client.StatusSucceeded:
				// Applied exactly once; for TCC, reserved once and
				// confirmed once.
				ok = n(fwd) == 1 && n(bwd) == 0 && (conf == "" || n(conf) == 1)
			case client.StatusAborted:
				// Net zero: every forward operation undone, once.
				ok = n(fwd) <= 1 && n(fwd) == n(bwd) && (conf == "" || n(conf) == 0)
			case "never began":
				ok = n(fwd) == 0 && n(bwd) == 0 && (conf == "" || n(conf) == 0)
			}
			if !ok {
				problems = append(problems, fmt.Sprintf("branch %s at %s: %s", side.id, side.k.name, got))
			}
		}
		if len(problems) > 0 {
			t.Errorf("%s %s %s, but the ledgers disagree: %s\n%s", mode, gid, status, strings.Join(problems, "; "), r.explain(gid, tx))
		}
		if status == client.StatusSucceeded {
			a, c := want[tr.from][tr.debit.Account], want[tr.to][tr.credit.Account]
			a.Balance -= tr.debit.Amount
			c.Balance += tr.credit.Amount
			want[tr.from][tr.debit.Account], want[tr.to][tr.credit.Account] = a, c
		}
	}
	for k, ops := range applied {
		for key, n := range ops {
			if _, ok := final[key.GID]; !ok {
				t.Errorf("bank %s applied %s of %s/%s %d times, for a transfer nobody began", k.name, key.Op, key.GID, key.Branch, n)
			}
		}
	}
	// Balances, and the money across both databases.
	var total, initial int64
	for _, k := range r.banks {
		got := k.Accounts(t)
		ids := make([]string, 0, len(want[k]))
		for id := range want[k] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			g := got[id]
			total += g.Balance + g.Frozen + g.Pending
			initial += k.initial[id]
			if g != want[k][id] {
				t.Errorf("bank %s: account %s = %+v, want %+v from the succeeded transfers", k.name, id, g, want[k][id])
			}
		}
	}
	if total != initial {
		t.Errorf("money not conserved across both databases: %d in all accounts (balance+frozen+pending), started with %d", total, initial)
	}
	if counts["saga "+client.StatusSucceeded] == 0 || counts["saga "+client.StatusAborted] == 0 {
		t.Errorf("the workload should end sagas both ways: %v", counts)
	}
	if r.faults.injected[faultLate].Load() == 0 {
		t.Errorf("no late landing was injected")
	}
	return counts
}

// explain renders what is known of gid for a failure report: the
// coordinator's record as `concord tx show` prints it, the faults the
// participants injected into its calls, and its rows in both databases.
func (r *run) explain(gid string, tx *client.Transaction) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.t.Context()), 30*time.Second)
	defer cancel()
	var b strings.Builder
	r.mu.Lock()
	tr := r.transfers[gid]
	r.mu.Unlock()
	if tr != nil {
		fmt.Fprintf(&b, "--- transfer: %d from %s/%s to %s/%s (tcc=%v)\n", tr.debit.Amount, tr.from.name, tr.debit.Account, tr.to.name, tr.credit.Account, tr.tcc)
	}
	if cl, err := r.cluster.client(ctx); err == nil {
		if cur, err := cl.Get(ctx, gid); err == nil {
			tx = cur
		}
	}
	fmt.Fprintf(&b, "--- concord tx show %s\n", gid)
	if tx != nil {
		cli.PrintTransaction(&b, tx)
	} else {
		b.WriteString("(unknown to the coordinator)\n")
	}
	fmt.Fprintf(&b, "--- participant calls (UTC, fault drawn)\n%s\n", r.faults.Trace(gid))
	b.WriteString("--- database rows\n")
	for _, k := range r.banks {
		b.WriteString(k.Rows(ctx, gid))
	}
	return b.String()
}
