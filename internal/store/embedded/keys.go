package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/concordtm/concord/internal/store"
)

// The key space is flat and shared by both engines; the first byte of a key
// says what it holds. ts is an int64 stored big-endian with the sign bit
// flipped, so byte order is numeric order; str is a uvarint length followed
// by the bytes, so a string prefix never runs into the next field.
//
//	'V'                      -> schema version (one byte)
//	'z' gid                  -> record value (see encodeRecord)
//	'c' ts(CreatedAt) gid    -> meta: every record, for List without filters
//	's' str(Status) ts gid   -> meta: List filtered by Status
//	'm' str(Mode) ts gid     -> meta: List filtered by Mode
//	'u' gid                  -> empty: the unfinished set
//	'f' ts(UpdatedAt) gid    -> empty: finished records, oldest update first
//	'k' key                  -> a store.Meta entry (see meta.go)
//
// meta is str(Status) str(Mode), enough to apply every List filter without
// reading the record.
//
// Records sort after every other kind, and must stay last. Gids are
// time-ordered (minted by the SDK or the server), so a new record's key is
// greater than every key of the files already on disk: Pebble rules those
// files out by their bounds and the existence check of a new gid (Get of an
// absent key) touches only the memtables. With records in the middle of the
// key space, every file spanned them and each lookup opened an iterator per
// file: 8-9 % of the coordinator's CPU under TCC load (docs/performance.md).
// Schema version 1 kept records under 'r'; Open moves them (migrateV1).
const (
	kindVersion  = 'V'
	kindRecord   = 'z'
	kindRecordV1 = 'r' // schema version 1 only
	kindCreated  = 'c'
	kindStatus   = 's'
	kindMode     = 'm'
	kindLive     = 'u'
	kindFinished = 'f'
)

// schemaVersion is stored under the 'V' key. Open upgrades version 1 and
// refuses any other.
const schemaVersion = 2

// Record value formats, the first byte of every record value. A record
// with no Owner and Version 0 (a single coordinator) is written in the
// shorter recordV1, so stores written before fencing existed read as they
// were and the default path writes the same bytes as before.
const (
	recordV1 = 1
	recordV2 = 2 // recordV1 plus str(Owner) varint(Version) before Data
)

// flagFinished is set in the flags byte of a finished record.
const flagFinished = 1

var versionKey = []byte{kindVersion}

// errDecode is wrapped, with store.ErrCorrupt, by every decoding failure.
var errDecode = errors.New("embedded: malformed bytes")

func corrupt(what string, b []byte) error {
	return fmt.Errorf("%w: %w: %s %x", store.ErrCorrupt, errDecode, what, truncate(b))
}

// truncate keeps error messages short when b is large.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func appendTS(b []byte, ts int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(ts)^(1<<63))
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readStr decodes a str at the front of b and returns the rest.
func readStr(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

func recordKey(gid string) []byte {
	return append([]byte{kindRecord}, gid...)
}

func liveKey(gid string) []byte {
	return append([]byte{kindLive}, gid...)
}

func finishedKey(updated int64, gid string) []byte {
	return append(appendTS([]byte{kindFinished}, updated), gid...)
}

// listPrefix is the key prefix of the List index for status or mode (at
// most one set), or of the created index when both are empty.
func listPrefix(status, mode string) []byte {
	switch {
	case status != "":
		return appendStr([]byte{kindStatus}, status)
	case mode != "":
		return appendStr([]byte{kindMode}, mode)
	}
	return []byte{kindCreated}
}

// listKey is the List index key of a record under prefix.
func listKey(prefix []byte, created int64, gid string) []byte {
	k := make([]byte, 0, len(prefix)+8+len(gid))
	return append(appendTS(append(k, prefix...), created), gid...)
}

// decodeListKey splits a List index key, whose prefix is prefixLen bytes
// long, into CreatedAt and gid. It also decodes 'f' keys.
func decodeListKey(k []byte, prefixLen int) (ts int64, gid string, err error) {
	if prefixLen < 0 || prefixLen > len(k) || len(k)-prefixLen < 8 {
		return 0, "", corrupt("index key", k)
	}
	ts = int64(binary.BigEndian.Uint64(k[prefixLen:]) ^ (1 << 63))
	return ts, string(k[prefixLen+8:]), nil
}

func encodeMeta(status, mode string) []byte {
	return appendStr(appendStr(make([]byte, 0, 2+len(status)+len(mode)), status), mode)
}

func decodeMeta(v []byte) (status, mode string, err error) {
	status, rest, ok := readStr(v)
	if !ok {
		return "", "", corrupt("index meta", v)
	}
	mode, rest, ok = readStr(rest)
	if !ok || len(rest) != 0 {
		return "", "", corrupt("index meta", v)
	}
	return status, mode, nil
}

// encodeRecord encodes every field but GID, which is in the key:
//
//	1 flags(1) varint(CreatedAt) varint(UpdatedAt) str(Mode) str(Status) Data
//	2 flags(1) varint(CreatedAt) varint(UpdatedAt) str(Mode) str(Status) str(Owner) varint(Version) Data
//
// The first form is used when Owner is empty and Version is 0.
func encodeRecord(r store.Record) []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+6+len(r.Mode)+len(r.Status)+len(r.Owner)+len(r.Data))
	var flags byte
	if r.Finished {
		flags |= flagFinished
	}
	format := byte(recordV1)
	if r.Owner != "" || r.Version != 0 {
		format = recordV2
	}
	b = append(b, format, flags)
	b = binary.AppendVarint(b, r.CreatedAt)
	b = binary.AppendVarint(b, r.UpdatedAt)
	b = appendStr(b, r.Mode)
	b = appendStr(b, r.Status)
	if format == recordV2 {
		b = appendStr(b, r.Owner)
		b = binary.AppendVarint(b, r.Version)
	}
	return append(b, r.Data...)
}

// decodeRecord decodes a record value. The returned Data is a copy when
// copyData is set and aliases v otherwise.
func decodeRecord(gid string, v []byte, copyData bool) (store.Record, error) {
	r := store.Record{GID: gid}
	if len(v) < 2 || v[0] != recordV1 && v[0] != recordV2 || v[1]&^flagFinished != 0 {
		return r, corrupt("record "+gid, v)
	}
	r.Finished = v[1]&flagFinished != 0
	rest := v[2:]
	var w int
	if r.CreatedAt, w = binary.Varint(rest); w <= 0 {
		return r, corrupt("record "+gid, v)
	}
	rest = rest[w:]
	if r.UpdatedAt, w = binary.Varint(rest); w <= 0 {
		return r, corrupt("record "+gid, v)
	}
	rest = rest[w:]
	var ok bool
	if r.Mode, rest, ok = readStr(rest); !ok {
		return r, corrupt("record "+gid, v)
	}
	if r.Status, rest, ok = readStr(rest); !ok {
		return r, corrupt("record "+gid, v)
	}
	if v[0] == recordV2 {
		if r.Owner, rest, ok = readStr(rest); !ok {
			return r, corrupt("record "+gid, v)
		}
		if r.Version, w = binary.Varint(rest); w <= 0 {
			return r, corrupt("record "+gid, v)
		}
		rest = rest[w:]
	}
	if copyData {
		r.Data = append([]byte(nil), rest...)
	} else {
		r.Data = rest
	}
	return r, nil
}

// indexKeys lists the keys, other than the record key, that r is indexed
// under, with their values.
func indexKeys(r store.Record) []keyValue {
	meta := encodeMeta(r.Status, r.Mode)
	kvs := make([]keyValue, 1, 4)
	kvs[0] = keyValue{listKey(listPrefix("", ""), r.CreatedAt, r.GID), meta}
	// An empty Status or Mode is never a filter, so it needs no index.
	if r.Status != "" {
		kvs = append(kvs, keyValue{listKey(listPrefix(r.Status, ""), r.CreatedAt, r.GID), meta})
	}
	if r.Mode != "" {
		kvs = append(kvs, keyValue{listKey(listPrefix("", r.Mode), r.CreatedAt, r.GID), meta})
	}
	if r.Finished {
		kvs = append(kvs, keyValue{finishedKey(r.UpdatedAt, r.GID), nil})
	} else {
		kvs = append(kvs, keyValue{liveKey(r.GID), nil})
	}
	return kvs
}

type keyValue struct {
	key, value []byte
}
