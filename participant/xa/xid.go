package xa

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// MaxXIDLen is the length bound of every XID this package makes: MySQL's
// limit for a gtrid (64 bytes). PostgreSQL's (199 bytes) is looser.
const MaxXIDLen = 64

// The two forms of XID. Both prefixes are three bytes, and they differ in
// their last byte, so no plain XID equals a hashed one.
const (
	plainPrefix  = "cx/"
	hashedPrefix = "cx#"
	hashHexLen   = 40 // 160 bits of SHA-256
)

// XID returns the transaction name the branch (gid, branchID) uses in the
// database: the gtrid of MySQL's XA statements (formatID 1, empty bqual),
// the transaction id of PostgreSQL's PREPARE TRANSACTION.
//
// The mapping is deterministic, so that every delivery of a branch's
// operations (retries included, from any process) names the same prepared
// transaction. It has two forms:
//
//   - Plain, "cx/" + gid + "/" + branchID, when both ids are made of the
//     coordinator's id alphabet (letters, digits and . _ : -) and the result
//     is at most MaxXIDLen bytes. The ids never contain '/', so the plain
//     form is reversible: ParseXID decodes it.
//   - Hashed otherwise, "cx#" + readable + "/" + hash, where hash is 40 hex
//     digits of SHA-256 over the length-prefixed pair (uvarint len(gid),
//     gid, branchID) and readable is the gid's first alphabet characters
//     (at most 20), for people reading lists of prepared transactions. Two
//     different pairs get the same hashed XID only through a 160-bit hash
//     collision. Prepare records the pair of a hashed XID in a table so that
//     Recover can report it.
//
// Every XID consists of ASCII letters, digits and . _ : - / #, so it is
// safe inside a quoted SQL literal of either database.
func XID(gid, branchID string) string {
	if gid != "" && branchID != "" && plainID(gid) && plainID(branchID) &&
		len(plainPrefix)+len(gid)+1+len(branchID) <= MaxXIDLen {
		return plainPrefix + gid + "/" + branchID
	}
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(gid)))])
	h.Write([]byte(gid))
	h.Write([]byte(branchID))
	sum := hex.EncodeToString(h.Sum(nil))[:hashHexLen]

	room := MaxXIDLen - len(hashedPrefix) - 1 - hashHexLen
	var readable strings.Builder
	for i := 0; i < len(gid) && readable.Len() < room; i++ {
		if idByte(gid[i]) {
			readable.WriteByte(gid[i])
		}
	}
	return hashedPrefix + readable.String() + "/" + sum
}

// ParseXID decodes a plain XID into its gid and branch id. It reports false
// for a hashed XID (whose pair only the database knows) and for any string
// XID did not produce.
func ParseXID(xid string) (gid, branchID string, ok bool) {
	rest, found := strings.CutPrefix(xid, plainPrefix)
	if !found {
		return "", "", false
	}
	gid, branchID, found = strings.Cut(rest, "/")
	if !found || XID(gid, branchID) != xid {
		return "", "", false
	}
	return gid, branchID, true
}

// ours reports whether xid has the shape of an XID this package makes.
func ours(xid string) bool {
	return len(xid) <= MaxXIDLen && (strings.HasPrefix(xid, plainPrefix) || strings.HasPrefix(xid, hashedPrefix))
}

// hashed reports whether xid is in the hashed form.
func hashed(xid string) bool { return strings.HasPrefix(xid, hashedPrefix) }

// plainID reports whether id is made of the coordinator's id alphabet.
func plainID(id string) bool {
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return false
		}
	}
	return true
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '-'
}
