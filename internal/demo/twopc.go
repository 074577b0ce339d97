package demo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/participant"
	"github.com/concordtm/concord/participant/twophase"
)

// pathTwoPC is every service's single 2PC URL: prepare, commit and abort
// arrive there, told apart by the Concord-Op header.
const pathTwoPC = "/2pc"

// phases is one service's business logic for two-phase commit, run by the
// twophase helper inside its local transactions: prepare reserves (and may
// say no), commit makes the reservation final, abort releases it. They are
// TCC's try, confirm and cancel steps, driven by a different protocol.
type phases struct {
	prepare, commit, abort step
}

var (
	orderPhases   = phases{prepare: createOrder("pending"), commit: commitOrder, abort: deleteOrder}
	stockPhases   = phases{prepare: takeStock(true), commit: shipReserved, abort: returnStock(true)}
	accountPhases = phases{prepare: charge(true), commit: settleFrozen, abort: refund(true)}
)

func commitOrder(ctx context.Context, tx *sql.Tx, p purchase) (string, error) {
	if err := execOne(ctx, tx, `UPDATE orders SET status = 'committed' WHERE id = ?`, p.Order); err != nil {
		return "", err
	}
	return fmt.Sprintf("order #%d: pending → committed", p.Order), nil
}

// settleWait is how long the demo waits, after the coordinator reported
// the outcome, for a prepared branch to hear phase 2 before the service
// asks the coordinator itself (client.Decision). The coordinator sends an
// abort once, best effort (presumed abort), and does not wait for it.
const settleWait = 3 * time.Second

// handleTwoPC serves the service's 2PC URL with the twophase helper and
// prints what each call did.
func (s *service) handleTwoPC() participant.HandlerFunc {
	if s.xa != nil {
		return s.handleXA()
	}
	return func(ctx context.Context, b participant.Branch, body []byte) error {
		// Each call gets its own ran/did: concurrent calls must not share them.
		var did string
		ran := false
		run := func(st step) func(ctx context.Context, tx *sql.Tx, b participant.Branch, body []byte) error {
			return func(ctx context.Context, tx *sql.Tx, b participant.Branch, body []byte) error {
				var p purchase
				if err := json.Unmarshal(body, &p); err != nil {
					return fmt.Errorf("%s%s: payload: %w", s.name, pathTwoPC, err)
				}
				ran = true
				var err error
				did, err = st(ctx, tx, p)
				return err
			}
		}
		if b.Op == participant.OpCommit || b.Op == participant.OpAbort {
			announceDecision(s.out, b.GID, b.Op)
		}
		fn := s.tp.HandlerFunc(twophase.Resource{
			Check: run(s.phases.prepare), Apply: run(s.phases.commit), Undo: run(s.phases.abort)})
		err := fn(ctx, b, body)
		s.reportTwoPC(b, ran, did, err)
		return err
	}
}

// announceDecision prints the coordinator's decision when the first
// phase-2 message of gid reaches a participant: it is on the coordinator's
// disk by then (commit) or needs not be (abort, presumed).
func announceDecision(out *console, gid string, op participant.Op) {
	if !out.once("decision " + gid) {
		return
	}
	if op == participant.OpCommit {
		out.printf("  %-11s %-11s gid=%s  decision COMMIT: every branch voted yes; written and fsynced\n", "[concord]", "decide", gid)
		out.printf("  %-11s %-11s %s  before the first commit is sent\n", "", "", strings.Repeat(" ", len("gid=")+len(gid)))
		return
	}
	out.printf("  %-11s %-11s gid=%s  decision ABORT: a branch voted no; abort goes to the yes voters\n", "[concord]", "decide", gid)
	out.printf("  %-11s %-11s %s  (presumed abort: not forced, not awaited)\n", "", "", strings.Repeat(" ", len("gid=")+len(gid)))
}

// reportTwoPC prints one line for a handled 2PC call and wakes whoever
// waits for the branch to settle.
func (s *service) reportTwoPC(b participant.Branch, ran bool, did string, err error) {
	key := b.GID + "/" + b.BranchID
	s.mu.Lock()
	var msg string
	switch {
	case b.Op == participant.OpPrepare && errors.Is(err, participant.ErrRejected) && ran:
		msg = "votes NO: " + trimRejected(err)
	case b.Op == participant.OpPrepare && errors.Is(err, participant.ErrRejected):
		msg = "votes NO: refused, the branch is already aborted here (the abort came first)"
	case err != nil:
		msg = "error, outcome unknown (the coordinator retries): " + err.Error()
	case b.Op == participant.OpPrepare && ran:
		msg = "votes YES: " + did + "; held until the decision"
		s.done[key+"/prepared"] = true
	case b.Op == participant.OpPrepare:
		msg = "votes YES again: already prepared (repeated delivery)"
	case ran && b.Op == participant.OpAbort:
		msg = "release the reservation: " + did
	case ran:
		msg = did
	case b.Op == participant.OpAbort && !s.done[key+"/prepared"]:
		msg = "nothing to release: never prepared here (null abort recorded; a late prepare is refused)"
	default:
		msg = "already done: repeated delivery"
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.out.printf("  %-11s %-11s gid=%s  %s\n", "["+s.name+"]", b.Op, b.GID, msg)
}

// runTwoPC submits the purchase as a two-phase commit over the three
// services and waits for its outcome, then for every branch to settle.
func runTwoPC(ctx context.Context, c *client.Client, sh *shop, gid string, p purchase, out *console) (*client.Transaction, error) {
	t := c.NewTwoPC(gid)
	var names []string
	for _, s := range sh.services() {
		t.AddBranch(s.name, s.url+pathTwoPC, p)
		names = append(names, s.name)
	}
	out.printf("  %-11s %-11s gid=%s  submit 2PC: prepare %s, all at once\n", "[shop]", "submit", gid, strings.Join(names, ", "))
	tx, err := t.SubmitAndWait(ctx)
	if err != nil {
		return nil, err
	}
	if tx.Status == client.StatusAborted {
		announceDecision(out, gid, participant.OpAbort)
	}
	for _, s := range sh.services() {
		if err := s.settle(ctx, c, gid); err != nil {
			return tx, err
		}
	}
	return tx, nil
}

// settle waits until the service's branch of gid is committed or aborted.
// The coordinator does not wait for abort acknowledgements, so an abort may
// still be on its way when the outcome is reported. If the branch is still
// open after settleWait, the service does what a real participant does
// with an old prepared branch: it asks the coordinator for the decision.
func (s *service) settle(ctx context.Context, c *client.Client, gid string) error {
	timer := time.NewTimer(settleWait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		st, err := s.branchState(ctx, gid)
		if err != nil {
			return err
		}
		if st == twophase.StateCommitted || st == twophase.StateAborted {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return s.askDecision(ctx, c, gid, st)
		}
	}
}

// askDecision resolves an open branch with the coordinator's decision.
func (s *service) askDecision(ctx context.Context, c *client.Client, gid string, st twophase.State) error {
	d, err := c.Decision(ctx, gid)
	if err != nil {
		return err
	}
	state := "no record"
	if st == twophase.StatePrepared {
		state = "still prepared"
	}
	s.out.printf("  %-11s %-11s gid=%s  %s %s after the outcome: asks the coordinator → %s\n",
		"["+s.name+"]", "ask", gid, state, settleWait, d)
	fn := s.handleTwoPC()
	b := participant.Branch{GID: gid, BranchID: s.name, Mode: "2pc"}
	switch d {
	case "commit":
		b.Op = participant.OpCommit
	case "abort":
		b.Op = participant.OpAbort
	default:
		return fmt.Errorf("demo: %s: branch %s/%s still open and the coordinator says %q", s.name, gid, s.name, d)
	}
	return fn(ctx, b, nil)
}
