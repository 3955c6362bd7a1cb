package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// Datastore layout. Heights are fixed-width hex so that key order is height
// order on ordered backends.
const (
	nsHist    = "/kairos/h/"  // <escaped version>/<escaped leaf hash> → the value the version replaced
	nsNode    = "/kairos/n/"  // <escaped born>/<escaped id> → node record
	nsKV      = "/kairos/kv/" // <escaped module>/k<escaped key> → latest value
	nsRoot    = "/kairos/r/"  // <height> → root slot
	nsChanges = "/kairos/c/"  // <height> → change set
	nsStale   = "/kairos/s/"  // <stale_since> → list of (born, id)
	nsPin     = "/kairos/pin/"
	nsModule  = "/kairos/m/" // <id> → module address (module table)
)

var (
	keyLatest    = ds.NewKey("/kairos/latest")    // uvarint height of the last durable commit
	keyMin       = ds.NewKey("/kairos/min")       // uvarint lowest readable version
	keyPruneDone = ds.NewKey("/kairos/prunedone") // uvarint: stale entries with since <= it are processed
	keyFormat    = ds.NewKey("/kairos/format")    // uvarint storeFormat
)

// storeFormat is the on-disk format version. Format 1 (no format record)
// named node records by hash alone; format 2 names them by (born, hash) and
// kept every leaf's value in a value record; format 3 keeps a live value
// only in the flat index and a replaced one in a history record; format 4
// names a leaf's module in a node record by a store-local id (modules.go)
// instead of its 32-byte address. Open refuses any other format with
// ErrFormat: there is no migration.
const storeFormat = 4

// Key bytes (node ids, modules, state keys) go into datastore keys raw, with
// two escapes so that no '/' appears inside a segment: '.' becomes ".\x01"
// and '/' becomes ".\x02". Both sequences sort between '-' and '0', so the
// encoding keeps byte order (the flat index is read in key order), and a
// segment is never "." or "..", which go-datastore would clean away. It costs
// about one byte per byte, where hex cost two and base32 of a multihash 1.7:
// shorter keys are fewer bytes written, compared and stored per update.
const (
	escByte  = '.'
	escDot   = 0x01
	escSlash = 0x02
)

func appendEscaped(dst, src []byte) []byte {
	for _, c := range src {
		switch c {
		case '.':
			dst = append(dst, escByte, escDot)
		case '/':
			dst = append(dst, escByte, escSlash)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// unescape decodes s up to its end (n < 0) or until n bytes are decoded,
// and returns the bytes and the undecoded rest.
func unescape(s string, n int) ([]byte, string, bool) {
	out := make([]byte, 0, max(n, len(s)))
	i := 0
	for ; i < len(s) && len(out) != n; i++ {
		c := s[i]
		switch c {
		case '/':
			return nil, "", false
		case escByte:
			if i+1 == len(s) {
				return nil, "", false
			}
			i++
			switch s[i] {
			case escDot:
				c = '.'
			case escSlash:
				c = '/'
			default:
				return nil, "", false
			}
		}
		out = append(out, c)
	}
	if n >= 0 && len(out) != n {
		return nil, "", false
	}
	return out, s[i:], true
}

// keyBytes returns the bytes of k without copying them, for pebble calls
// that only read the key (a batch copies it into its own buffer, a Get only
// compares it). The bytes must not be changed.
func keyBytes(k ds.Key) []byte {
	s := k.String()
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// nodeRef names a stored node record: the version that wrote it
// (its born) and its content hash. The born goes first in the datastore
// key, so every version's records sort after all older ones (see
// RATIONALE.md, "Why are node records keyed by born version first?").
type nodeRef struct {
	born uint64
	id   types.Hash
}

// nodeKeyLen is the longest node key: the namespace, the born, '/' and
// the id, born and id escaped.
const nodeKeyLen = len(nsNode) + 2*(8+types.HashLen) + 1

// nodeKey names a stored node record: nsNode, the born as 8
// big-endian bytes, '/', then the id; born and id are escaped like every raw
// segment. The '/' makes the born a segment of its own, so a datastore
// query by prefix finds one version's records (nodeVersionPrefix).
func nodeKey(born uint64, id types.Hash) ds.Key {
	// Built on the stack; the string conversion is the one allocation.
	var a [nodeKeyLen]byte
	return ds.RawKey(string(appendNodeKey(a[:0], born, id)))
}

// appendNodeKey appends the bytes of nodeKey(born, id) to dst.
func appendNodeKey(dst []byte, born uint64, id types.Hash) []byte {
	return appendEscaped(append(appendBorn(append(dst, nsNode...), born), '/'), id[:])
}

func appendBorn(dst []byte, born uint64) []byte {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], born)
	return appendEscaped(dst, v[:])
}

// nodeVersionPrefix is the query prefix of every record written by
// version born: the records a torn commit of it may have left.
func nodeVersionPrefix(born uint64) string {
	return string(appendBorn([]byte(nsNode), born))
}

// parseNodeKey is the inverse of nodeKey, given the part after nsNode.
func parseNodeKey(s string) (nodeRef, error) {
	v, rest, ok := unescape(s, 8)
	var id []byte
	if ok {
		rest, ok = strings.CutPrefix(rest, "/")
	}
	if ok {
		id, rest, ok = unescape(rest, types.HashLen)
	}
	if !ok || rest != "" {
		return nodeRef{}, fmt.Errorf("%w: bad node key %q", ErrCorrupt, s)
	}
	return nodeRef{born: binary.BigEndian.Uint64(v), id: types.Hash(id)}, nil
}

// histKeyLen is the longest history key: the namespace, the version, '/'
// and the leaf hash, version and hash escaped.
const histKeyLen = len(nsHist) + 2*(8+types.HashLen) + 1

// appendHistKey appends the key of the history record that version d
// wrote for leaf l, which d replaced or deleted: nsHist, d as 8 big-endian
// bytes escaped, '/', then l escaped. Escaping keeps byte order and is
// prefix-free, so one version's records are one key range
// (histVersionRange) and sort by leaf hash.
func appendHistKey(dst []byte, d uint64, l types.Hash) []byte {
	return appendEscaped(append(appendBorn(append(dst, nsHist...), d), '/'), l[:])
}

// histKey is appendHistKey as a datastore key.
func histKey(d uint64, l types.Hash) ds.Key {
	var a [histKeyLen]byte
	return ds.RawKey(string(appendHistKey(a[:0], d, l)))
}

// histVersionPrefix is the prefix of every history record of version d.
func histVersionPrefix(d uint64) string {
	return string(append(appendBorn([]byte(nsHist), d), '/'))
}

// histVersionRange returns the key range [start, end) of version d's
// history records.
func histVersionRange(d uint64) (start, end []byte) {
	start = []byte(histVersionPrefix(d))
	end = bytes.Clone(start)
	end[len(end)-1] = '/' + 1
	return start, end
}

// parseHistKey is the inverse of appendHistKey, given the part after
// nsHist.
func parseHistKey(s string) (uint64, types.Hash, error) {
	r, err := parseNodeKey(s) // the same layout under another namespace
	if err != nil {
		return 0, types.Hash{}, fmt.Errorf("%w: bad history key %q", ErrCorrupt, s)
	}
	return r.born, r.id, nil
}

func heightStr(h uint64) string { return fmt.Sprintf("%016x", h) }

func kvModulePrefix(m types.Address) string {
	return string(appendKVModule(nil, m))
}

// appendKVModule appends the flat index's path of module m: the namespace
// and the escaped module (kvKey adds "/k" and the escaped key).
func appendKVModule(dst []byte, m types.Address) []byte {
	return appendEscaped(append(dst, nsKV...), m[:])
}

// kvKey names a key in the flat index. The "k" keeps an empty key from
// leaving the key with a trailing '/'. The module is fixed-length, so the
// index sorts by (module, key).
func kvKey(k types.StateKey) ds.Key {
	// One allocation: this is on the latest-read path.
	buf := make([]byte, 0, len(nsKV)+2*types.AddressLen+2+2*len(k.Key))
	return ds.RawKey(string(appendKVKey(buf, k)))
}

// appendKVKey appends the bytes of kvKey(k) to dst, for callers that build
// many keys in one buffer (Store.GetMany).
func appendKVKey(dst []byte, k types.StateKey) []byte {
	return appendEscaped(append(appendKVModule(dst, k.Module), "/k"...), k.Key)
}

// checkKeyLen refuses a state key over types.StateKeyMax, which no read
// can find and no write may store.
func checkKeyLen(k types.StateKey) error {
	if len(k.Key) > types.StateKeyMax {
		return fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(k.Key))
	}
	return nil
}

func parseKVKey(s string) (types.StateKey, error) {
	var k types.StateKey
	rest, ok := strings.CutPrefix(s, nsKV)
	m, rest, ok2 := unescape(rest, types.AddressLen)
	rest, ok3 := strings.CutPrefix(rest, "/k")
	key, rest, ok4 := unescape(rest, -1)
	if !ok || !ok2 || !ok3 || !ok4 || rest != "" {
		return k, fmt.Errorf("%w: bad index key %q", ErrCorrupt, s)
	}
	copy(k.Module[:], m)
	k.Key = key
	return k, nil
}

func rootKey(h uint64) ds.Key    { return ds.RawKey(nsRoot + heightStr(h)) }
func changesKey(h uint64) ds.Key { return ds.RawKey(nsChanges + heightStr(h)) }
func pinKey(h uint64) ds.Key     { return ds.RawKey(nsPin + heightStr(h)) }

func staleKey(since uint64) ds.Key { return ds.RawKey(nsStale + heightStr(since)) }

// staleEntryLen is the size of one stale list entry: the record's born
// (8 bytes, big-endian) and its id.
const staleEntryLen = 8 + types.HashLen

// encodeStale writes a version's stale list: (born, id) per record,
// concatenated. One record per version keeps a block's thousands of entries
// out of the datastore's key space.
func encodeStale(refs []nodeRef) []byte {
	buf := make([]byte, 0, len(refs)*staleEntryLen)
	for _, r := range refs {
		buf = binary.BigEndian.AppendUint64(buf, r.born)
		buf = append(buf, r.id[:]...)
	}
	return buf
}

func decodeStale(b []byte) ([]nodeRef, error) {
	if len(b)%staleEntryLen != 0 {
		return nil, fmt.Errorf("%w: bad stale list length %d", ErrCorrupt, len(b))
	}
	refs := make([]nodeRef, 0, len(b)/staleEntryLen)
	for ; len(b) > 0; b = b[staleEntryLen:] {
		refs = append(refs, nodeRef{born: binary.BigEndian.Uint64(b), id: types.Hash(b[8:staleEntryLen])})
	}
	return refs, nil
}

func parseHeightKey(s, ns string) (uint64, error) {
	h, err := strconv.ParseUint(strings.TrimPrefix(s, ns), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad height key %q", ErrCorrupt, s)
	}
	return h, nil
}
