package state

import (
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
	nsNode    = "/kairos/n/"  // <escaped id> → node or value record
	nsKV      = "/kairos/kv/" // <escaped module>/k<escaped key> → latest value
	nsRoot    = "/kairos/r/"  // <height> → root slot
	nsChanges = "/kairos/c/"  // <height> → change set
	nsStale   = "/kairos/s/"  // <stale_since> → list of (born, id)
	nsPin     = "/kairos/pin/"
)

var (
	keyLatest    = ds.NewKey("/kairos/latest")    // uvarint height of the last durable commit
	keyMin       = ds.NewKey("/kairos/min")       // uvarint lowest readable version
	keyPruneDone = ds.NewKey("/kairos/prunedone") // uvarint: stale entries with since <= it are processed
)

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

// nodeKey names a stored node or value record by its id.
func nodeKey(id types.Hash) ds.Key {
	// Built on the stack; the string conversion is the one allocation.
	var a [len(nsNode) + 2*types.HashLen]byte
	return ds.RawKey(string(appendEscaped(append(a[:0], nsNode...), id[:])))
}

// parseNodeKey is the inverse of nodeKey, given the part after nsNode.
func parseNodeKey(s string) (types.Hash, error) {
	id, rest, ok := unescape(s, types.HashLen)
	if !ok || rest != "" {
		return types.Hash{}, fmt.Errorf("%w: bad node key %q", ErrCorrupt, s)
	}
	return types.Hash(id), nil
}

func heightStr(h uint64) string { return fmt.Sprintf("%016x", h) }

func kvModulePrefix(m types.Address) string {
	return string(appendEscaped([]byte(nsKV), m[:]))
}

// kvKey names a key in the flat index. The "k" keeps an empty key from
// leaving the key with a trailing '/'. The module is fixed-length, so the
// index sorts by (module, key).
func kvKey(k types.StateKey) ds.Key {
	// One allocation: this is on the latest-read path.
	buf := make([]byte, 0, len(nsKV)+2*types.AddressLen+2+2*len(k.Key))
	buf = append(buf, nsKV...)
	buf = appendEscaped(buf, k.Module[:])
	buf = append(buf, "/k"...)
	buf = appendEscaped(buf, k.Key)
	return ds.RawKey(string(buf))
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

// encodeStale writes a version's stale list: the 32-byte ids, concatenated.
// One record per version keeps a block's thousands of entries out of the
// datastore's key space.
func encodeStale(refs []staleRef) []byte {
	buf := make([]byte, 0, len(refs)*types.HashLen)
	for _, r := range refs {
		buf = append(buf, r.id[:]...)
	}
	return buf
}

func decodeStale(b []byte) ([]staleRef, error) {
	if len(b)%types.HashLen != 0 {
		return nil, fmt.Errorf("%w: bad stale list length %d", ErrCorrupt, len(b))
	}
	refs := make([]staleRef, 0, len(b)/types.HashLen)
	for ; len(b) > 0; b = b[types.HashLen:] {
		refs = append(refs, staleRef{id: types.Hash(b[:types.HashLen])})
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
