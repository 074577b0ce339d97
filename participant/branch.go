package participant

import (
	"errors"
	"fmt"
	"net/http"
)

// Header names the coordinator sets on every call to a participant.
const (
	HeaderGID    = "Concord-Gid"
	HeaderBranch = "Concord-Branch"
	HeaderOp     = "Concord-Op"
	HeaderMode   = "Concord-Mode"
	// HeaderVote, on a 200 answer to prepare, set to "read-only", votes
	// yes with nothing to commit: the branch gets no phase 2.
	HeaderVote = "Concord-Vote"
	// HeaderOutcome "done", in the metadata of an ALREADY_EXISTS answer
	// from an ordinary gRPC method (UnaryServerInterceptor's barrier),
	// says the operation was done before (a repeated delivery) or needs
	// nothing (a null compensation): the coordinator takes it as success.
	HeaderOutcome = "Concord-Outcome"
)

// Op names the operation the coordinator asks a branch to perform.
type Op string

// Operations. Forward operations change business state; backward operations
// undo what a forward operation did.
const (
	OpAction     Op = "action"     // saga: forward
	OpCompensate Op = "compensate" // saga: undoes action
	OpTry        Op = "try"        // tcc: reserve (called by the initiator)
	OpConfirm    Op = "confirm"    // tcc: make the reservation final
	OpCancel     Op = "cancel"     // tcc: release the reservation
	OpPrepare    Op = "prepare"    // 2pc phase 1: do the work, make it durable but not visible, vote
	OpCommit     Op = "commit"     // 2pc phase 2 after a commit decision
	OpAbort      Op = "abort"      // 2pc phase 2 after an abort decision; 3pc abort
	OpCanCommit  Op = "can-commit" // 3pc phase 1: can you commit? (no work yet)
	OpPreCommit  Op = "pre-commit" // 3pc phase 2: do the work durably, not visibly, and acknowledge
	OpDoCommit   Op = "do-commit"  // 3pc phase 3 after the commit decision
	OpDeliver    Op = "deliver"    // msg: a message delivered to a consumer
	OpCheck      Op = "check"      // msg: the coordinator asks a producer whether its local transaction committed
	// OpState is not sent by the coordinator: a 2PC or 3PC participant
	// running a termination protocol asks a peer for its state (see
	// AskPeer; the answer is in HeaderState).
	OpState Op = "state"
)

// Valid reports whether op is one of the known operations.
func (op Op) Valid() bool {
	switch op {
	case OpAction, OpCompensate, OpTry, OpConfirm, OpCancel, OpPrepare, OpCommit, OpAbort,
		OpCanCommit, OpPreCommit, OpDoCommit, OpDeliver, OpCheck, OpState:
		return true
	}
	return false
}

// Undoes returns the forward operation a backward operation undoes
// (compensate → action, cancel → try) and true, or "" and false for a
// forward operation.
func (op Op) Undoes() (Op, bool) {
	switch op {
	case OpCompensate:
		return OpAction, true
	case OpCancel:
		return OpTry, true
	}
	return "", false
}

// Branch identifies one call from the coordinator to a participant: the
// global transaction, the branch within it, and the operation.
type Branch struct {
	GID      string
	BranchID string
	Op       Op
	Mode     string // "saga", "tcc", "2pc", "3pc", "msg"
	// Peers, on a 2PC prepare and a 3PC can-commit or pre-commit, are
	// the transaction's other voting branches (HeaderPeers): whom a
	// termination protocol asks.
	Peers []Peer
}

// ErrNotABranchCall is returned by FromRequest when the request lacks the
// coordinator's headers.
var ErrNotABranchCall = errors.New("participant: request carries no Concord branch headers")

// FromRequest reads the branch identity from an HTTP request sent by the
// coordinator (or, for a TCC try, by the initiator through the SDK).
func FromRequest(r *http.Request) (Branch, error) {
	b := Branch{
		GID:      r.Header.Get(HeaderGID),
		BranchID: r.Header.Get(HeaderBranch),
		Op:       Op(r.Header.Get(HeaderOp)),
		Mode:     r.Header.Get(HeaderMode),
	}
	if b.GID == "" || b.BranchID == "" || b.Op == "" {
		return Branch{}, ErrNotABranchCall
	}
	if !b.Op.Valid() {
		return Branch{}, fmt.Errorf("participant: unknown operation %q", b.Op)
	}
	peers, err := ParsePeers(r.Header.Get(HeaderPeers))
	if err != nil {
		return Branch{}, err
	}
	b.Peers = peers
	return b, nil
}

// SetHeaders writes the branch identity onto an outgoing request.
func (b Branch) SetHeaders(h http.Header) {
	h.Set(HeaderGID, b.GID)
	h.Set(HeaderBranch, b.BranchID)
	h.Set(HeaderOp, string(b.Op))
	if b.Mode != "" {
		h.Set(HeaderMode, b.Mode)
	}
	if len(b.Peers) > 0 {
		h.Set(HeaderPeers, EncodePeers(b.Peers))
	}
}
