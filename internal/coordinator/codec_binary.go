package coordinator

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/concordtm/concord/internal/protocol"
)

// The binary record format (record version 3). Version 1 was JSON, which
// always starts with '{'; a binary record starts with its version byte.
// Version 2 is version 3 without the op flags. All three are read; only
// version 3 is written. It is about a third of the JSON's
// size and ten times cheaper to write, which matters because every
// persisted step rewrites the whole transaction (docs/performance.md).
//
// Layout, in field order: str is a uvarint length and the bytes; int is a
// zigzag varint; list is a uvarint count and the items.
//
//	txn:     2 str(GID) str(Mode) str(Status) str(StuckPhase) str(Reason)
//	         str(StuckReason) flags options int(CreatedAt) int(UpdatedAt)
//	         int(Deadline) int(DecidedAt) int(NotBefore) int(TotalAttempts)
//	         str(SpecHash) list(branch)
//	flags:   1 byte: 1 Concurrent, 2 MaybeAhead
//	options: int(Timeout) int(BranchTimeout) int(MaxAttempts)
//	         int(MaxTotalAttempts) int(RetryInitial) int(RetryMax)
//	branch:  str(ID) str(ForwardOp) str(BackwardOp) str(ForwardURL)
//	         str(BackwardURL) str(Payload) list(str After) str(MidOp)
//	         op(Fwd) op(Mid) op(Bwd) list(attempt History)
//	op:      str(Status) int(Attempts) int(Tries) int(NextAt) str(Error)
//	         int(opflags)   (version 3; 1 Unsure)
//	attempt: str(Op) int(Number) int(Started) int(Duration) str(Outcome)
//	         str(Error)
//
// A field added to protocol.Txn must be added here, at the end of its
// struct's part, with a new record version if old records cannot be read
// as having it zero; TestBinaryCodecCoversEveryField fails until it is.
const (
	recordBinaryV2 = 2
	recordBinary   = 3
)

const (
	flagConcurrent = 1 << iota
	flagMaybeAhead
)

const opFlagUnsure = 1

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendInt(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendOp(b []byte, o *protocol.OpState) []byte {
	b = appendStr(b, string(o.Status))
	b = appendInt(b, int64(o.Attempts))
	b = appendInt(b, int64(o.Tries))
	b = appendInt(b, o.NextAt)
	b = appendStr(b, o.Error)
	var flags int64
	if o.Unsure {
		flags |= opFlagUnsure
	}
	return appendInt(b, flags)
}

// encodeBinary appends t in the binary format to b.
func encodeBinary(b []byte, t *protocol.Txn) []byte {
	b = append(b, recordBinary)
	for _, s := range []string{t.GID, string(t.Mode), string(t.Status), string(t.StuckPhase), t.Reason, t.StuckReason} {
		b = appendStr(b, s)
	}
	var flags byte
	if t.Concurrent {
		flags |= flagConcurrent
	}
	if t.MaybeAhead {
		flags |= flagMaybeAhead
	}
	b = append(b, flags)
	o := &t.Options
	for _, v := range []int64{o.Timeout, o.BranchTimeout, int64(o.MaxAttempts), int64(o.MaxTotalAttempts), o.RetryInitial, o.RetryMax,
		t.CreatedAt, t.UpdatedAt, t.Deadline, t.DecidedAt, t.NotBefore, int64(t.TotalAttempts)} {
		b = appendInt(b, v)
	}
	b = appendStr(b, t.SpecHash)
	b = binary.AppendUvarint(b, uint64(len(t.Branches)))
	for i := range t.Branches {
		br := &t.Branches[i]
		for _, s := range []string{br.ID, string(br.ForwardOp), string(br.BackwardOp), br.ForwardURL, br.BackwardURL} {
			b = appendStr(b, s)
		}
		b = binary.AppendUvarint(b, uint64(len(br.Payload)))
		b = append(b, br.Payload...)
		b = binary.AppendUvarint(b, uint64(len(br.After)))
		for _, a := range br.After {
			b = appendStr(b, a)
		}
		b = appendStr(b, string(br.MidOp))
		b = appendOp(b, &br.Fwd)
		b = appendOp(b, &br.Mid)
		b = appendOp(b, &br.Bwd)
		b = binary.AppendUvarint(b, uint64(len(br.History)))
		for j := range br.History {
			a := &br.History[j]
			b = appendStr(b, string(a.Op))
			b = appendInt(b, int64(a.Number))
			b = appendInt(b, a.Started)
			b = appendInt(b, a.Duration)
			b = appendStr(b, string(a.Outcome))
			b = appendStr(b, a.Error)
		}
	}
	return b
}

var errShort = errors.New("truncated or malformed binary record")

// binReader reads the binary format; the first error sticks and every
// later read returns zero values.
type binReader struct {
	b       []byte
	err     error
	version byte
}

func (r *binReader) fail() { r.err, r.b = errShort, nil }

func (r *binReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) int() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// small reads an int that must fit an int (counts and attempt numbers).
func (r *binReader) small() int {
	v := r.int()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail()
		return 0
	}
	return int(v)
}

func (r *binReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *binReader) str() string { return string(r.bytes()) }

// count reads a list length; each item takes at least min bytes, so a
// count larger than the rest could hold is malformed (and not allocated).
func (r *binReader) count(min int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(len(r.b)/min) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *binReader) op() protocol.OpState {
	o := protocol.OpState{Status: protocol.OpStatus(r.str()), Attempts: r.small(), Tries: r.small(), NextAt: r.int(), Error: r.str()}
	if r.version >= recordBinary {
		flags := r.int()
		if flags&^opFlagUnsure != 0 {
			r.fail()
		}
		o.Unsure = flags&opFlagUnsure != 0
	}
	return o
}

// decodeBinary reads a record written by encodeBinary. It does not check
// the content (decode does).
func decodeBinary(data []byte) (protocol.Txn, error) {
	if len(data) == 0 || (data[0] != recordBinary && data[0] != recordBinaryV2) {
		return protocol.Txn{}, errShort
	}
	r := &binReader{b: data[1:], version: data[0]}
	var t protocol.Txn
	t.GID = r.str()
	t.Mode = protocol.Mode(r.str())
	t.Status = protocol.Status(r.str())
	t.StuckPhase = protocol.Status(r.str())
	t.Reason = r.str()
	t.StuckReason = r.str()
	if len(r.b) == 0 {
		r.fail()
	} else {
		flags := r.b[0]
		r.b = r.b[1:]
		if flags&^(flagConcurrent|flagMaybeAhead) != 0 {
			r.fail()
		}
		t.Concurrent, t.MaybeAhead = flags&flagConcurrent != 0, flags&flagMaybeAhead != 0
	}
	t.Options = protocol.Options{Timeout: r.int(), BranchTimeout: r.int(), MaxAttempts: r.small(), MaxTotalAttempts: r.small(), RetryInitial: r.int(), RetryMax: r.int()}
	t.CreatedAt, t.UpdatedAt, t.Deadline, t.DecidedAt, t.NotBefore = r.int(), r.int(), r.int(), r.int(), r.int()
	t.TotalAttempts = r.small()
	t.SpecHash = r.str()
	// A branch takes at least 24 bytes: 9 one-byte lengths and counts,
	// and 3 ops of 5.
	if n := r.count(24); n > 0 {
		t.Branches = make([]protocol.Branch, n)
	}
	for i := range t.Branches {
		br := &t.Branches[i]
		br.ID, br.ForwardOp, br.BackwardOp = r.str(), protocol.Op(r.str()), protocol.Op(r.str())
		br.ForwardURL, br.BackwardURL = r.str(), r.str()
		if p := r.bytes(); len(p) > 0 {
			br.Payload = append([]byte(nil), p...)
		}
		if n := r.count(1); n > 0 {
			br.After = make([]string, n)
			for j := range br.After {
				br.After[j] = r.str()
			}
		}
		br.MidOp = protocol.Op(r.str())
		br.Fwd, br.Mid, br.Bwd = r.op(), r.op(), r.op()
		if n := r.count(6); n > 0 {
			br.History = make([]protocol.Attempt, n)
			for j := range br.History {
				br.History[j] = protocol.Attempt{Op: protocol.Op(r.str()), Number: r.small(), Started: r.int(), Duration: r.int(),
					Outcome: protocol.Outcome(r.str()), Error: r.str()}
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes after a binary record")
	}
	if r.err != nil {
		return protocol.Txn{}, r.err
	}
	return t, nil
}
