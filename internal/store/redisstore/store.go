package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concordtm/concord/internal/store"
)

// defaultLimit is what List returns at most when ListOptions.Limit <= 0.
const defaultLimit = 100

// unfinishedPage is how many records Unfinished reads per script call.
const unfinishedPage = 256

// schemaVersion is the key layout this build reads and writes.
const schemaVersion = "1"

// Options configures a Store.
type Options struct {
	// Namespace separates stores that share a Redis: every key of a Store
	// starts with "{concord:<Namespace>}:". Empty means "default".
	Namespace string
}

// Store is the Redis store. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	owned  bool
	p      string // key prefix, with the hash tag
	keys   []string
	closed atomic.Bool
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Deleter  = (*Store)(nil)
	_ store.Leaser   = (*Store)(nil)
	_ store.Migrator = (*Store)(nil)
)

// Open connects to the Redis at url ("redis://host:port/db", as
// redis.ParseURL reads it) and checks that it answers PING. An unreachable
// server gives an error wrapping store.ErrUnavailable.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	ropts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstore: bad URL: %w", err)
	}
	rdb := redis.NewClient(ropts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redisstore: Redis at %s is unreachable: %w: %w", ropts.Addr, store.ErrUnavailable, err)
	}
	s := New(rdb, opts)
	s.owned = true
	return s, nil
}

// New returns a Store on rdb (a client, a cluster client or a ring whose
// keys of one hash tag stay together), which the caller keeps and closes
// after the Store.
func New(rdb redis.UniversalClient, opts Options) *Store {
	ns := opts.Namespace
	if ns == "" {
		ns = "default"
	}
	p := "{concord:" + ns + "}:"
	return &Store{rdb: rdb, p: p, keys: []string{p + "c"}}
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// fail wraps err from operation op in what the caller may do about it.
func (s *Store) fail(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("redisstore: %s: %w", op, store.ErrClosed)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, busy := range []string{"LOADING", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "OOM", "MASTERDOWN", "MOVED", "ASK"} {
			if strings.HasPrefix(msg, busy) {
				return fmt.Errorf("redisstore: %s: %w: %w", op, store.ErrUnavailable, err)
			}
		}
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return fmt.Errorf("redisstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

// tsHex is ts as 16 hex digits with the sign bit flipped, so that the byte
// order of the strings is the numeric order.
func tsHex(ts int64) string {
	const digits = "0123456789abcdef"
	u := uint64(ts) ^ (1 << 63)
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[u&15]
		u >>= 4
	}
	return string(b[:])
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Commit runs commitScript: one atomic script that checks every version
// and then writes everything. See the package documentation on durability.
func (s *Store) Commit(ctx context.Context, batch []store.Record) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	args := make([]any, 0, 2+13*len(batch))
	args = append(args, s.p, len(batch))
	for _, r := range batch {
		vmode, expect := "0", ""
		switch {
		case r.Version == 1:
			vmode = "1"
		case r.Version > 1:
			vmode, expect = "n", strconv.FormatInt(r.Version-1, 10)
		}
		data := r.Data
		if data == nil {
			data = []byte{}
		}
		args = append(args, r.GID, vmode, expect, r.Mode, r.Status, boolArg(r.Finished),
			strconv.FormatInt(r.CreatedAt, 10), strconv.FormatInt(r.UpdatedAt, 10), r.Owner,
			strconv.FormatInt(r.Version, 10), data, tsHex(r.CreatedAt)+r.GID, tsHex(r.UpdatedAt)+r.GID)
	}
	res, err := commitScript.Run(ctx, s.rdb, s.keys, args...).StringSlice()
	if err != nil {
		return s.fail("commit", err)
	}
	if len(res) > 0 && res[0] == "conflict" {
		return &store.ConflictError{GIDs: res[1:]}
	}
	return nil
}

// records decodes the flat replies of the scripts: 9 values per record.
func records(vals []any) ([]store.Record, error) {
	if len(vals)%9 != 0 {
		return nil, fmt.Errorf("%w: %d values in a script reply", store.ErrCorrupt, len(vals))
	}
	out := make([]store.Record, 0, len(vals)/9)
	for i := 0; i < len(vals); i += 9 {
		var f [9]string
		for k := range f {
			f[k], _ = vals[i+k].(string)
		}
		r, err := decode(f)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// decode builds a record from gid mode status fin c u owner ver data.
func decode(f [9]string) (store.Record, error) {
	r := store.Record{GID: f[0], Mode: f[1], Status: f[2], Finished: f[3] == "1", Owner: f[6], Data: []byte(f[8])}
	var errs [3]error
	r.CreatedAt, errs[0] = strconv.ParseInt(f[4], 10, 64)
	r.UpdatedAt, errs[1] = strconv.ParseInt(f[5], 10, 64)
	r.Version, errs[2] = strconv.ParseInt(f[7], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return store.Record{}, fmt.Errorf("%w: record %q: %w", store.ErrCorrupt, f[0], err)
	}
	return r, nil
}

// Get reads the record's hash with one HMGET.
func (s *Store) Get(ctx context.Context, gid string) (store.Record, error) {
	if err := s.check(ctx); err != nil {
		return store.Record{}, err
	}
	vals, err := s.rdb.HMGet(ctx, s.p+"r:"+gid, "mode", "status", "fin", "c", "u", "owner", "ver", "data").Result()
	if err != nil {
		return store.Record{}, s.fail("get", err)
	}
	if vals[2] == nil {
		return store.Record{}, fmt.Errorf("redisstore: gid %q: %w", gid, store.ErrNotFound)
	}
	rs, err := records(append([]any{gid}, vals...))
	if err != nil {
		return store.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	return rs[0], nil
}

// List runs listScript on the status index when opts.Status is set, else
// the mode index when opts.Mode is set, else the created index.
func (s *Store) List(ctx context.Context, opts store.ListOptions) ([]store.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	idx := "c"
	switch {
	case opts.Status != "":
		idx = "s:" + opts.Status
	case opts.Mode != "":
		idx = "m:" + opts.Mode
	}
	hi := "+"
	if opts.Before != 0 {
		hi = "(" + tsHex(opts.Before) + opts.BeforeGID
	}
	vals, err := listScript.Run(ctx, s.rdb, s.keys, s.p, idx, hi, opts.GIDPrefix, opts.Status, opts.Mode, limit).Slice()
	if err != nil {
		return nil, s.fail("list", err)
	}
	out, err := records(vals)
	if err != nil {
		return nil, fmt.Errorf("redisstore: list: %w", err)
	}
	return out, nil
}

// Unfinished reads the unfinished set a page at a time, in gid order.
func (s *Store) Unfinished(ctx context.Context, fn func(store.Record) error) error {
	lo := "-"
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		vals, err := unfinishedScript.Run(ctx, s.rdb, s.keys, s.p, lo, unfinishedPage).Slice()
		if err != nil {
			return s.fail("unfinished", err)
		}
		page, err := records(vals)
		if err != nil {
			return fmt.Errorf("redisstore: unfinished: %w", err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < unfinishedPage {
			return nil
		}
		lo = "(" + page[len(page)-1].GID
	}
}

// DeleteFinished deletes up to limit finished records last updated before
// updatedBefore, oldest update first, in one script.
func (s *Store) DeleteFinished(ctx context.Context, updatedBefore int64, limit int) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	n, err := deleteScript.Run(ctx, s.rdb, s.keys, s.p, "("+tsHex(updatedBefore), limit).Int()
	if err != nil {
		return 0, s.fail("delete finished", err)
	}
	return n, nil
}

// Heartbeat sets the instance's lease key to expire after ttl, by Redis's
// clock.
func (s *Store) Heartbeat(ctx context.Context, instance string, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, s.p+"l:"+instance, "1", max(ttl, time.Millisecond)).Err(); err != nil {
		return s.fail("heartbeat", err)
	}
	return nil
}

// Release deletes the instance's lease key.
func (s *Store) Release(ctx context.Context, instance string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.rdb.Del(ctx, s.p+"l:"+instance).Err(); err != nil {
		return s.fail("release", err)
	}
	return nil
}

// Claim runs claimScript, which walks the unfinished set in gid order: a
// claim costs a look at every unfinished record up to the limit-th
// claimable one.
func (s *Store) Claim(ctx context.Context, instance string, limit int) ([]store.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	vals, err := claimScript.Run(ctx, s.rdb, s.keys, s.p, instance, limit).Slice()
	if err != nil {
		return nil, s.fail("claim", err)
	}
	out, err := records(vals)
	if err != nil {
		return nil, fmt.Errorf("redisstore: claim: %w", err)
	}
	return out, nil
}

// Migrate stamps an empty namespace with the key layout version and
// refuses a namespace written with another one. There is nothing else to
// create.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.rdb.SetNX(ctx, s.p+"schema", schemaVersion, 0).Err(); err != nil {
		return s.fail("migrate", err)
	}
	v, err := s.rdb.Get(ctx, s.p+"schema").Result()
	if err != nil {
		return s.fail("migrate", err)
	}
	if v != schemaVersion {
		return fmt.Errorf("redisstore: key layout version %q in %sschema, this build needs %s", v, s.p, schemaVersion)
	}
	return nil
}

// HasSchema reports whether the namespace carries a key layout stamp.
func (s *Store) HasSchema(ctx context.Context) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	n, err := s.rdb.Exists(ctx, s.p+"schema").Result()
	if err != nil {
		return false, s.fail("schema", err)
	}
	return n > 0, nil
}

// Drop deletes every key of the namespace (SCAN and DEL; on a single
// server). Tests use it to clean up.
func (s *Store) Drop(ctx context.Context) error {
	iter := s.rdb.Scan(ctx, 0, strings.NewReplacer("{", `\{`, "}", `\}`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s.p)+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return s.fail("drop", err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := s.rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			return s.fail("drop", err)
		}
		keys = keys[n:]
	}
	return nil
}

// Close closes the client if Open made it. Later calls fail with
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return store.ErrClosed
	}
	if s.owned {
		return s.rdb.Close()
	}
	return nil
}

// CheckURL reports whether url is one Open accepts, without connecting.
func CheckURL(url string) error {
	_, err := redis.ParseURL(url)
	return err
}
