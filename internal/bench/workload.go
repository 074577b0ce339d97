package bench

import (
	"context"
	"fmt"

	"github.com/concordtm/concord/client"
)

// payload is what every branch carries: small, like a typical business
// request.
var payload = []byte(`{"order":"o-1","amount":30}`)

// txnFunc runs one transaction to its final outcome and returns nil only
// if it succeeded.
type txnFunc func(ctx context.Context) error

// newTxnFunc returns the transaction of mode, run through c against the
// no-op participants at p, with gids from gid.
func newTxnFunc(mode string, c *client.Client, p *participants, gid func() string) txnFunc {
	switch mode {
	case ModeTCC:
		return tccTxn(c, p, gid)
	case ModeTwoPC:
		return twoPCTxn(c, p, gid)
	case ModeThreePC:
		return threePCTxn(c, p, gid)
	case ModeMsg:
		return msgTxn(c, p, gid)
	}
	return sagaTxn(c, p, gid)
}

// twoPCTxn submits a two-phase commit with two participants and waits for
// its outcome: one API call; the coordinator sends two prepares, forces the
// decision, sends two commits.
func twoPCTxn(c *client.Client, p *participants, gid func() string) txnFunc {
	url := p.url(opTwoPC)
	return func(ctx context.Context) error {
		tx, err := c.NewTwoPC(gid()).Add(url, payload).Add(url, payload).SubmitAndWait(ctx)
		if err != nil {
			return err
		}
		return succeeded("2pc", tx)
	}
}

// threePCTxn submits a three-phase commit with two participants and waits
// for its outcome: one API call; the coordinator sends two can-commits,
// forces the pre-commit phase, sends two pre-commits, forces the decision,
// sends two do-commits.
func threePCTxn(c *client.Client, p *participants, gid func() string) txnFunc {
	url := p.url(opThreePC)
	return func(ctx context.Context) error {
		tx, err := c.NewThreePC(gid()).Add(url, payload).Add(url, payload).SubmitAndWait(ctx)
		if err != nil {
			return err
		}
		return succeeded("3pc", tx)
	}
}

// sagaTxn submits a saga of two branches and waits for its outcome: one
// API call; the coordinator calls both actions.
func sagaTxn(c *client.Client, p *participants, gid func() string) txnFunc {
	action, compensate := p.url(opAction), p.url(opCompensate)
	return func(ctx context.Context) error {
		tx, err := c.NewSaga(gid()).
			Add(action, compensate, payload).
			Add(action, compensate, payload).
			SubmitAndWait(ctx)
		if err != nil {
			return err
		}
		return succeeded("saga", tx)
	}
}

// tccTxn runs a TCC transaction with two branches: begin, then register
// and try each branch, then commit and wait (four API calls and two tries
// from here; the coordinator calls both confirms).
func tccTxn(c *client.Client, p *participants, gid func() string) txnFunc {
	try, confirm, cancel := p.url(opTry), p.url(opConfirm), p.url(opCancel)
	return func(ctx context.Context) error {
		tx, err := c.RunTCC(ctx, gid(), client.Options{}, func(ctx context.Context, t *client.TCC) error {
			if _, err := t.CallBranch(ctx, "1", payload, try, confirm, cancel); err != nil {
				return err
			}
			_, err := t.CallBranch(ctx, "2", payload, try, confirm, cancel)
			return err
		})
		if err != nil {
			return err
		}
		return succeeded("tcc", tx)
	}
}

func succeeded(mode string, tx *client.Transaction) error {
	if tx.Status != client.StatusSucceeded {
		return fmt.Errorf("%s %s ended %s", mode, tx.GID, tx.Status)
	}
	return nil
}

// msgTxn sends a transactional message to two consumers: prepare, a no-op
// local transaction, submit and wait until both consumers acknowledged (two
// API calls; the coordinator makes two deliveries).
func msgTxn(c *client.Client, p *participants, gid func() string) txnFunc {
	deliver, check := p.url(opDeliver), p.url(opCheck)
	return func(ctx context.Context) error {
		m := c.NewMessage(gid()).Payload(payload).To(deliver).To(deliver)
		if _, err := m.Prepare(ctx, check); err != nil {
			return err
		}
		tx, err := m.SubmitAndWait(ctx)
		if err != nil {
			return err
		}
		return succeeded("msg", tx)
	}
}
