package state

import (
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
	nsHist    = "/kairos/h/"  // <escaped key path>/<escaped version> → the value the version replaced
	nsNode    = "/kairos/n/"  // <escaped born>/<escaped id> → node record
	nsKV      = "/kairos/kv/" // <escaped module id>/k<escaped key> → latest value
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
// only in the flat index and a replaced one in a history record keyed by
// version first; format 4 keys a history record by key path first (a stale
// list names the paths of its version's history records) and names a
// leaf's module in a node record and a flat index key by a store-local id
// (modules.go) instead of its 32-byte address. Open refuses any other
// format with ErrFormat: there is no migration.
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

// histKeyLen is the longest history key: the namespace, the key path,
// '/' and the version, key path and version escaped.
const histKeyLen = len(nsHist) + 2*(types.HashLen+8) + 1

// appendHistPath appends the prefix of every history record of key path
// kp: nsHist, kp escaped, then '/'. Escaping keeps byte order and is
// prefix-free and no escaped segment holds a '/', so a key path's records
// are one key range that no other path's record falls in.
func appendHistPath(dst []byte, kp types.Hash) []byte {
	return append(appendEscaped(append(dst, nsHist...), kp[:]), '/')
}

// appendHistKey appends the key of the history record that version d
// wrote for the key whose path is kp, whose leaf d replaced or deleted:
// appendHistPath, then d as 8 big-endian bytes escaped. So a key's records
// sort by version, and the record of the first version above v that
// changed the key is the first at or after (kp, v+1) (historySeek).
func appendHistKey(dst []byte, kp types.Hash, d uint64) []byte {
	return appendBorn(appendHistPath(dst, kp), d)
}

// histKey is appendHistKey as a datastore key.
func histKey(kp types.Hash, d uint64) ds.Key {
	var a [histKeyLen]byte
	return ds.RawKey(string(appendHistKey(a[:0], kp, d)))
}

// parseHistKey is the inverse of appendHistKey, given the part after
// nsHist.
func parseHistKey(s string) (types.Hash, uint64, error) {
	kp, rest, ok := unescape(s, types.HashLen)
	if ok {
		rest, ok = strings.CutPrefix(rest, "/")
	}
	var d []byte
	if ok {
		d, rest, ok = unescape(rest, 8)
	}
	if !ok || rest != "" {
		return types.Hash{}, 0, fmt.Errorf("%w: bad history key %q", ErrCorrupt, s)
	}
	return types.Hash(kp), binary.BigEndian.Uint64(d), nil
}

func heightStr(h uint64) string { return fmt.Sprintf("%016x", h) }

// appendKVModule appends the flat index's path of module m: the namespace
// and m's segment, its module id as a uvarint, escaped. A module without
// an id while the table has ids left has no flat index entries (its first
// write assigns it one before it writes them): ok is false and nothing is
// appended. A module without an id once the table is full
// (ModuleIDsMax) is named inline, as in node records: moduleInline, then
// the escaped address. Uvarints are prefix-free and 0 is no other id's
// first byte, so no module's segment is a prefix of another's, and the '/'
// after it (appendKVKey) ends it: a module's keys are one key range that
// holds no other module's key. A nil table has no ids: every module inline.
func (t *moduleTable) appendKVModule(dst []byte, m types.Address) ([]byte, bool) {
	dst = append(dst, nsKV...)
	if t == nil {
		return appendEscaped(append(dst, moduleInline), m[:]), true
	}
	v := t.view.Load()
	if id, ok := v.ids[string(m[:])]; ok {
		var u [binary.MaxVarintLen64]byte
		return appendEscaped(dst, binary.AppendUvarint(u[:0], id)), true
	}
	if !t.full(v) {
		return dst[:len(dst)-len(nsKV)], false
	}
	return appendEscaped(append(dst, moduleInline), m[:]), true
}

// kvModulePrefix is the query prefix of module m's flat index entries (ok
// false: it has none, see appendKVModule).
func (t *moduleTable) kvModulePrefix(m types.Address) (string, bool) {
	b, ok := t.appendKVModule(nil, m)
	return string(b), ok
}

// kvKey names a key in the flat index, or reports that module k.Module
// has no entries (ok false). The "k" keeps an empty key from leaving the
// key with a trailing '/'. Within a module the index sorts by key; modules
// sort by their segments' bytes.
func (t *moduleTable) kvKey(k types.StateKey) (ds.Key, bool) {
	// One allocation: this is on the latest-read path.
	var a [64]byte
	buf, ok := t.appendKVKey(a[:0], k)
	if !ok {
		return ds.Key{}, false
	}
	return ds.RawKey(string(buf)), true
}

// appendKVKey appends the bytes of kvKey(k) to dst, for callers that build
// many keys in one buffer (Store.GetMany).
func (t *moduleTable) appendKVKey(dst []byte, k types.StateKey) ([]byte, bool) {
	dst, ok := t.appendKVModule(dst, k.Module)
	if !ok {
		return dst, false
	}
	return appendEscapedWords(append(dst, "/k"...), k.Key), true
}

// writeKVKey is kvKey for a writer, whose modules have ids or are inline
// (assignWrites ran; a deleted key's module had entries): a module that
// has neither is a broken invariant, reported rather than written where
// no reader looks.
func (t *moduleTable) writeKVKey(dst []byte, k types.StateKey) ([]byte, error) {
	dst, ok := t.appendKVKey(dst, k)
	if !ok {
		return dst, fmt.Errorf("%w: flat index write of %s, whose module has no id", ErrCorrupt, k)
	}
	return dst, nil
}

// checkKeyLen refuses a state key over types.StateKeyMax, which no read
// can find and no write may store.
func checkKeyLen(k types.StateKey) error {
	if len(k.Key) > types.StateKeyMax {
		return fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(k.Key))
	}
	return nil
}

// parseKVKey is the inverse of kvKey. A key naming an id the table does
// not hold, or an id in more bytes than its uvarint needs, is corrupt.
func (t *moduleTable) parseKVKey(s string) (types.StateKey, error) {
	var k types.StateKey
	bad := func() (types.StateKey, error) {
		return types.StateKey{}, fmt.Errorf("%w: bad index key %q", ErrCorrupt, s)
	}
	rest, ok := strings.CutPrefix(s, nsKV)
	seg, rest, ok2 := strings.Cut(rest, "/k")
	m, _, ok3 := unescape(seg, -1)
	key, rest, ok4 := unescape(rest, -1)
	if !ok || !ok2 || !ok3 || !ok4 || rest != "" || len(m) == 0 {
		return bad()
	}
	if m[0] == moduleInline {
		if len(m) != 1+types.AddressLen {
			return bad()
		}
		copy(k.Module[:], m[1:])
		if t != nil {
			// Inline only for a module without an id past the limit:
			// any other inline key is one no read looks up.
			v := t.view.Load()
			if _, has := v.ids[string(k.Module[:])]; has || !t.full(v) {
				return bad()
			}
		}
	} else {
		id, n := binary.Uvarint(m)
		a, known := t.module(id)
		if n != len(m) || uvarintLen(id) != n || !known {
			return types.StateKey{}, fmt.Errorf("%w: %w %d in index key %q", ErrCorrupt, errModuleID, id, s)
		}
		if canon, _ := t.id(string(a[:])); canon != id {
			return bad() // a second id of the module, which no read uses
		}
		k.Module = a
	}
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

// staleList is what pruning version d deletes: the node records d stopped
// using (refs) and the key paths of the history records d wrote (paths;
// d replaced or deleted their keys' leaves). A history record is keyed by
// key path first (one seek finds a key's value at any version), so one
// version's records are scattered over the namespace and pruning must be
// told where they are; they go in the same record as the refs because
// both are written by the same commit and deleted by the same prune (see
// RATIONALE.md, "Why is the history keyed by key path").
type staleList struct {
	refs  []nodeRef
	paths []types.Hash
}

// encodeStale writes a version's stale list: the number of refs (4 bytes,
// big-endian), (born, id) per ref, then the paths, concatenated. One
// record per version keeps a block's thousands of entries out of the
// datastore's key space.
func encodeStale(l staleList) []byte {
	buf := make([]byte, 0, 4+len(l.refs)*staleEntryLen+len(l.paths)*types.HashLen)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(l.refs)))
	for _, r := range l.refs {
		buf = binary.BigEndian.AppendUint64(buf, r.born)
		buf = append(buf, r.id[:]...)
	}
	for _, p := range l.paths {
		buf = append(buf, p[:]...)
	}
	return buf
}

// decodeStale is the inverse of encodeStale; no record (nil) is an empty
// list.
func decodeStale(b []byte) (staleList, error) {
	var l staleList
	if len(b) == 0 {
		return l, nil
	}
	if len(b) < 4 {
		return l, fmt.Errorf("%w: bad stale list length %d", ErrCorrupt, len(b))
	}
	n := uint64(binary.BigEndian.Uint32(b))
	b = b[4:]
	if n*staleEntryLen > uint64(len(b)) || (uint64(len(b))-n*staleEntryLen)%types.HashLen != 0 {
		return l, fmt.Errorf("%w: bad stale list: %d refs in %d bytes", ErrCorrupt, n, len(b))
	}
	l.refs = make([]nodeRef, n)
	for i := range l.refs {
		l.refs[i] = nodeRef{born: binary.BigEndian.Uint64(b), id: types.Hash(b[8:staleEntryLen])}
		b = b[staleEntryLen:]
	}
	l.paths = make([]types.Hash, len(b)/types.HashLen)
	for i := range l.paths {
		l.paths[i] = types.Hash(b[:types.HashLen])
		b = b[types.HashLen:]
	}
	return l, nil
}

func parseHeightKey(s, ns string) (uint64, error) {
	h, err := strconv.ParseUint(strings.TrimPrefix(s, ns), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad height key %q", ErrCorrupt, s)
	}
	return h, nil
}
