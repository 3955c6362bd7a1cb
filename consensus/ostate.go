package consensus

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
)

// MaxOrderingStateBytes bounds an encoded ordering state taken from a peer
// or a disk. The released ids the ordering layer remembers dominate it
// (about 40 bytes each, for 2 × tx_expiry): 12 MiB holds about 300 000,
// 15 000 tx/s for 20 s, and fits one p2p response (16 MiB) with its
// certificate.
const MaxOrderingStateBytes = 12 << 20

// OrderingState is everything the core carries from one committed sub-DAG
// to the next that the commit rule and the ordering layer read, taken
// right after a sub-DAG that released a block. A core restored from it
// (Config.Restore) and given the certificates of rounds >= GCRound commits
// and releases exactly what a core that replayed the whole history does:
//
//   - LastAnchor: the commit rule only looks at anchors above it;
//   - SubIndex: the index of the next committed sub-DAG;
//   - GCRound (= LastAnchor − GCDepth, or 0): the commit walk, the DAG
//     edges and the self-parent rule ignore everything below it;
//   - Committed: which certificates at or above GCRound are committed
//     already (a later anchor's sub-DAG leaves them out). It is a set of
//     (round, digest), not a round per author, because a Byzantine
//     author's certificates need not commit in round order; the round
//     lets a restored core that has not fetched a certificate again still
//     export the same set after its gc round moves;
//   - Order: the fair-ordering layer (clocks T[j], pending acks, released
//     ids still remembered, last block and watermark).
//
// Everything else in the core is local (votes, own header, fetch
// bookkeeping, payloads held) and comes back from the node's log or from
// peers. The state is a pure function of the committed sequence, so every
// honest node derives the same bytes, and its hash goes into checkpoint
// votes.
type OrderingState struct {
	_          struct{} `cbor:",toarray"`
	Height     uint64   // last released block; equals Order.Height
	LastAnchor uint64
	SubIndex   uint64
	GCRound    uint64
	Committed  []CommittedCert // ascending (round, digest)
	Order      order.State
}

// CommittedCert names a committed certificate in an OrderingState.
type CommittedCert struct {
	_      struct{} `cbor:",toarray"`
	Round  uint64
	Digest Digest
}

func (a CommittedCert) less(b CommittedCert) bool {
	if a.Round != b.Round {
		return a.Round < b.Round
	}
	return bytes.Compare(a.Digest[:], b.Digest[:]) < 0
}

// Encode returns the canonical bytes of s; their sha2-256 is
// CheckpointVote.OrderingStateHash.
func (s *OrderingState) Encode() []byte { return types.MustEncode(s) }

// Hash returns the sha2-256 digest of s's canonical bytes, the same as
// sha256.Sum256(s.Encode()) without building them: the released ids
// (Order.Gone) are most of the state (about 4 MB at 5 000 tx/s) and every
// checkpoint height hashes it, so Hash encodes everything but them and
// feeds Gone to the hash in place. CBOR is compositional, so the encoding
// is the encoding of s with an empty Gone, split where that empty byte
// string stands, with Gone's byte-string header and bytes put in between.
func (s *OrderingState) Hash() [32]byte {
	if s.Order.Gone == nil {
		// Encoded as null, not as an empty byte string (a layer that
		// never released anything); the state is small then.
		return sha256.Sum256(s.Encode())
	}
	cut := *s
	cut.Order.Gone = []byte{}
	enc := cut.Encode()
	// What follows Gone: Order's last three fields, which end the
	// encoding (Order is the outer array's last field).
	tail := types.MustEncode(&orderTail{Height: s.Order.Height, Last: s.Order.Last, LastB: s.Order.LastB})[1:]
	head := enc[:len(enc)-len(tail)-len(emptyBytes)]
	h := sha256.New()
	h.Write(head)
	h.Write(types.AppendHead(nil, 2, uint64(len(s.Order.Gone))))
	h.Write(s.Order.Gone)
	h.Write(tail)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// orderTail is the fields of order.State after Gone, encoded alone (one
// array-header byte, then the same bytes as in order.State). A field added
// to either state breaks Hash; TestOrderingStateHashStreamed then fails.
type orderTail struct {
	_      struct{} `cbor:",toarray"`
	Height uint64
	Last   [32]byte
	LastB  int64
}

// emptyBytes is the canonical encoding of an empty byte string.
var emptyBytes = types.MustEncode([]byte{})

// DecodeOrderingState decodes an ordering state and checks that it is
// canonical and fits the committee. The caller checks its hash against a
// checkpoint certificate first: a state's shape proves nothing about its
// content.
func (c *Committee) DecodeOrderingState(b []byte) (*OrderingState, error) {
	if len(b) > MaxOrderingStateBytes {
		return nil, fmt.Errorf("%w: ordering state of %d bytes", ErrTooLarge, len(b))
	}
	var s OrderingState
	if err := types.Decode(b, &s); err != nil {
		return nil, fmt.Errorf("%w: ordering state: %w", ErrMalformed, err)
	}
	if err := c.checkOrderingState(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *Committee) checkOrderingState(s *OrderingState) error {
	if s.Height != s.Order.Height {
		return fmt.Errorf("%w: ordering state height %d, layer height %d", ErrMalformed, s.Height, s.Order.Height)
	}
	if g := gcRoundAfter(s.LastAnchor, c.Params.GCDepth); s.GCRound != g {
		return fmt.Errorf("%w: ordering state gc round %d, anchor %d implies %d", ErrMalformed, s.GCRound, s.LastAnchor, g)
	}
	// Every committed certificate in the window is one per (author, round).
	if limit := uint64(len(c.Validators)) * (c.Params.GCDepth + 1); uint64(len(s.Committed)) > limit {
		return fmt.Errorf("%w: %d committed certificates, at most %d", ErrTooLarge, len(s.Committed), limit)
	}
	for i, cc := range s.Committed {
		if cc.Round < s.GCRound || cc.Round > s.LastAnchor {
			return fmt.Errorf("%w: committed certificate of round %d outside [%d, %d]", ErrMalformed, cc.Round, s.GCRound, s.LastAnchor)
		}
		if i > 0 && !s.Committed[i-1].less(cc) {
			return fmt.Errorf("%w: committed certificates not strictly ascending", ErrMalformed)
		}
	}
	return nil
}

// gcRoundAfter is the gc round once anchor has committed.
func gcRoundAfter(anchor, depth uint64) uint64 {
	if anchor > depth {
		return anchor - depth
	}
	return 0
}

// orderingState exports the core's state after the last committed
// sub-DAG.
func (c *Core) orderingState() *OrderingState {
	s := &OrderingState{Height: c.ord.Height(), LastAnchor: c.lastAnchor, SubIndex: c.subIndex, GCRound: c.gcRound,
		Order: c.ord.State()}
	for d, n := range c.dag {
		if r := n.cert.Header.Round; n.committed && r >= c.gcRound {
			s.Committed = append(s.Committed, CommittedCert{Round: r, Digest: d})
		}
	}
	// Restored as committed but not in the DAG again (not fetched yet):
	// still committed, and at or above the gc round (gc drops the rest).
	for d, r := range c.restored {
		s.Committed = append(s.Committed, CommittedCert{Round: r, Digest: d})
	}
	slices.SortFunc(s.Committed, func(a, b CommittedCert) int {
		if a.less(b) {
			return -1
		}
		return 1 // distinct digests never compare equal
	})
	return s
}

// restore sets the commit and ordering state from s (checked already).
func (c *Core) restore(s *OrderingState) error {
	ord, err := order.Restore(c.ord.Params(), &s.Order)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c.ord = ord
	c.lastAnchor, c.subIndex, c.gcRound = s.LastAnchor, s.SubIndex, s.GCRound
	c.restored = make(map[Digest]uint64, len(s.Committed))
	for _, cc := range s.Committed {
		c.restored[cc.Digest] = cc.Round
	}
	return nil
}
