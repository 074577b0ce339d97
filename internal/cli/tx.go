package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/concordtm/concord/client"
)

type remote struct {
	addr, token string
	json        bool
}

func (r *remote) flags(fs *flag.FlagSet, env Env) {
	addr := env.Getenv("CONCORD_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:7070"
	}
	fs.StringVar(&r.addr, "addr", addr, "coordinator URL (env CONCORD_ADDR)")
	fs.StringVar(&r.token, "token", env.Getenv("CONCORD_TOKEN"), "bearer token (env CONCORD_TOKEN)")
	fs.BoolVar(&r.json, "json", false, "print JSON")
}

func (r *remote) client() *client.Client {
	addr := r.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return client.New(addr, client.WithToken(r.token))
}

// Tx runs `concord tx list|show|retry|abort`.
func Tx(args []string, env Env) error {
	if len(args) == 0 {
		return usageError("tx: want one of list, show, retry, abort, in-doubt")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("tx "+sub, env)
	var r remote
	r.flags(fs, env)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch sub {
	case "list":
		var o client.ListOptions
		fs.StringVar(&o.Status, "status", "", "only this status (running, compensating, stuck, ...)")
		fs.StringVar(&o.Mode, "mode", "", "only this mode (saga, tcc)")
		fs.StringVar(&o.GIDPrefix, "prefix", "", "only gids with this prefix")
		fs.IntVar(&o.Limit, "limit", 20, "at most this many")
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError("tx list: unexpected argument %q", fs.Arg(0))
		}
		txs, next, err := r.client().List(ctx, o)
		if err != nil {
			return err
		}
		if r.json {
			return printJSON(env.Stdout, txs)
		}
		printList(env.Stdout, txs)
		if next != "" {
			fmt.Fprintf(env.Stdout, "(more: older transactions exist; narrow with -status/-prefix or raise -limit)\n")
		}
		return nil
	case "in-doubt":
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError("tx in-doubt: unexpected argument %q", fs.Arg(0))
		}
		return inDoubt(ctx, env.Stdout, r.client(), r.json)
	case "show", "retry", "abort":
		var reason string
		if sub == "abort" {
			fs.StringVar(&reason, "reason", "", "why (kept in the transaction)")
		}
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError("tx %s: want exactly one GID", sub)
		}
		gid := fs.Arg(0)
		c := r.client()
		var t *client.Transaction
		var err error
		switch sub {
		case "show":
			t, err = c.Get(ctx, gid)
		case "retry":
			t, err = c.Retry(ctx, gid)
		case "abort":
			t, err = c.Abort(ctx, gid, reason)
		}
		if err != nil {
			if errors.Is(err, client.ErrInvalid) {
				return usageError("tx %s: %v", sub, err)
			}
			return err
		}
		if r.json {
			return printJSON(env.Stdout, []*client.Transaction{t})
		}
		PrintTransaction(env.Stdout, t)
		return nil
	}
	return usageError("tx: unknown subcommand %q; want list, show, retry, abort or in-doubt", sub)
}

// inDoubt prints the 2PC branches that voted yes and have not acknowledged
// phase 2: their databases hold prepared transactions (and locks) until
// they hear the decision.
func inDoubt(ctx context.Context, w io.Writer, c *client.Client, asJSON bool) error {
	var found []*client.Transaction
	for _, status := range []string{client.StatusRunning, client.StatusCommitting, client.StatusStuck} {
		token := ""
		for {
			txs, next, err := c.List(ctx, client.ListOptions{Mode: "2pc", Status: status, Limit: 1000, PageToken: token})
			if err != nil {
				return err
			}
			found = append(found, txs...)
			if next == "" {
				break
			}
			token = next
		}
	}
	if asJSON {
		return printJSON(w, found)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GID\tSTATUS\tBRANCH\tVOTE\tPHASE 2\tURL")
	n := 0
	for _, t := range found {
		for _, b := range t.Branches {
			if b.ForwardStatus != "done" || b.BackwardStatus == "done" || b.BackwardStatus == "skipped" {
				continue
			}
			phase2 := b.BackwardOp + " " + b.BackwardStatus
			if b.BackwardOp == "" {
				phase2 = "awaiting decision"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\tyes\t%s\t%s\n", t.GID, t.Status, b.ID, phase2, b.ForwardURL)
			n++
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d in-doubt branch(es)\n", n)
	return nil
}

func printJSON(w io.Writer, txs []*client.Transaction) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(txs) == 1 {
		return enc.Encode(txs[0]) // the API's JSON (client.Transaction.MarshalJSON)
	}
	return enc.Encode(txs)
}

func stampMs(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return stamp(time.UnixMilli(ms))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

func printList(w io.Writer, txs []*client.Transaction) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GID\tMODE\tSTATUS\tBRANCHES\tCREATED (UTC)\tREASON")
	for _, t := range txs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.GID, t.Mode, t.Status, len(t.Branches), stamp(t.CreatedAt), t.Reason)
	}
	tw.Flush()
}

// PrintTransaction writes a transaction and every branch's history.
func PrintTransaction(w io.Writer, t *client.Transaction) {
	fmt.Fprintf(w, "gid:       %s\n", t.GID)
	fmt.Fprintf(w, "mode:      %s\n", t.Mode)
	fmt.Fprintf(w, "status:    %s\n", t.Status)
	if t.StuckPhase != "" {
		fmt.Fprintf(w, "stuck in:  %s (concord tx retry %s resumes it)\n", t.StuckPhase, t.GID)
		fmt.Fprintf(w, "stuck by:  %s\n", t.StuckReason)
	}
	if t.Reason != "" {
		fmt.Fprintf(w, "reason:    %s\n", t.Reason)
	}
	fmt.Fprintf(w, "created:   %s\n", stamp(t.CreatedAt))
	fmt.Fprintf(w, "decided:   %s\n", stamp(t.DecidedAt))
	if !t.DecidedAt.IsZero() {
		fmt.Fprintf(w, "decision:  %s, durable at %s\n", decision(t), relTime(t.DecidedAt.Sub(t.CreatedAt)))
	}
	fmt.Fprintf(w, "updated:   %s\n", stamp(t.UpdatedAt))
	fmt.Fprintf(w, "deadline:  %s\n", stamp(t.Deadline))
	fmt.Fprintf(w, "attempts:  %d (times below are since created)\n", t.TotalAttempts)
	for _, b := range t.Branches {
		fmt.Fprintf(w, "\nbranch %s  %s=%s  %s=%s  payload %d B\n", b.ID, b.ForwardOp, b.ForwardStatus, b.BackwardOp, b.BackwardStatus, b.PayloadBytes)
		fmt.Fprintf(w, "  %-10s %s\n", b.ForwardOp, b.ForwardURL)
		fmt.Fprintf(w, "  %-10s %s\n", b.BackwardOp, b.BackwardURL)
		if len(b.After) > 0 {
			fmt.Fprintf(w, "  after      %s\n", strings.Join(b.After, ", "))
		}
		if b.ForwardUnsure {
			fmt.Fprintf(w, "  unsure     an earlier %s call's outcome was unknown: it may have taken effect\n", b.ForwardOp)
		}
		if b.RetryingOp != "" {
			fmt.Fprintf(w, "  retrying   %s next at %s, %d calls left before it is given up\n", b.RetryingOp,
				relTime(b.NextRetryAt.Sub(t.CreatedAt)), b.AttemptsLeft)
		}
		for _, a := range b.Attempts {
			line := fmt.Sprintf("  %9s  %-10s #%-2d %-9s %8.1fms", relTime(a.StartedAt.Sub(t.CreatedAt)), a.Op, a.Number, a.Outcome, float64(a.Duration)/float64(time.Millisecond))
			if a.Error != "" {
				line += "  " + a.Error
			}
			fmt.Fprintln(w, line)
		}
	}
}

// relTime renders a time since the transaction was accepted.
func relTime(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 10_000 {
		return fmt.Sprintf("+%dms", ms)
	}
	return fmt.Sprintf("+%.1fs", float64(ms)/1000)
}

// decision names what was decided, from where the transaction went.
func decision(t *client.Transaction) string {
	s := t.Status
	if s == client.StatusStuck {
		s = t.StuckPhase
	}
	switch s {
	case "succeeded", "committing", "confirming", "delivering":
		if t.Mode == "msg" {
			return "deliver"
		}
		return "commit"
	case "aborted", "compensating", "cancelling":
		return "roll back"
	}
	return "decided"
}
