package xa

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/concordtm/concord/participant"
)

func TestHandler(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		// The payload is the amount; a negative one is refused, zero is a
		// read-only branch.
		h := Handler(f.db, f.d, func(ctx context.Context, b participant.Branch, payload []byte, conn *sql.Conn) error {
			v, err := strconv.Atoi(string(payload))
			switch {
			case err != nil:
				return err
			case v < 0:
				return participant.Reject("negative amount %d", v)
			case v == 0:
				return participant.ErrReadOnly
			}
			_, err = conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (1, %d)", f.table, v))
			return err
		})
		call := func(b participant.Branch, op participant.Op, payload string) *httptest.ResponseRecorder {
			req := httptest.NewRequestWithContext(f.ctx, http.MethodPost, "/xa", strings.NewReader(payload))
			if b.GID != "" {
				b.Op = op
				b.SetHeaders(req.Header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec
		}
		expect := func(rec *httptest.ResponseRecorder, code int, what string) {
			t.Helper()
			if rec.Code != code {
				t.Fatalf("%s: %d %q, want %d", what, rec.Code, rec.Body.String(), code)
			}
		}

		yes := f.branch("yes")
		expect(call(yes, participant.OpPrepare, "10"), 200, "prepare")
		expect(call(yes, participant.OpPrepare, "10"), 200, "repeated prepare")
		expect(call(yes, participant.OpCommit, ""), 200, "commit")
		expect(call(yes, participant.OpCommit, ""), 200, "repeated commit")
		if n := f.rows(f.db); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}

		no := f.branch("no")
		expect(call(no, participant.OpPrepare, "-1"), 409, "rejected prepare")
		expect(call(no, participant.OpAbort, ""), 200, "abort")
		expect(call(no, participant.OpCommit, ""), 500, "commit of an aborted branch")

		ro := f.branch("ro")
		rec := call(ro, participant.OpPrepare, "0")
		expect(rec, 200, "read-only prepare")
		if v := rec.Header().Get(participant.HeaderVote); v != "read-only" {
			t.Fatalf("read-only vote header %q", v)
		}
		if f.prepared(ro) {
			t.Fatal("a read-only branch stayed prepared")
		}

		late := f.branch("late")
		expect(call(late, participant.OpAbort, ""), 200, "null abort")
		expect(call(late, participant.OpPrepare, "5"), 409, "late prepare")

		expect(call(participant.Branch{}, participant.OpPrepare, "1"), 400, "no headers")
		expect(call(f.branch("saga"), participant.OpAction, "1"), 400, "saga operation")
		expect(call(participant.Branch{GID: strings.Repeat("g", 200), BranchID: "b"}, participant.OpCommit, ""), 400, "gid too long")
	})
}

func TestHandlerThreePC(t *testing.T) {
	forEach(t, func(t *testing.T, f *fixture) {
		h := Handler(f.db, f.d, func(ctx context.Context, b participant.Branch, payload []byte, conn *sql.Conn) error {
			v, err := strconv.Atoi(string(payload))
			switch {
			case err != nil:
				return err
			case v < 0:
				return participant.Reject("negative amount %d", v)
			case v == 0:
				return participant.ErrReadOnly
			}
			_, err = conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, %d)", f.table, v, v))
			return err
		})
		call := func(b participant.Branch, op participant.Op, payload string, code int) {
			t.Helper()
			req := httptest.NewRequestWithContext(f.ctx, http.MethodPost, "/xa", strings.NewReader(payload))
			b.Op, b.Mode = op, "3pc"
			b.SetHeaders(req.Header)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != code {
				t.Fatalf("%s of %s: %d %q, want %d", op, b.BranchID, rec.Code, rec.Body.String(), code)
			}
		}

		yes := f.branch("yes")
		call(yes, participant.OpCanCommit, "7", 200)
		if f.prepared(yes) {
			t.Fatal("can-commit prepared the branch")
		}
		call(yes, participant.OpPreCommit, "7", 200)
		if !f.prepared(yes) {
			t.Fatal("pre-commit did not prepare the branch")
		}
		call(yes, participant.OpDoCommit, "7", 200)
		call(yes, participant.OpDoCommit, "7", 200)
		if n := f.rows(f.db); n != 1 {
			t.Fatalf("%d rows after do-commit, want 1", n)
		}

		no := f.branch("no")
		call(no, participant.OpPreCommit, "-1", 409)
		call(no, participant.OpAbort, "", 200)

		undone := f.branch("undone")
		call(undone, participant.OpPreCommit, "8", 200)
		call(undone, participant.OpAbort, "", 200)
		call(undone, participant.OpDoCommit, "", 500)
		if n := f.rows(f.db); n != 1 {
			t.Fatalf("%d rows after an abort, want 1", n)
		}

		call(f.branch("ro"), participant.OpPreCommit, "0", 500)

		// The decision timeout: a pre-committed branch that hears nothing
		// commits when the Resolver finds it old enough.
		left := f.branch("left")
		call(left, participant.OpPreCommit, "9", 200)
		if _, err := ThreePCTimeouts(f.db, f.d, 0, nil); err == nil {
			t.Fatal("ThreePCTimeouts without Match: no error")
		}
		r, err := ThreePCTimeouts(f.db, f.d, 0, func(p Prepared) bool { return p.GID == left.GID })
		if err != nil {
			t.Fatal(err)
		}
		rep, err := r.ResolveOnce(f.ctx)
		if err != nil || rep.Committed != 1 {
			t.Fatalf("timeout scan: %+v, %v; want one commit", rep, err)
		}
		call(left, participant.OpDoCommit, "", 200) // the coordinator agrees later
		if n := f.rows(f.db); n != 2 {
			t.Fatalf("%d rows after the timeout commit, want 2", n)
		}
	})
}
