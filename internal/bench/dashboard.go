package bench

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/concordtm/concord/client"
)

// dashboardPoller loads the coordinator as an open dashboard and a
// Prometheus scraper do, to measure what they cost: every 2 seconds (the
// dashboard's refresh) a ListTransactions of the newest 200 (its list page)
// and a GET /metrics (Prometheus usually scrapes every 15 to 60 seconds).
const (
	dashboardRefresh = 2 * time.Second // POLL_MS in internal/dashboard/static/app.js
	dashboardPage    = 200             // LIST_LIMIT there
)

type dashboardPoller struct {
	polls, errors atomic.Int64
}

func (d *dashboardPoller) run(ctx context.Context, c *client.Client, base string) {
	tick := time.NewTicker(dashboardRefresh)
	defer tick.Stop()
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, _, err := c.List(ctx, client.ListOptions{Limit: dashboardPage}); err != nil && ctx.Err() == nil {
			d.errors.Add(1)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				d.errors.Add(1)
			}
		} else if ctx.Err() == nil {
			d.errors.Add(1)
		}
		d.polls.Add(1)
	}
}
