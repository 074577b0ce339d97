package client_test

import (
	"slices"
	"testing"

	"github.com/concordtm/concord/client"
	p "github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/protocol/msg"
	"github.com/concordtm/concord/internal/protocol/saga"
	"github.com/concordtm/concord/internal/protocol/tcc"
	"github.com/concordtm/concord/internal/protocol/threepc"
	"github.com/concordtm/concord/internal/protocol/twopc"
)

// client.Statuses is exactly the set of statuses the coordinator's
// machines can put a transaction in, read from their transition tables,
// so a status added there without a client constant fails here.
func TestStatusesMatchTheMachines(t *testing.T) {
	var server []string
	for _, m := range []*p.Machine{saga.Machine, tcc.Machine, twopc.Machine, threepc.Machine, msg.Machine} {
		for _, tr := range m.Table {
			for _, s := range append(slices.Clone(tr.From), tr.To...) {
				if s != p.StatusNew && !slices.Contains(server, string(s)) {
					server = append(server, string(s))
				}
			}
		}
	}
	slices.Sort(server)
	got := slices.Sorted(slices.Values(client.Statuses))
	if !slices.Equal(got, server) {
		t.Fatalf("client.Statuses = %v\nthe machines use  %v", got, server)
	}
	for _, s := range server {
		if client.Final(s) != p.Status(s).Final() {
			t.Errorf("client.Final(%q) = %v, the coordinator says %v", s, client.Final(s), p.Status(s).Final())
		}
	}
}
