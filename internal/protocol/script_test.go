package protocol_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	p "github.com/concordtm/concord/internal/protocol"
)

// Script tests in the style of raft's interaction tests. Each file in
// testdata/ is a sequence of blocks:
//
//	# comment
//	command key=value ...
//	----
//	transcript (no blank lines)
//
// The transcript is the status, the branch operations and the effects after
// the command. Run with -rewrite to regenerate the transcripts.
//
// Commands (times are durations since the script's epoch; at= moves the
// virtual clock, which never goes back):
//
//	submit saga|tcc|2pc|3pc gid=G branches=N|a,b,c [concurrent] [after=b:a;d:b+c]
//	       [timeout=D] [max_attempts=N] [max_total=N] [retry_initial=D]
//	       [retry_max=D] [branch_timeout=D] [at=D]
//	register id=ID [url=U] [payload=P] [at=D]
//	commit [at=D]
//	rollback [reason=R] [at=D]
//	result b=ID op=OP outcome=success|rejected|unknown|read-only [err=E] [attempt=N] [at=D]
//	tick [at=D]
//	crash-recover [at=D]
//	retry [at=D]
//	abort [reason=R] [at=D]

var rewrite = flag.Bool("rewrite", false, "rewrite golden files (testdata/*.txt, docs/state-machines.md)")

func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

type block struct {
	pre  []string // comments and blank lines before the command
	cmd  string
	want string
}

func parseScript(t *testing.T, path string) (blocks []block, trailer []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var pre []string
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			pre = append(pre, line)
			continue
		}
		b := block{pre: pre, cmd: line}
		pre = nil
		// A new script may omit the transcript; -rewrite adds it.
		if i+1 < len(lines) && lines[i+1] == "----" {
			i += 2
			var out []string
			for ; i < len(lines) && lines[i] != ""; i++ {
				out = append(out, lines[i])
			}
			if len(out) > 0 {
				b.want = strings.Join(out, "\n") + "\n"
			}
			// The blank line that ended the transcript is the separator.
		} else if i+1 < len(lines) && lines[i+1] == "" {
			i++
		}
		blocks = append(blocks, b)
	}
	return blocks, pre
}

func runScript(t *testing.T, path string) {
	blocks, trailer := parseScript(t, path)
	s := &scriptRun{}
	var out strings.Builder
	for i, b := range blocks {
		for _, l := range b.pre {
			out.WriteString(l + "\n")
		}
		got, err := s.exec(b.cmd)
		if err != nil {
			t.Fatalf("%s: %q: %v", path, b.cmd, err)
		}
		out.WriteString(b.cmd + "\n----\n" + got + "\n")
		if !*rewrite && got != b.want {
			t.Errorf("%s: block %d %q:\n--- want\n%s--- got\n%s", path, i+1, b.cmd, b.want, got)
		}
	}
	for _, l := range trailer {
		if l != "" {
			out.WriteString(l + "\n")
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type scriptRun struct {
	m   *p.Machine
	txn p.Txn
	now int64
}

// exec runs one command and returns its transcript. A returned error is a
// broken script; an error from Step is part of the transcript.
func (s *scriptRun) exec(line string) (string, error) {
	words, err := splitWords(line)
	if err != nil {
		return "", err
	}
	name, args := words[0], map[string]string{}
	var pos []string
	for _, w := range words[1:] {
		if k, v, ok := strings.Cut(w, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, w)
		}
	}
	used := map[string]bool{"at": true}
	get := func(k, def string) string {
		used[k] = true
		if v, ok := args[k]; ok {
			return v
		}
		return def
	}
	if v, ok := args["at"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return "", err
		}
		if int64(d) < s.now {
			return "", fmt.Errorf("at=%s is before the clock (%s)", v, fmtTime(s.now))
		}
		s.now = int64(d)
	}
	if name != "submit" && s.m == nil {
		return "", fmt.Errorf("%s before submit", name)
	}

	var ev p.Event
	switch name {
	case "submit":
		if len(pos) < 1 {
			return "", fmt.Errorf("submit: want a mode")
		}
		ev, err = s.submit(p.Mode(pos[0]), pos[1:], get)
	case "register":
		id := get("id", "")
		ev = p.Register{Now: s.now, Branch: p.Branch{
			ID:          id,
			ForwardURL:  get("url", "http://svc/"+id) + "/confirm",
			BackwardURL: get("url", "http://svc/"+id) + "/cancel",
			Payload:     []byte(get("payload", id)),
		}}
	case "commit":
		ev = p.Commit{Now: s.now}
	case "rollback":
		ev = p.Rollback{Now: s.now, Reason: get("reason", "")}
	case "abort":
		ev = p.Abort{Now: s.now, Reason: get("reason", "")}
	case "tick":
		ev = p.Tick{Now: s.now}
	case "crash-recover":
		ev = p.Recover{Now: s.now}
	case "retry":
		ev = p.Retry{Now: s.now}
	case "result":
		ev, err = s.result(get)
	default:
		return "", fmt.Errorf("unknown command %q", name)
	}
	if err != nil {
		return "", err
	}
	for k := range args {
		if !used[k] {
			return "", fmt.Errorf("%s: unknown argument %q", name, k)
		}
	}

	before := s.txn.Clone()
	nt, fx, stepErr := s.m.Step(s.txn, ev)
	if err := sameTxn(before, s.txn); err != nil {
		return "", fmt.Errorf("Step mutated its input: %v", err)
	}
	var sb strings.Builder
	if stepErr != nil {
		fmt.Fprintf(&sb, "error: %v\n", stepErr)
	} else {
		s.txn = nt
	}
	sb.WriteString(fmtTxn(s.txn))
	sb.WriteString(fmtEffects(fx))
	return sb.String(), nil
}

func (s *scriptRun) submit(mode p.Mode, flags []string, get func(k, def string) string) (p.Event, error) {
	s.m = machineFor(mode)
	if s.m == nil {
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	s.txn = p.Txn{}
	o := testOptions()
	var notBefore int64
	dur := func(k string, v *int64) error {
		if d := get(k, ""); d != "" {
			x, err := time.ParseDuration(d)
			if err != nil {
				return err
			}
			*v = int64(x)
		}
		return nil
	}
	num := func(k string, v *int) error {
		if d := get(k, ""); d != "" {
			x, err := strconv.Atoi(d)
			if err != nil {
				return err
			}
			*v = x
		}
		return nil
	}
	for _, err := range []error{
		dur("timeout", &o.Timeout), dur("retry_initial", &o.RetryInitial),
		dur("retry_max", &o.RetryMax), dur("branch_timeout", &o.BranchTimeout),
		dur("not_before", &notBefore),
		num("max_attempts", &o.MaxAttempts), num("max_total", &o.MaxTotalAttempts),
	} {
		if err != nil {
			return nil, err
		}
	}
	txn := p.Txn{GID: get("gid", "g1"), Mode: mode, Options: o, NotBefore: notBefore}
	for _, f := range flags {
		switch {
		case f == "concurrent":
			txn.Concurrent = true
		case f == "check" && mode == p.ModeMsg:
			// A prepared message: the check-back comes first.
			txn.Branches = append(txn.Branches, p.Branch{ID: "check-back", ForwardOp: p.OpCheck, ForwardURL: "http://producer/check"})
		default:
			return nil, fmt.Errorf("submit: unknown flag %q", f)
		}
	}
	var ids []string
	spec := get("branches", "")
	if n, err := strconv.Atoi(spec); err == nil {
		for i := 1; i <= n; i++ {
			ids = append(ids, strconv.Itoa(i))
		}
	} else if spec != "" {
		ids = strings.Split(spec, ",")
	}
	for _, id := range ids {
		b := p.Branch{
			ID: id, ForwardURL: "http://svc/" + id + "/action", BackwardURL: "http://svc/" + id + "/compensate",
			Payload: []byte(id),
		}
		if mode == p.ModeTwoPC || mode == p.ModeThreePC {
			// One URL for every message.
			b.ForwardURL, b.BackwardURL = "http://svc/"+id, "http://svc/"+id
		}
		if mode == p.ModeMsg {
			b.ForwardURL, b.BackwardURL = "http://svc/"+id, ""
		}
		txn.Branches = append(txn.Branches, b)
	}
	if after := get("after", ""); after != "" {
		for _, rule := range strings.Split(after, ";") {
			id, on, ok := strings.Cut(rule, ":")
			if !ok {
				return nil, fmt.Errorf("after: bad rule %q", rule)
			}
			i := txn.Branch(id)
			if i < 0 {
				return nil, fmt.Errorf("after: unknown branch %q", id)
			}
			txn.Branches[i].After = strings.Split(on, "+")
		}
	}
	return p.Submit{Now: s.now, Txn: txn}, nil
}

func (s *scriptRun) result(get func(k, def string) string) (p.Event, error) {
	id, op := get("b", ""), p.Op(get("op", ""))
	r := p.Result{Now: s.now, Started: s.now, Branch: id, Op: op, Outcome: p.Outcome(get("outcome", "success")), Error: get("err", "")}
	// By default answer the latest call of that operation.
	if i := s.txn.Branch(id); i >= 0 {
		b := s.txn.Branches[i]
		if op == b.ForwardOp {
			r.Attempt = b.Fwd.Attempts
		} else if op == b.MidOp {
			r.Attempt = b.Mid.Attempts
		} else {
			r.Attempt = b.Bwd.Attempts
		}
	}
	if a := get("attempt", ""); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil {
			return nil, err
		}
		r.Attempt = n
	}
	return r, nil
}

// splitWords splits on spaces, keeping key="quoted value" together.
func splitWords(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote := false
	for _, r := range line {
		switch {
		case r == '"':
			inQuote = !inQuote
		case r == ' ' && !inQuote:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return out, nil
}
