package state

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"

	"github.com/kairos-network/kairos/types"
)

// Snapshot limits. A manifest and its chunks come from a peer, so every
// count and size they carry is bounded before it is used.
const (
	// SnapshotChunkLeavesDefault is how many leaves Export puts in a chunk:
	// about 600 KB with 100-byte values, small enough to fetch from one
	// peer in one request and large enough that proofs are noise.
	SnapshotChunkLeavesDefault = 4096
	// SnapshotChunkLeavesMax is the most leaves a chunk may hold.
	SnapshotChunkLeavesMax = 1 << 16
	// SnapshotChunkBytesMax is the largest encoded chunk accepted.
	SnapshotChunkBytesMax = 64 << 20
	// SnapshotChunksMax is the most chunks a manifest may list.
	SnapshotChunksMax = 1 << 16
	// SnapshotManifestBytesMax is the largest encoded manifest accepted.
	SnapshotManifestBytesMax = 8 << 20
	// snapshotProofMax bounds a chunk's range proof: at most one outside
	// sibling per level on each of the two boundary paths.
	snapshotProofMax = 2 * types.KeyPathDepth
)

// Snapshot errors; each is wrapped with detail, test with errors.Is.
var (
	ErrSnapshotManifest  = errors.New("state: snapshot manifest malformed")
	ErrSnapshotGap       = errors.New("state: snapshot chunks leave a gap in the key-path space")
	ErrSnapshotOverlap   = errors.New("state: snapshot chunks overlap")
	ErrSnapshotLeafCount = errors.New("state: snapshot leaf count does not match its manifest")
	ErrChunkMalformed    = errors.New("state: snapshot chunk malformed")
	ErrChunkUnknown      = errors.New("state: snapshot chunk not in the manifest")
	ErrChunkHash         = errors.New("state: snapshot chunk does not match its manifest hash")
	ErrChunkBounds       = errors.New("state: snapshot chunk bounds differ from its manifest entry")
	ErrChunkEmpty        = errors.New("state: snapshot chunk is empty but its manifest entry claims leaves")
	ErrChunkUnsorted     = errors.New("state: snapshot chunk leaves not strictly sorted by key path")
	ErrChunkOutOfRange   = errors.New("state: snapshot chunk leaf outside the chunk's key-path range")
	ErrChunkProof        = errors.New("state: snapshot chunk range proof does not prove the manifest root")
)

// SnapshotLeaf is one (key, value) pair of a snapshot chunk. The full key is
// carried, not only its key path, because the importer rebuilds the flat
// index from it.
type SnapshotLeaf struct {
	_     struct{} `cbor:",toarray"`
	Key   types.StateKey
	Value []byte
}

// ProofNode is one maximal subtree outside a chunk's key-path range whose
// parent straddles the range boundary. Kind is needed beside the hash
// because a single leaf next to an empty subtree moves up unchanged.
type ProofNode struct {
	_    struct{} `cbor:",toarray"`
	Kind types.NodeKind
	Hash types.Hash
}

// ChunkRef is a manifest's entry for one chunk.
type ChunkRef struct {
	_      struct{}   `cbor:",toarray"`
	Start  types.Hash // first key path covered, inclusive
	End    types.Hash // last key path covered, inclusive
	Leaves uint64     // leaves in the chunk
	Hash   types.Hash // sha2-256 of the chunk's canonical bytes
}

// Manifest describes a snapshot of one version: its root, its size and the
// chunks that cover the whole key-path space in order. By itself it proves
// nothing; the root is checked against a checkpoint certificate by the
// caller, and every chunk is checked against the root.
type Manifest struct {
	_      struct{} `cbor:",toarray"`
	Height uint64
	Root   types.Root
	Leaves uint64
	Chunks []ChunkRef
}

// Chunk is the leaves of one key-path range, sorted by key path, with the
// range proof that binds exactly those leaves to the manifest root.
type Chunk struct {
	_      struct{} `cbor:",toarray"`
	Height uint64
	Index  uint32
	Start  types.Hash
	End    types.Hash
	Leaves []SnapshotLeaf
	Proof  []ProofNode // outside subtrees in depth-first, left-to-right order
}

var maxKeyPath = func() (h types.Hash) {
	for i := range h {
		h[i] = 0xff
	}
	return h
}()

// EncodeManifest returns the canonical bytes of m.
func EncodeManifest(m *Manifest) ([]byte, error) { return types.Encode(m) }

// DecodeManifest parses and validates a manifest: bounded size, chunks that
// cover the key-path space exactly once in order, and per-chunk leaf counts
// that add up to the total.
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) > SnapshotManifestBytesMax {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrSnapshotManifest, len(b), SnapshotManifestBytesMax)
	}
	var m Manifest
	if err := types.Decode(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the manifest's own consistency (not its root).
func (m *Manifest) Validate() error {
	n := len(m.Chunks)
	if n == 0 || n > SnapshotChunksMax {
		return fmt.Errorf("%w: %d chunks, want 1..%d", ErrSnapshotManifest, n, SnapshotChunksMax)
	}
	var sum uint64
	next := types.EmptyHash // the first key path not yet covered
	for i, c := range m.Chunks {
		switch cmp := bytes.Compare(c.Start[:], next[:]); {
		case cmp > 0:
			return fmt.Errorf("%w: chunk %d starts at %x, expected %x", ErrSnapshotGap, i, c.Start, next)
		case cmp < 0:
			return fmt.Errorf("%w: chunk %d starts at %x, before %x", ErrSnapshotOverlap, i, c.Start, next)
		}
		if bytes.Compare(c.Start[:], c.End[:]) > 0 {
			return fmt.Errorf("%w: chunk %d ends before it starts", ErrSnapshotManifest, i)
		}
		if c.Leaves > SnapshotChunkLeavesMax {
			return fmt.Errorf("%w: chunk %d claims %d leaves, limit %d", ErrSnapshotManifest, i, c.Leaves, SnapshotChunkLeavesMax)
		}
		sum += c.Leaves
		if c.End == maxKeyPath {
			if i != n-1 {
				return fmt.Errorf("%w: chunk %d reaches the end of the key-path space but %d more follow", ErrSnapshotOverlap, i, n-1-i)
			}
			break
		}
		next = incKeyPath(c.End)
	}
	if last := m.Chunks[n-1].End; last != maxKeyPath {
		return fmt.Errorf("%w: the last chunk ends at %x", ErrSnapshotGap, last)
	}
	if sum != m.Leaves {
		return fmt.Errorf("%w: chunks hold %d leaves, manifest says %d", ErrSnapshotLeafCount, sum, m.Leaves)
	}
	if (m.Leaves == 0) != (m.Root == types.EmptyRoot) {
		return fmt.Errorf("%w: %d leaves with root %s", ErrSnapshotLeafCount, m.Leaves, m.Root)
	}
	return nil
}

// incKeyPath returns h+1; h must not be the largest key path.
func incKeyPath(h types.Hash) types.Hash {
	for i := len(h) - 1; i >= 0; i-- {
		h[i]++
		if h[i] != 0 {
			break
		}
	}
	return h
}

// EncodeChunk returns the canonical bytes of c.
func EncodeChunk(c *Chunk) ([]byte, error) { return appendChunk(make([]byte, 0, chunkSize(c)), c), nil }

// snapLeaf is a chunk leaf reduced to what the tree hashes.
type snapLeaf struct {
	path types.Hash
	hash types.Hash
	data string // leafData: the leaf's value hash and key (exports only)
}

// slot returns the leaf as a tree slot (exports only).
func (l *snapLeaf) slot() slot {
	return slot{kind: slotLeaf, h: l.hash, leaf: l.data}
}

// VerifyChunk decodes chunk bytes and checks them against manifest entry
// c.Index: hash, height, bounds, leaf count, strict key-path order, range,
// and the range proof against the manifest root. It returns the decoded
// chunk only if every check passes; its keys and values alias b.
func VerifyChunk(m *Manifest, b []byte) (*Chunk, error) {
	c, _, err := verifyChunk(m, b, false)
	return c, err
}

// CheckedChunk is the bytes of one chunk that hash to their manifest
// entry's Hash: only Manifest.CheckChunk makes one, so a value of this type
// is the proof that the hash was checked, and an install that reads it
// (InstallFromChecked) does not hash the bytes again. The bytes must not be
// modified after the check.
type CheckedChunk struct {
	b    []byte
	i    int
	hash types.Hash
}

// CheckChunk returns b as chunk i of m if its sha2-256 is m's entry for
// chunk i (ErrChunkHash otherwise; ErrChunkUnknown for an i m does not
// list; ErrChunkMalformed above SnapshotChunkBytesMax). It checks nothing
// else: the install verifies the rest. A node
// that fetches chunk i from several peers calls it to refuse a peer's bytes
// and ask another before the install sees them.
func (m *Manifest) CheckChunk(i int, b []byte) (CheckedChunk, error) {
	if i < 0 || i >= len(m.Chunks) {
		return CheckedChunk{}, fmt.Errorf("%w: chunk %d of %d", ErrChunkUnknown, i, len(m.Chunks))
	}
	if len(b) > SnapshotChunkBytesMax {
		return CheckedChunk{}, fmt.Errorf("%w: %d bytes, limit %d", ErrChunkMalformed, len(b), SnapshotChunkBytesMax)
	}
	if sha256.Sum256(b) != m.Chunks[i].Hash {
		return CheckedChunk{}, fmt.Errorf("%w: chunk %d", ErrChunkHash, i)
	}
	return CheckedChunk{b: b, i: i, hash: m.Chunks[i].Hash}, nil
}

// verifyChunk is VerifyChunk that also returns the leaves with the hashes
// it computed, so that a streamed install builds from them without hashing
// every leaf again. With hashed set, the caller has checked that b hashes
// to its manifest entry (a CheckedChunk) and the hash is not computed again.
func verifyChunk(m *Manifest, b []byte, hashed bool) (*Chunk, []builtLeaf, error) {
	if len(b) > SnapshotChunkBytesMax {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrChunkMalformed, len(b), SnapshotChunkBytesMax)
	}
	c, err := decodeChunk(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrChunkMalformed, err)
	}
	if int(c.Index) >= len(m.Chunks) || c.Height != m.Height {
		return nil, nil, fmt.Errorf("%w: chunk %d of height %d, manifest has %d chunks of height %d",
			ErrChunkUnknown, c.Index, c.Height, len(m.Chunks), m.Height)
	}
	ref := m.Chunks[c.Index]
	if c.Start != ref.Start || c.End != ref.End {
		return nil, nil, fmt.Errorf("%w: chunk %d", ErrChunkBounds, c.Index)
	}
	if len(c.Leaves) == 0 && ref.Leaves > 0 {
		return nil, nil, fmt.Errorf("%w: chunk %d, manifest claims %d", ErrChunkEmpty, c.Index, ref.Leaves)
	}
	if uint64(len(c.Leaves)) != ref.Leaves {
		return nil, nil, fmt.Errorf("%w: chunk %d holds %d leaves, manifest says %d", ErrSnapshotLeafCount, c.Index, len(c.Leaves), ref.Leaves)
	}
	built := make([]builtLeaf, len(c.Leaves))
	leaves := make([]snapLeaf, len(c.Leaves))
	for i, l := range c.Leaves {
		if len(l.Key.Key) > types.StateKeyMax {
			return nil, nil, fmt.Errorf("%w: leaf %d key of %d bytes", ErrChunkMalformed, i, len(l.Key.Key))
		}
		if len(l.Value) == 0 || len(l.Value) > types.StateValueMax {
			// An empty value means "absent" in the store, so a leaf
			// cannot hold one.
			return nil, nil, fmt.Errorf("%w: leaf %d value of %d bytes", ErrChunkMalformed, i, len(l.Value))
		}
		bl := hashLeaf(l)
		if bytes.Compare(bl.kp[:], c.Start[:]) < 0 || bytes.Compare(bl.kp[:], c.End[:]) > 0 {
			return nil, nil, fmt.Errorf("%w: chunk %d leaf %d", ErrChunkOutOfRange, c.Index, i)
		}
		if i > 0 && bytes.Compare(leaves[i-1].path[:], bl.kp[:]) >= 0 {
			return nil, nil, fmt.Errorf("%w: chunk %d leaves %d and %d", ErrChunkUnsorted, c.Index, i-1, i)
		}
		built[i], leaves[i] = bl, snapLeaf{path: bl.kp, hash: bl.lh}
	}
	if len(c.Proof) > snapshotProofMax {
		return nil, nil, fmt.Errorf("%w: %d proof nodes, limit %d", ErrChunkProof, len(c.Proof), snapshotProofMax)
	}
	root, err := rangeRoot(c.Start, c.End, leaves, c.Proof)
	if err != nil {
		return nil, nil, fmt.Errorf("chunk %d: %w", c.Index, err)
	}
	if root != types.Hash(m.Root) {
		return nil, nil, fmt.Errorf("%w: chunk %d proves %s, manifest root %s", ErrChunkProof, c.Index, types.Root(root), m.Root)
	}
	// The hash is checked last: a chunk that passes the proof is already
	// bound to the root, the hash only ties it to this manifest's listing.
	if !hashed && sha256.Sum256(b) != ref.Hash {
		return nil, nil, fmt.Errorf("%w: chunk %d", ErrChunkHash, c.Index)
	}
	return c, built, nil
}

// rangeRoot recomputes the root from the leaves inside [lo, hi] and the
// proof's outside subtrees, consuming every proof node exactly once.
func rangeRoot(lo, hi types.Hash, leaves []snapLeaf, proof []ProofNode) (types.Hash, error) {
	next := 0
	var walk func(depth int, prefix types.Hash, leaves []snapLeaf) (types.NodeKind, types.Hash, error)
	walk = func(depth int, prefix types.Hash, leaves []snapLeaf) (types.NodeKind, types.Hash, error) {
		switch nodeRelation(depth, prefix, lo, hi) {
		case relInside:
			k, h := subtreeHash(depth, leaves)
			return k, h, nil
		case relOutside:
			if next == len(proof) {
				return 0, types.Hash{}, fmt.Errorf("%w: proof too short", ErrChunkProof)
			}
			n := proof[next]
			next++
			if n.Kind > types.KindInternal || (n.Kind == types.KindEmpty) != (n.Hash == types.EmptyHash) {
				return 0, types.Hash{}, fmt.Errorf("%w: proof node %d kind %d", ErrChunkProof, next-1, n.Kind)
			}
			return n.Kind, n.Hash, nil
		}
		split := sort.Search(len(leaves), func(i int) bool { return leaves[i].path.Bit(depth) == 1 })
		lk, lh, err := walk(depth+1, prefix, leaves[:split])
		if err != nil {
			return 0, lh, err
		}
		rk, rh, err := walk(depth+1, setBit(prefix, depth), leaves[split:])
		if err != nil {
			return 0, rh, err
		}
		k, h := types.Combine(lk, lh, rk, rh)
		return k, h, nil
	}
	_, h, err := walk(0, types.Hash{}, leaves)
	if err == nil && next != len(proof) {
		err = fmt.Errorf("%w: %d unused proof nodes", ErrChunkProof, len(proof)-next)
	}
	return h, err
}

type relation int

const (
	relPartial relation = iota
	relInside
	relOutside
)

// nodeRelation places the subtree at (depth, prefix) relative to [lo, hi].
// A subtree at depth 256 is a single key path, so it is never partial.
func nodeRelation(depth int, prefix, lo, hi types.Hash) relation {
	nodeLo, nodeHi := prefix, prefix
	for i := depth; i < types.KeyPathDepth; i++ {
		nodeLo = clearBit(nodeLo, i)
		nodeHi = setBit(nodeHi, i)
	}
	switch {
	case bytes.Compare(nodeHi[:], lo[:]) < 0 || bytes.Compare(nodeLo[:], hi[:]) > 0:
		return relOutside
	case bytes.Compare(nodeLo[:], lo[:]) >= 0 && bytes.Compare(nodeHi[:], hi[:]) <= 0:
		return relInside
	}
	return relPartial
}

func setBit(h types.Hash, i int) types.Hash   { h[i/8] |= 0x80 >> uint(i%8); return h }
func clearBit(h types.Hash, i int) types.Hash { h[i/8] &^= 0x80 >> uint(i%8); return h }

// subtreeHash is the reference definition of a subtree's hash: the leaves
// (sorted, distinct, sharing the subtree's prefix) split by the bit at each
// depth, with the collapse rules of types.Combine.
func subtreeHash(depth int, leaves []snapLeaf) (types.NodeKind, types.Hash) {
	switch len(leaves) {
	case 0:
		return types.KindEmpty, types.EmptyHash
	case 1:
		return types.KindLeaf, leaves[0].hash
	}
	split := sort.Search(len(leaves), func(i int) bool { return leaves[i].path.Bit(depth) == 1 })
	lk, lh := subtreeHash(depth+1, leaves[:split])
	rk, rh := subtreeHash(depth+1, leaves[split:])
	return types.Combine(lk, lh, rk, rh)
}

// snapTree answers subtree hashes over one version's sorted leaves. Hashes
// of subtrees holding at least snapMemoLeaves leaves are kept, so the proofs
// of all chunks together cost one pass over the leaves instead of one pass
// per chunk.
type snapTree struct {
	leaves []snapLeaf
	memo   map[snapMemoKey]snapMemoVal
}

const snapMemoLeaves = 256

type snapMemoKey struct {
	depth  int
	prefix types.Hash
}

type snapMemoVal struct {
	kind types.NodeKind
	hash types.Hash
}

func newSnapTree(leaves []snapLeaf) *snapTree {
	return &snapTree{leaves: leaves, memo: make(map[snapMemoKey]snapMemoVal)}
}

// hash returns the subtree at (depth, prefix) whose leaves are leaves.
func (t *snapTree) hash(depth int, prefix types.Hash, leaves []snapLeaf) (types.NodeKind, types.Hash) {
	if len(leaves) < snapMemoLeaves {
		return subtreeHash(depth, leaves)
	}
	key := snapMemoKey{depth, prefix}
	if v, ok := t.memo[key]; ok {
		return v.kind, v.hash
	}
	split := sort.Search(len(leaves), func(i int) bool { return leaves[i].path.Bit(depth) == 1 })
	lk, lh := t.hash(depth+1, prefix, leaves[:split])
	rk, rh := t.hash(depth+1, setBit(prefix, depth), leaves[split:])
	k, h := types.Combine(lk, lh, rk, rh)
	t.memo[key] = snapMemoVal{k, h}
	return k, h
}

// root is the root hash of all leaves.
func (t *snapTree) root() types.Hash {
	_, h := t.hash(0, types.Hash{}, t.leaves)
	return h
}

// proof returns the outside subtrees of [lo, hi] in the order rangeRoot
// consumes them.
func (t *snapTree) proof(lo, hi types.Hash) []ProofNode {
	var out []ProofNode
	var walk func(depth int, prefix types.Hash, leaves []snapLeaf)
	walk = func(depth int, prefix types.Hash, leaves []snapLeaf) {
		switch nodeRelation(depth, prefix, lo, hi) {
		case relInside:
			return
		case relOutside:
			k, h := t.hash(depth, prefix, leaves)
			out = append(out, ProofNode{Kind: k, Hash: h})
			return
		}
		split := sort.Search(len(leaves), func(i int) bool { return leaves[i].path.Bit(depth) == 1 })
		walk(depth+1, prefix, leaves[:split])
		walk(depth+1, setBit(prefix, depth), leaves[split:])
	}
	walk(0, types.Hash{}, t.leaves)
	return out
}

// chunkBounds cuts sorted leaves into runs of at most per leaves and returns
// each run's [start, end) leaf indexes and key-path range. A boundary sits
// where the last leaf of a run and the first of the next first differ, so
// it is aligned to a subtree and the range proof stays short.
func chunkBounds(leaves []snapLeaf, per int) (runs [][2]int, ranges [][2]types.Hash) {
	start := types.EmptyHash
	for lo := 0; ; lo += per {
		hi := min(lo+per, len(leaves))
		if hi == len(leaves) {
			runs = append(runs, [2]int{lo, hi})
			ranges = append(ranges, [2]types.Hash{start, maxKeyPath})
			return runs, ranges
		}
		a, b := leaves[hi-1].path, leaves[hi].path
		c := 0
		for a.Bit(c) == b.Bit(c) {
			c++
		}
		end := a
		for i := c + 1; i < types.KeyPathDepth; i++ {
			end = setBit(end, i)
		}
		runs = append(runs, [2]int{lo, hi})
		ranges = append(ranges, [2]types.Hash{start, end})
		start = incKeyPath(end)
	}
}

// snapPlan is a snapshot being cut. The chunk ranges and proofs are fixed
// from the leaf hashes alone (64 bytes per key in memory); the keys and
// values are read one chunk at a time when the chunk is encoded, so an
// export never holds every value.
type snapPlan struct {
	height uint64
	root   types.Root
	leaves []snapLeaf
	runs   [][2]int
	ranges [][2]types.Hash
	proofs [][]ProofNode
}

// planSnapshot checks a version's leaves (sorted by key path) against its
// root, so that a corrupt store never produces a snapshot, cuts them into
// runs of at most per leaves and computes each run's range proof.
func planSnapshot(height uint64, root types.Root, leaves []snapLeaf, per int) (*snapPlan, error) {
	if per <= 0 || per > SnapshotChunkLeavesMax {
		return nil, fmt.Errorf("%w: %d leaves per chunk, want 1..%d", ErrSnapshotManifest, per, SnapshotChunkLeavesMax)
	}
	for i := 1; i < len(leaves); i++ {
		if bytes.Compare(leaves[i-1].path[:], leaves[i].path[:]) >= 0 {
			return nil, fmt.Errorf("%w: export leaves %d and %d", ErrChunkUnsorted, i-1, i)
		}
	}
	t := newSnapTree(leaves)
	if got := t.root(); got != types.Hash(root) {
		return nil, fmt.Errorf("%w: snapshot source: leaves of height %d hash to %x, root is %s", ErrCorrupt, height, got, root)
	}
	runs, ranges := chunkBounds(leaves, per)
	if len(runs) > SnapshotChunksMax {
		return nil, fmt.Errorf("%w: %d chunks, limit %d; raise the leaves per chunk", ErrSnapshotManifest, len(runs), SnapshotChunksMax)
	}
	proofs := make([][]ProofNode, len(runs))
	for i, r := range ranges {
		proofs[i] = t.proof(r[0], r[1])
	}
	return &snapPlan{height: height, root: root, leaves: leaves, runs: runs, ranges: ranges, proofs: proofs}, nil
}

type encodedChunk struct {
	b   []byte
	ref ChunkRef
}

// cut encodes every chunk and hands it to emit in index order, then returns
// the manifest. read returns the keys and values of p.leaves[lo:hi], one
// chunk's leaves; it runs on several goroutines at once (inOrder), because
// reading values is most of the time an export takes.
func (p *snapPlan) cut(read func(lo, hi int) ([]SnapshotLeaf, error), emit func(index int, chunk []byte) error) (*Manifest, error) {
	m := &Manifest{Height: p.height, Root: p.root, Leaves: uint64(len(p.leaves)), Chunks: make([]ChunkRef, 0, len(p.runs))}
	err := inOrder(len(p.runs), func(i int) (encodedChunk, error) {
		run := p.runs[i]
		kv, err := read(run[0], run[1])
		if err != nil {
			return encodedChunk{}, err
		}
		c := &Chunk{
			Height: p.height, Index: uint32(i),
			Start: p.ranges[i][0], End: p.ranges[i][1],
			Leaves: kv,
			Proof:  p.proofs[i],
		}
		b, err := EncodeChunk(c)
		if err != nil {
			return encodedChunk{}, err
		}
		return encodedChunk{b, ChunkRef{Start: c.Start, End: c.End, Leaves: uint64(len(kv)), Hash: sha256.Sum256(b)}}, nil
	}, func(i int, c encodedChunk) error {
		m.Chunks = append(m.Chunks, c.ref)
		return emit(i, c.b)
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// buildSnapshot is the in-memory form of an export: it cuts kv (sorted by
// key path) into chunks of at most per leaves, hands each encoded chunk to
// emit in index order, and returns the manifest.
func buildSnapshot(height uint64, root types.Root, kv []SnapshotLeaf, per int, emit func(index int, chunk []byte) error) (*Manifest, error) {
	leaves := make([]snapLeaf, len(kv))
	for i, l := range kv {
		p := types.KeyPath(l.Key)
		leaves[i] = snapLeaf{path: p, hash: types.LeafHash(p, types.ValueHash(l.Value))}
	}
	p, err := planSnapshot(height, root, leaves, per)
	if err != nil {
		return nil, err
	}
	return p.cut(func(lo, hi int) ([]SnapshotLeaf, error) { return kv[lo:hi], nil }, emit)
}
