package bank

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// coordFlags make retries short and the branch timeout short enough for
// many late landings, with a retry budget no fault pattern of this test
// exhausts: a transaction stuck at the end is a finding, not bad luck.
func coordFlags(branchTimeout time.Duration) []string {
	return []string{
		"-retry-initial", "20ms", "-retry-max", "250ms",
		"-branch-timeout", branchTimeout.String(), "-timeout", "30s",
		"-max-attempts", "1000", "-max-total-attempts", "10000",
		"-max-wait", "5s",
	}
}

// node is one coordinator over its data directory (and, shared, its
// store), restarted on the same data after every kill.
type node struct {
	name string
	dir  string
	args []string

	mu    sync.Mutex
	srv   *proc.Server
	cl    *client.Client // nil while restarting
	lives int
}

// cluster is the coordinators of one run: one on the embedded store, or
// several on one shared store.
type cluster struct {
	t     *testing.T
	opts  []client.Option
	nodes []*node
	kills int // by the test goroutine only
}

// newCluster starts n coordinators, the i-th with args(i); their clients
// are made with opts.
func newCluster(t *testing.T, n int, args func(i int) []string, opts ...client.Option) *cluster {
	c := &cluster{t: t, opts: opts}
	for i := range n {
		nd := &node{name: fmt.Sprintf("coord-%c", 'a'+i), dir: t.TempDir(), args: args(i)}
		c.nodes = append(c.nodes, nd)
		c.start(nd)
	}
	return c
}

func (c *cluster) start(nd *node) {
	srv := proc.StartArmed(c.t, nd.dir, "", nd.args...)
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.srv, nd.cl = srv, client.New(srv.URL, c.opts...)
	nd.lives++
}

// kill9 kills node i with SIGKILL and restarts it on the same data. It
// fails the test if the process had died on its own.
func (c *cluster) kill9(i int) {
	nd := c.nodes[i]
	nd.mu.Lock()
	srv := nd.srv
	nd.cl = nil
	nd.mu.Unlock()
	select {
	case <-srv.Exited():
		c.t.Errorf("coordinator %s died on its own (pid %d):\n%s", nd.name, srv.Pid(), srv.Stderr())
	default:
	}
	srv.Kill()
	c.kills++
	c.start(nd)
}

// client returns the client of a running coordinator, a random one when
// several run, waiting while all restart.
func (c *cluster) client(ctx context.Context) (*client.Client, error) {
	for {
		start := rand.IntN(len(c.nodes))
		for j := range c.nodes {
			nd := c.nodes[(start+j)%len(c.nodes)]
			nd.mu.Lock()
			cl := nd.cl
			nd.mu.Unlock()
			if cl != nil {
				return cl, nil
			}
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// alive fails the test if a coordinator has died on its own.
func (c *cluster) alive() {
	for _, nd := range c.nodes {
		nd.mu.Lock()
		srv := nd.srv
		nd.mu.Unlock()
		select {
		case <-srv.Exited():
			c.t.Fatalf("coordinator %s died on its own (pid %d):\n%s", nd.name, srv.Pid(), srv.Stderr())
		default:
		}
	}
}

// lives counts the coordinator processes started.
func (c *cluster) lives() int {
	n := 0
	for _, nd := range c.nodes {
		nd.mu.Lock()
		n += nd.lives
		nd.mu.Unlock()
	}
	return n
}
