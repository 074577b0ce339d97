package shared

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/concordtm/concord/client"
	"github.com/concordtm/concord/internal/testenv/proc"
)

// TestTopicsSharedAndDurable: on a shared PostgreSQL or Redis, a
// subscription made through one coordinator is seen by the others at once
// and by a coordinator started later, and a message sent through another
// one fans out to it.
func TestTopicsSharedAndDurable(t *testing.T) {
	for name, u := range sharedStores(t) {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			got := map[string]int{} // branch -> deliveries
			consumer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got[r.Header.Get("Concord-Branch")]++
				mu.Unlock()
			}))
			defer consumer.Close()

			args := []string{"-store", u}
			a := proc.Start(t, t.TempDir(), nil, args...)
			b := proc.Start(t, t.TempDir(), nil, args...)
			ca, cb := client.New(a.URL), client.New(b.URL)
			ctx := t.Context()
			for _, s := range []string{"billing", "stock"} {
				if _, created, err := ca.Subscribe(ctx, "orders", s, consumer.URL+"/"+s); err != nil || !created {
					t.Fatalf("Subscribe %s through a: created=%v, %v", s, created, err)
				}
			}
			subs, err := cb.Subscriptions(ctx, "orders")
			if err != nil || len(subs) != 2 {
				t.Fatalf("b sees %d subscriptions (%v), want 2", len(subs), err)
			}
			// The same subscription through b changes nothing.
			if _, created, err := cb.Subscribe(ctx, "orders", "billing", consumer.URL+"/billing"); err != nil || created {
				t.Fatalf("repeated Subscribe through b: created=%v, %v", created, err)
			}
			m := cb.NewMessage("").ToTopic("orders").Payload("o1")
			tx, err := m.SendAndWait(ctx)
			if err != nil || tx.Status != client.StatusSucceeded || len(tx.Branches) != 2 {
				t.Fatalf("message through b: %v, %v", tx, err)
			}
			mu.Lock()
			if got["orders:billing"] != 1 || got["orders:stock"] != 1 {
				t.Errorf("deliveries %v, want one to each subscriber", got)
			}
			mu.Unlock()

			if err := cb.Unsubscribe(ctx, "orders", "stock"); err != nil {
				t.Fatal(err)
			}
			a.Stop()
			b.Stop()
			c := client.New(proc.Start(t, t.TempDir(), nil, args...).URL)
			subs, err = c.Subscriptions(ctx, "")
			if err != nil || len(subs) != 1 || subs[0].Subscriber != "billing" {
				t.Fatalf("a new coordinator sees %v (%v), want only billing", subs, err)
			}
		})
	}
}
