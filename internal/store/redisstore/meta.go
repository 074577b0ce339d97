package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/concordtm/concord/internal/store"
)

var _ store.Meta = (*Store)(nil)

// Metadata entries (store.Meta) are a hash per key and one index:
//
//	P k:<key>  hash: ver val
//	P k        zset, all scores 0: member <key>, every entry (ListMeta walks
//	           it with ZRANGEBYLEX, which compares bytewise)
//
// Each write is one script on KEYS[1] = P.."k", KEYS[2] = P.."k:"..key
// (same hash tag, same slot), so the version check and the write are atomic.

// putMetaScript: ARGV = key, value, expected (-1: any). Returns {version}
// or {-1, stored version} on a mismatch.
var putMetaScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[2], 'ver') or '0')
local exp = tonumber(ARGV[3])
if exp ~= -1 and exp ~= cur then
  return {-1, cur}
end
redis.call('HSET', KEYS[2], 'ver', cur + 1, 'val', ARGV[2])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return {cur + 1}
`)

// deleteMetaScript: ARGV = key, expected (-1: any). Returns 1 when
// deleted, 0 when absent, or {-1, stored version} on a mismatch.
var deleteMetaScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[2], 'ver') or '0')
if cur == 0 then
  return 0
end
local exp = tonumber(ARGV[2])
if exp ~= -1 and exp ~= cur then
  return {-1, cur}
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`)

// listMetaScript: ARGV = min, max for ZRANGEBYLEX, the hash prefix.
// Returns key, ver, val for every entry, from one snapshot.
var listMetaScript = redis.NewScript(`
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2])
local out = {}
for _, k in ipairs(keys) do
  local h = redis.call('HMGET', ARGV[3] .. k, 'ver', 'val')
  if h[1] then
    out[#out + 1] = k
    out[#out + 1] = h[1]
    out[#out + 1] = h[2]
  end
end
return out
`)

func (s *Store) metaKeys(key string) []string {
	return []string{s.p + "k", s.p + "k:" + key}
}

// GetMeta returns the entry for key.
func (s *Store) GetMeta(ctx context.Context, key string) (store.MetaEntry, error) {
	if err := s.check(ctx); err != nil {
		return store.MetaEntry{}, err
	}
	vals, err := s.rdb.HMGet(ctx, s.p+"k:"+key, "ver", "val").Result()
	if err != nil {
		return store.MetaEntry{}, s.fail("get metadata", err)
	}
	if vals[0] == nil {
		return store.MetaEntry{}, fmt.Errorf("redisstore: metadata %q: %w", key, store.ErrNotFound)
	}
	ver, _ := vals[0].(string)
	val, _ := vals[1].(string)
	return entry(key, ver, val)
}

func entry(key, ver, val string) (store.MetaEntry, error) {
	v, err := strconv.ParseInt(ver, 10, 64)
	if err != nil || v < 1 {
		return store.MetaEntry{}, fmt.Errorf("%w: metadata %q: version %q", store.ErrCorrupt, key, ver)
	}
	return store.MetaEntry{Key: key, Version: v, Value: []byte(val)}, nil
}

// PutMeta writes key if its stored version is expected, in one script.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	if err := store.CheckMeta(key, value); err != nil {
		return 0, err
	}
	if expected < store.MetaAny {
		return 0, fmt.Errorf("%w: expected version %d", store.ErrInvalidMeta, expected)
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	res, err := putMetaScript.Run(ctx, s.rdb, s.metaKeys(key), key, value, expected).Int64Slice()
	if err != nil {
		return 0, s.fail("put metadata", err)
	}
	if len(res) == 2 && res[0] == -1 {
		return 0, store.MetaConflict(key, expected, res[1])
	}
	if len(res) != 1 {
		return 0, fmt.Errorf("redisstore: put metadata: unexpected reply %v", res)
	}
	return res[0], nil
}

// DeleteMeta removes key if its stored version is expected, in one script.
func (s *Store) DeleteMeta(ctx context.Context, key string, expected int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	res, err := deleteMetaScript.Run(ctx, s.rdb, s.metaKeys(key), key, expected).Result()
	if err != nil {
		return s.fail("delete metadata", err)
	}
	switch r := res.(type) {
	case int64:
		if r == 0 {
			return fmt.Errorf("redisstore: metadata %q: %w", key, store.ErrNotFound)
		}
		return nil
	case []any:
		if len(r) == 2 {
			if stored, ok := r[1].(int64); ok {
				return store.MetaConflict(key, expected, stored)
			}
		}
	}
	return fmt.Errorf("redisstore: delete metadata: unexpected reply %v", res)
}

// ListMeta walks the index from prefix to the prefix's successor.
func (s *Store) ListMeta(ctx context.Context, prefix string) ([]store.MetaEntry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	lo, hi := "-", "+"
	if prefix != "" {
		lo = "[" + prefix
		if succ := store.PrefixEnd([]byte(prefix)); succ != nil {
			hi = "(" + string(succ)
		}
	}
	vals, err := listMetaScript.Run(ctx, s.rdb, []string{s.p + "k"}, lo, hi, s.p+"k:").StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.fail("list metadata", err)
	}
	if len(vals)%3 != 0 {
		return nil, fmt.Errorf("redisstore: list metadata: %d values, not triples", len(vals))
	}
	var out []store.MetaEntry
	for i := 0; i < len(vals); i += 3 {
		e, err := entry(vals[i], vals[i+1], vals[i+2])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
