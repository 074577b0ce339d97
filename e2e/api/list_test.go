package api

import (
	"fmt"
	"slices"
	"testing"

	"github.com/concordtm/concord/client"
)

func TestListPaging(t *testing.T) {
	t.Parallel()
	srv := serve(t)
	c := client.New(srv.URL)
	p := newRecorder(t)
	prefix := newGID("page") + "-"

	var created []string // oldest first
	submit := func(i int) {
		gid := fmt.Sprintf("%s%02d", prefix, i)
		if _, err := c.NewSaga(gid).Add(p.url("/a"), p.url("/a/undo"), nil).Submit(t.Context()); err != nil {
			t.Fatal(err)
		}
		created = append(created, gid)
	}
	for i := range 7 {
		submit(i)
	}
	// Noise outside the prefix must not show up.
	if _, err := c.NewSaga(newGID("other")).Add(p.url("/a"), p.url("/a/undo"), nil).Submit(t.Context()); err != nil {
		t.Fatal(err)
	}

	var seen []string
	var sizes []int
	token := ""
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatalf("still paging after %d pages: %v", page, seen)
		}
		txs, next, err := c.List(t.Context(), client.ListOptions{GIDPrefix: prefix, Limit: 3, PageToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		sizes = append(sizes, len(txs))
		for _, tx := range txs {
			seen = append(seen, tx.GID)
		}
		if page == 0 {
			// One created after paging began is newer than the cursor:
			// later pages must neither show it nor skip an older one.
			submit(7)
		}
		if next == "" {
			break
		}
		token = next
	}
	want := slices.Clone(created[:7])
	slices.Reverse(want) // newest first
	if !slices.Equal(seen, want) {
		t.Errorf("paged through %v, want each of the 7 once, newest first: %v", seen, want)
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("page sizes %v, want [3 3 1]", sizes)
	}

	all, next, err := c.List(t.Context(), client.ListOptions{GIDPrefix: prefix, Limit: 100})
	if err != nil || len(all) != 8 || next != "" {
		t.Errorf("one big page: %d transactions, next %q, err %v; want 8 and no next page", len(all), next, err)
	}
	for _, gid := range created {
		wait(t, c, gid)
	}
	done, _, err := c.List(t.Context(), client.ListOptions{GIDPrefix: prefix, Status: client.StatusSucceeded, Mode: "saga", Limit: 100})
	if err != nil || len(done) != 8 {
		t.Errorf("succeeded sagas under the prefix: %d, %v; want 8", len(done), err)
	}
	none, _, err := c.List(t.Context(), client.ListOptions{GIDPrefix: prefix, Mode: "tcc"})
	if err != nil || len(none) != 0 {
		t.Errorf("TCC transactions under a saga-only prefix: %d, %v", len(none), err)
	}
}
