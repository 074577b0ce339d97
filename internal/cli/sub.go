package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/concordtm/concord/client"
)

// Sub runs `concord sub add|rm|list`: the subscriptions of message topics.
func Sub(args []string, env Env) error {
	const want = "want one of add, rm, list"
	if len(args) == 0 {
		return usageError("sub: %s", want)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("sub "+sub, env)
	var r remote
	r.flags(fs, env)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch sub {
	case "add":
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 3 {
			return usageError("sub add: want TOPIC SUBSCRIBER URL, got %d argument(s)", fs.NArg())
		}
		s, created, err := r.client().Subscribe(ctx, fs.Arg(0), fs.Arg(1), fs.Arg(2))
		if err != nil {
			return subError("add", err)
		}
		if r.json {
			return printSubscriptions(env.Stdout, []*client.Subscription{s})
		}
		verb := "updated"
		if created {
			verb = "created"
		}
		fmt.Fprintf(env.Stdout, "%s: %s/%s -> %s\n", verb, s.Topic, s.Subscriber, s.Url)
		return nil
	case "rm":
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return usageError("sub rm: want TOPIC SUBSCRIBER, got %d argument(s)", fs.NArg())
		}
		if err := r.client().Unsubscribe(ctx, fs.Arg(0), fs.Arg(1)); err != nil {
			return subError("rm", err)
		}
		fmt.Fprintf(env.Stdout, "removed: %s/%s\n", fs.Arg(0), fs.Arg(1))
		return nil
	case "list":
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 1 {
			return usageError("sub list: want at most one TOPIC, got %d arguments", fs.NArg())
		}
		subs, err := r.client().Subscriptions(ctx, fs.Arg(0))
		if err != nil {
			return subError("list", err)
		}
		if r.json {
			return printSubscriptions(env.Stdout, subs)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tSUBSCRIBER\tURL\tUPDATED (UTC)")
		for _, s := range subs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Topic, s.Subscriber, s.Url, stampMs(s.UpdatedAtUnixMs))
		}
		tw.Flush()
		return nil
	}
	return usageError("sub: unknown subcommand %q; %s", sub, want)
}

// subError makes a refused argument a usage error (exit status 2).
func subError(sub string, err error) error {
	if errors.Is(err, client.ErrInvalid) {
		return usageError("sub %s: %v", sub, err)
	}
	return err
}

func printSubscriptions(w io.Writer, subs []*client.Subscription) error {
	out := make([]json.RawMessage, 0, len(subs))
	for _, s := range subs {
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(s)
		if err != nil {
			return err
		}
		out = append(out, b)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
