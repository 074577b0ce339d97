package coordinator

import (
	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/participant"
)

// withPeers fills call.Peers for the calls that make a participant vote
// or pre-commit (a 2PC prepare, a 3PC can-commit or pre-commit): every
// other branch of t, by id and URL, so that a participant whose timeout
// fires can run a termination protocol with them. Other calls go out as
// they are.
func withPeers(t protocol.Txn, call protocol.Call) protocol.Call {
	switch {
	case t.Mode == protocol.ModeTwoPC && call.Op == protocol.OpPrepare:
	case t.Mode == protocol.ModeThreePC && (call.Op == protocol.OpCanCommit || call.Op == protocol.OpPreCommit):
	default:
		return call
	}
	peers := make([]protocol.Peer, 0, len(t.Branches)-1)
	for _, b := range t.Branches {
		if b.ID != call.Branch {
			peers = append(peers, protocol.Peer{Branch: b.ID, URL: b.ForwardURL})
		}
	}
	call.Peers = peers
	return call
}

// maxPeersHeader bounds the Concord-Peers value. Proxies commonly refuse
// header lines past 8 KiB, which would fail every prepare of a large
// transaction; past the bound the header is left out, and a participant
// running a termination protocol then has no peers to ask (it decides as
// without the option).
const maxPeersHeader = 4 << 10

// peersHeader is the Concord-Peers value of call ("" for none).
func peersHeader(call protocol.Call) string {
	if len(call.Peers) == 0 {
		return ""
	}
	peers := make([]participant.Peer, len(call.Peers))
	for i, p := range call.Peers {
		peers[i] = participant.Peer{Branch: p.Branch, URL: p.URL}
	}
	if v := participant.EncodePeers(peers); len(v) <= maxPeersHeader {
		return v
	}
	return ""
}
