package state

import (
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	ds "github.com/ipfs/go-datastore"
	mh "github.com/multiformats/go-multihash"

	"github.com/kairos-network/kairos/types"
)

// Datastore layout. Heights are fixed-width hex so that key order is height
// order on ordered backends.
const (
	nsNode    = "/kairos/n/"  // <base32 multihash> → node or value record
	nsKV      = "/kairos/kv/" // <hex module>/k<hex key> → latest value
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

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// nodeKey names a stored node or value record by the sha2-256 multihash of
// its id.
func nodeKey(id types.Hash) ds.Key {
	return ds.RawKey(nsNode + b32.EncodeToString(types.Root(id).Multihash()))
}

func parseMultihashB32(s string) (types.Hash, error) {
	raw, err := b32.DecodeString(s)
	if err != nil {
		return types.Hash{}, fmt.Errorf("%w: bad node key %q", ErrCorrupt, s)
	}
	d, err := mh.Decode(raw)
	if err != nil || d.Code != mh.SHA2_256 || len(d.Digest) != types.HashLen {
		return types.Hash{}, fmt.Errorf("%w: bad node key %q", ErrCorrupt, s)
	}
	return types.Hash(d.Digest), nil
}

func heightStr(h uint64) string { return fmt.Sprintf("%016x", h) }

func kvModulePrefix(m types.Address) string { return nsKV + hex.EncodeToString(m[:]) }

// kvKey names a key in the flat index. The "k" keeps an empty key from
// cleaning away to the module prefix; hex keeps byte order.
func kvKey(k types.StateKey) ds.Key {
	// One allocation: this is on the latest-read path.
	buf := make([]byte, 0, len(nsKV)+2*types.AddressLen+2+2*len(k.Key))
	buf = append(buf, nsKV...)
	buf = hex.AppendEncode(buf, k.Module[:])
	buf = append(buf, "/k"...)
	buf = hex.AppendEncode(buf, k.Key)
	return ds.RawKey(string(buf))
}

func parseKVKey(s string) (types.StateKey, error) {
	var k types.StateKey
	rest, ok := strings.CutPrefix(s, nsKV)
	mod, key, ok2 := strings.Cut(rest, "/k")
	m, err := hex.DecodeString(mod)
	if !ok || !ok2 || err != nil || len(m) != types.AddressLen {
		return k, fmt.Errorf("%w: bad index key %q", ErrCorrupt, s)
	}
	copy(k.Module[:], m)
	k.Key, err = hex.DecodeString(key)
	if err != nil {
		return k, fmt.Errorf("%w: bad index key %q", ErrCorrupt, s)
	}
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
