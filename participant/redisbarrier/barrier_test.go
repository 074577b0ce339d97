package redisbarrier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/concordtm/concord/internal/testenv"
	"github.com/concordtm/concord/participant"
)

// TestMain fails the package's tests if a goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a barrier under a prefix of its own on the test Redis, and a
// business function that increments a per-operation counter (its ledger).
type fixture struct {
	rdb    *redis.Client
	br     *Barrier
	prefix string
}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	prefix := testenv.UniqueName(t, "cbt")
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	br, err := New(rdb, append([]Option{WithPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{rdb: rdb, br: br, prefix: prefix}
}

// ledger is the business key counting the committed runs of b's operation.
func (f *fixture) ledger(b participant.Branch) string {
	return f.prefix + ":ledger:{" + b.GID + "}:" + b.BranchID + ":" + string(b.Op)
}

// record is the business function: one INCR, queued with the barrier key.
func (f *fixture) record(b participant.Branch) Func {
	return func(ctx context.Context, _ *redis.Tx, pipe redis.Pipeliner) error {
		pipe.Incr(ctx, f.ledger(b))
		return nil
	}
}

func (f *fixture) do(t *testing.T, b participant.Branch) error {
	return f.br.Do(t.Context(), b, f.record(b))
}

func (f *fixture) runs(t *testing.T, b participant.Branch) int {
	t.Helper()
	n, err := f.rdb.Get(t.Context(), f.ledger(b)).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n
}

// marker returns the value of b's barrier key ("" if absent).
func (f *fixture) marker(t *testing.T, b participant.Branch) string {
	t.Helper()
	v, err := f.rdb.Get(t.Context(), f.br.Key(b.GID, b.BranchID, b.Op)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return v
}

func br(gid, id string, op participant.Op) participant.Branch {
	return participant.Branch{GID: gid, BranchID: id, Op: op, Mode: "saga"}
}

func TestIdempotent(t *testing.T) {
	f := newFixture(t)
	for _, op := range []participant.Op{participant.OpAction, participant.OpCompensate, participant.OpTry, participant.OpConfirm} {
		b := br("g-"+string(op), "b1", op)
		if op == participant.OpCompensate {
			if err := f.do(t, br(b.GID, "b1", participant.OpAction)); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			if err := f.do(t, b); err != nil {
				t.Fatalf("%s: %v", op, err)
			}
		}
		if n := f.runs(t, b); n != 1 {
			t.Errorf("%s delivered 3 times ran %d times, want 1", op, n)
		}
		if m := f.marker(t, b); m != string(op) {
			t.Errorf("%s: marker %q", op, m)
		}
	}
}

func TestNullCompensationAndHanging(t *testing.T) {
	f := newFixture(t)
	for _, pair := range [][2]participant.Op{{participant.OpAction, participant.OpCompensate}, {participant.OpTry, participant.OpCancel}} {
		fwd, back := br("g-"+string(pair[0]), "b1", pair[0]), br("g-"+string(pair[0]), "b1", pair[1])
		if err := f.do(t, back); err != nil { // arrives first: null compensation
			t.Fatal(err)
		}
		if n := f.runs(t, back); n != 0 {
			t.Errorf("null %s ran its business function", back.Op)
		}
		err := f.do(t, fwd) // the delayed forward call: hanging
		if !errors.Is(err, participant.ErrRejected) {
			t.Errorf("late %s: %v, want ErrRejected", fwd.Op, err)
		}
		if n := f.runs(t, fwd); n != 0 {
			t.Errorf("hanging %s ran", fwd.Op)
		}
		if m := f.marker(t, fwd); m != string(back.Op) {
			t.Errorf("forward marker %q, want %q", m, back.Op)
		}
		if err := f.do(t, back); err != nil { // a repeated compensation
			t.Fatal(err)
		}
	}
	// The ordinary order: action then compensation both run, once.
	a, c := br("normal", "b1", participant.OpAction), br("normal", "b1", participant.OpCompensate)
	for _, b := range []participant.Branch{a, c, a, c} {
		err := f.do(t, b)
		if err != nil {
			t.Fatalf("%s: %v", b.Op, err)
		}
	}
	if f.runs(t, a) != 1 || f.runs(t, c) != 1 {
		t.Errorf("action ran %d, compensate %d; want 1 and 1", f.runs(t, a), f.runs(t, c))
	}
}

// TestFnErrorAppliesNothing: fn's error comes back unchanged and neither
// its queued commands nor the barrier key apply; the retry runs fn.
func TestFnErrorAppliesNothing(t *testing.T) {
	f := newFixture(t)
	b := br("fail", "b1", participant.OpAction)
	boom := errors.New("boom")
	err := f.br.Do(t.Context(), b, func(ctx context.Context, _ *redis.Tx, pipe redis.Pipeliner) error {
		pipe.Incr(ctx, f.ledger(b))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Do = %v, want boom", err)
	}
	if f.runs(t, b) != 0 || f.marker(t, b) != "" {
		t.Fatalf("a failed fn left ledger %d, marker %q", f.runs(t, b), f.marker(t, b))
	}
	if err := f.do(t, b); err != nil || f.runs(t, b) != 1 {
		t.Fatalf("retry: %v, runs %d", err, f.runs(t, b))
	}
}

// TestReadsAreWatched is a debit that reads the balance through tx and
// rejects when it is too low. Concurrent debits of distinct branches each
// see a balance no other debit has changed since, so the balance never
// goes negative and exactly the affordable debits apply.
func TestReadsAreWatched(t *testing.T) {
	f := newFixture(t)
	account := f.prefix + ":balance"
	if err := f.rdb.Set(t.Context(), account, 100, 0).Err(); err != nil {
		t.Fatal(err)
	}
	debit := func(ctx context.Context, tx *redis.Tx, pipe redis.Pipeliner) error {
		bal, err := tx.Get(ctx, account).Int()
		if err != nil {
			return err
		}
		if bal < 30 {
			return fmt.Errorf("%w: balance %d", participant.ErrRejected, bal)
		}
		pipe.DecrBy(ctx, account, 30)
		return nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, rejected := 0, 0
	for i := range 8 {
		wg.Go(func() {
			err := f.br.Do(t.Context(), br("debit", strconv.Itoa(i), participant.OpAction), debit, account)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, participant.ErrRejected):
				rejected++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	bal, err := f.rdb.Get(t.Context(), account).Int()
	if err != nil {
		t.Fatal(err)
	}
	if ok != 3 || rejected != 5 || bal != 10 {
		t.Errorf("%d debits applied, %d rejected, balance %d; want 3, 5, 10", ok, rejected, bal)
	}
}

// TestConcurrentDuplicates delivers one operation from many clients at
// once: it runs exactly once, and every delivery reports success.
func TestConcurrentDuplicates(t *testing.T) {
	f := newFixture(t)
	b := br("dup", "b1", participant.OpAction)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if err := f.do(t, b); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.runs(t, b); n != 1 {
		t.Errorf("ran %d times, want 1", n)
	}
}

// TestActionRacesCompensation starts an action and its compensation at
// once, many times: either both run (the action first) or neither (a null
// compensation, then a refused hanging action). Never the action alone.
func TestActionRacesCompensation(t *testing.T) {
	f := newFixture(t)
	both, neither := 0, 0
	for i := range 40 {
		a, c := br(fmt.Sprint("race-", i), "b1", participant.OpAction), br(fmt.Sprint("race-", i), "b1", participant.OpCompensate)
		var wg sync.WaitGroup
		var errA, errC error
		if i%2 == 0 {
			wg.Go(func() { errA = f.do(t, a) })
			wg.Go(func() { errC = f.do(t, c) })
		} else {
			wg.Go(func() { errC = f.do(t, c) })
			wg.Go(func() { errA = f.do(t, a) })
		}
		wg.Wait()
		if errC != nil || (errA != nil && !errors.Is(errA, participant.ErrRejected)) {
			t.Fatalf("round %d: action %v, compensate %v", i, errA, errC)
		}
		switch ra, rc := f.runs(t, a), f.runs(t, c); {
		case ra == 1 && rc == 1 && errA == nil:
			both++
		case ra == 0 && rc == 0 && errA != nil:
			neither++
		default:
			t.Fatalf("round %d: action ran %d (err %v), compensate ran %d", i, ra, errA, rc)
		}
	}
	t.Logf("%d rounds with both, %d null compensations", both, neither)
}

func TestTTL(t *testing.T) {
	f := newFixture(t, WithTTL(time.Hour))
	b := br("ttl", "b1", participant.OpCompensate)
	if err := f.do(t, b); err != nil {
		t.Fatal(err)
	}
	for _, op := range []participant.Op{participant.OpCompensate, participant.OpAction} {
		d, err := f.rdb.TTL(t.Context(), f.br.Key("ttl", "b1", op)).Result()
		if err != nil || d <= 0 || d > time.Hour {
			t.Errorf("%s key TTL %v (%v), want at most 1h", op, d, err)
		}
	}
}

func TestValidation(t *testing.T) {
	f := newFixture(t)
	for _, b := range []participant.Branch{
		{BranchID: "b", Op: participant.OpAction},
		{GID: "g", Op: participant.OpAction},
		{GID: "g", BranchID: "b", Op: "bogus"},
		{GID: "g", BranchID: "b", Op: participant.OpState},
	} {
		if err := f.do(t, b); !errors.Is(err, participant.ErrInvalidBranch) {
			t.Errorf("%+v: %v, want ErrInvalidBranch", b, err)
		}
	}
	for _, p := range []string{"", "a{b", "a}"} {
		if _, err := New(f.rdb, WithPrefix(p)); err == nil {
			t.Errorf("New accepted prefix %q", p)
		}
	}
	if _, err := New(nil); err == nil {
		t.Error("New accepted a nil client")
	}
	// Identifiers that would collide in a naive key layout do not.
	if f.br.Key("a:b", "c", participant.OpAction) == f.br.Key("a", "b:c", participant.OpAction) {
		t.Error("keys collide")
	}
}

// TestCompensationLandsBetweenReadAndExec forces the interleaving the race
// test may not hit: the action's fn runs (its barrier reads done), then the
// compensation completes on another connection before the action's EXEC.
// The watched forward key changed, so the action's EXEC applies nothing,
// Do decides again and refuses the action as hanging.
func TestCompensationLandsBetweenReadAndExec(t *testing.T) {
	f := newFixture(t)
	a, c := br("late", "b1", participant.OpAction), br("late", "b1", participant.OpCompensate)
	calls := 0
	err := f.br.Do(t.Context(), a, func(ctx context.Context, tx *redis.Tx, pipe redis.Pipeliner) error {
		calls++
		if calls == 1 {
			if err := f.do(t, c); err != nil {
				return err
			}
		}
		pipe.Incr(ctx, f.ledger(a))
		return nil
	})
	if !errors.Is(err, participant.ErrRejected) {
		t.Fatalf("action = %v, want ErrRejected", err)
	}
	if f.runs(t, a) != 0 || f.runs(t, c) != 0 || calls != 1 {
		t.Errorf("action ran %d, compensate ran %d, fn called %d; want 0, 0, 1", f.runs(t, a), f.runs(t, c), calls)
	}
}

// TestDuplicateLandsBetweenReadAndExec: a second delivery of the same
// action completes while the first is between its reads and its EXEC; the
// first starts over, finds the key and reports success without running.
func TestDuplicateLandsBetweenReadAndExec(t *testing.T) {
	f := newFixture(t)
	a := br("dup2", "b1", participant.OpAction)
	calls := 0
	err := f.br.Do(t.Context(), a, func(ctx context.Context, tx *redis.Tx, pipe redis.Pipeliner) error {
		calls++
		if calls == 1 {
			if err := f.do(t, a); err != nil {
				return err
			}
		}
		pipe.Incr(ctx, f.ledger(a))
		return nil
	})
	if err != nil || f.runs(t, a) != 1 || calls != 1 {
		t.Errorf("Do = %v, runs %d, fn called %d; want nil, 1, 1", err, f.runs(t, a), calls)
	}
}

// TestQueuedCommandFails documents Redis's missing rollback: a queued
// command that fails when EXEC runs it leaves the others (the barrier key
// included) applied, and Do says so.
func TestQueuedCommandFails(t *testing.T) {
	f := newFixture(t)
	a := br("wrongtype", "b1", participant.OpAction)
	list := f.prefix + ":list"
	if err := f.rdb.RPush(t.Context(), list, "x").Err(); err != nil {
		t.Fatal(err)
	}
	err := f.br.Do(t.Context(), a, func(ctx context.Context, _ *redis.Tx, pipe redis.Pipeliner) error {
		pipe.Incr(ctx, f.ledger(a))
		pipe.Incr(ctx, list) // WRONGTYPE at EXEC time
		return nil
	})
	if err == nil || errors.Is(err, participant.ErrOutcomeUnknown) {
		t.Fatalf("Do = %v, want the WRONGTYPE reply", err)
	}
	if f.runs(t, a) != 1 || f.marker(t, a) != "action" {
		t.Errorf("runs %d, marker %q: the other commands should have applied", f.runs(t, a), f.marker(t, a))
	}
}
