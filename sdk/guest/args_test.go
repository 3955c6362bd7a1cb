package guest_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

// TestArgsMatchDecodeInput: Args.Decode gives DecodeInput's value, status
// and abort message, and Args.DecodeCaller those and Caller's address, for
// every input — exact, short at each length, with a
// trailing byte, with each byte set to 2 (a bool that does not decode) —
// for fixed layouts (fields, pairs, pairs of pairs) and for codecs the
// fixed path does not take (a byte field, a custom codec inside a pair).
func TestArgsMatchDecodeInput(t *testing.T) {
	a, b := guesttest.Addr("a"), guesttest.Addr("b")
	addrPair := guest.PairCodec(guest.AddressCodec, guest.AddressCodec)
	checkArgs(t, guest.PairCodec(guest.AddressCodec, guest.Uint64Codec), guest.Pair[guest.Address, uint64]{First: a, Second: 1<<63 | 9})
	checkArgs(t, guest.PairCodec(guest.AddressCodec, guest.Int64Codec), guest.Pair[guest.Address, int64]{First: b, Second: -1 << 62})
	checkArgs(t, guest.PairCodec(addrPair, guest.Uint64Codec), guest.Pair[guest.Pair[guest.Address, guest.Address], uint64]{First: guest.Pair[guest.Address, guest.Address]{First: a, Second: b}, Second: 5})
	checkArgs(t, guest.PairCodec(guest.Uint32Codec, guest.PairCodec(guest.BoolCodec, guest.Int64Codec)), guest.Pair[uint32, guest.Pair[bool, int64]]{First: 0xdeadbeef, Second: guest.Pair[bool, int64]{First: true, Second: -3}})
	checkArgs(t, guest.PairCodec(guest.BoolCodec, guest.Uint32Codec), guest.Pair[bool, uint32]{First: true, Second: 7})
	checkArgs(t, guest.Uint64Codec, uint64(42))
	checkArgs(t, guest.BoolCodec, true)
	checkArgs(t, guest.AddressCodec, b)
	checkArgs(t, guest.PairCodec(guest.AddressCodec, guest.StringCodec), guest.Pair[guest.Address, string]{First: a, Second: "hi"})
	checkArgs(t, guest.PairCodec(wrap(guest.Uint64Codec), guest.Uint64Codec), guest.Pair[uint64, uint64]{First: 1, Second: 2})
	// Five addresses (160 bytes) pass argsFixedMax: the generic path.
	big := guest.PairCodec(guest.PairCodec(addrPair, addrPair), guest.AddressCodec)
	checkArgs(t, big, guest.Pair[guest.Pair[guest.Pair[guest.Address, guest.Address], guest.Pair[guest.Address, guest.Address]], guest.Address]{Second: a})
}

func checkArgs[T comparable](t *testing.T, c guest.Codec[T], v T) {
	t.Helper()
	args := guest.NewArgs(c)
	enc := guest.Encode(c, v)
	inputs := [][]byte{enc, append(bytes.Clone(enc), 0), nil}
	for n := range len(enc) {
		inputs = append(inputs, enc[:n])
	}
	for i := range enc {
		bad := bytes.Clone(enc)
		bad[i] = 2
		inputs = append(inputs, bad)
	}
	ch := newChain()
	for _, in := range inputs {
		var got, want T
		body = func() { got = args.Decode() }
		rg := ch.Call(user, mod, "run", in)
		body = func() { want = guest.DecodeInput(c) }
		rw := ch.Call(user, mod, "run", in)
		if got != want || rg.Status != rw.Status || rg.Message != rw.Message {
			t.Errorf("%T %x: Args %v %s %q, DecodeInput %v %s %q", v, in, got, rg.Status, rg.Message, want, rw.Status, rw.Message)
		}
		if bytes.Equal(in, enc) && (rg.Status != guesttest.StatusOK || got != v) {
			t.Errorf("%T: round trip %v %s %q, want %v", v, got, rg.Status, rg.Message, v)
		}
		// DecodeCaller is Decode then Caller.
		var gotCaller guest.Address
		body = func() { got = args.DecodeCaller(&gotCaller) }
		rc := ch.Call(user, mod, "run", in)
		if rc.Status != rg.Status || rc.Message != rg.Message || rc.Status == guesttest.StatusOK && (got != want || gotCaller != user) {
			t.Errorf("%T %x: DecodeCaller %v %v %s %q, Decode %v %s %q, caller %v", v, in, got, gotCaller, rc.Status, rc.Message, want, rg.Status, rg.Message, user)
		}
	}
}

// TestEventFieldsMatchEncoder: random sequences of fixed-size fields give
// the bytes an Encoder gives, up to EventFieldsLenMax exactly; one byte
// more aborts at Emit with the limit's message, and nothing is emitted.
func TestEventFieldsMatchEncoder(t *testing.T) {
	ev := guest.NewEvent("ev.1")
	rng := rand.New(rand.NewPCG(5, 6))
	ch := newChain()
	for i := range 300 {
		var ops []func(*guest.EventFields, *guest.Encoder)
		size := 0
		for size < guest.EventFieldsLenMax+40 && rng.IntN(12) > 0 {
			var a guest.Address
			for j := range a {
				a[j] = byte(rng.Uint32())
			}
			x := rng.Uint64()
			k := rng.IntN(5)
			size += []int{32, 8, 8, 4, 1}[k]
			ops = append(ops, []func(*guest.EventFields, *guest.Encoder){
				func(f *guest.EventFields, e *guest.Encoder) { f.Address(a); e.PutAddress(a) },
				func(f *guest.EventFields, e *guest.Encoder) { f.Uint64(x); e.PutUint64(x) },
				func(f *guest.EventFields, e *guest.Encoder) { f.Int64(int64(x)); e.PutInt64(int64(x)) },
				func(f *guest.EventFields, e *guest.Encoder) { f.Uint32(uint32(x)); e.PutUint32(uint32(x)) },
				func(f *guest.EventFields, e *guest.Encoder) { f.Bool(x&1 == 1); e.PutBool(x&1 == 1) },
			}[k])
		}
		var e guest.Encoder
		body = func() {
			f := ev.Fields()
			for _, op := range ops {
				op(f, &e)
			}
			f.Emit()
		}
		r := ch.Call(user, mod, "run", nil)
		if len(e.Bytes()) > guest.EventFieldsLenMax {
			if r.Status != guesttest.StatusAborted || r.Message != "guest: event fields longer than EventFieldsLenMax" || len(r.Events) != 0 {
				t.Fatalf("case %d: %d bytes: %s %q %d events, want the limit's abort", i, len(e.Bytes()), r.Status, r.Message, len(r.Events))
			}
			continue
		}
		if r.Status != guesttest.StatusOK || len(r.Events) != 1 || r.Events[0].Topic != "ev.1" || !bytes.Equal(r.Events[0].Data, e.Bytes()) {
			t.Fatalf("case %d: %s %q %v, want one ev.1 event %x", i, r.Status, r.Message, r.Events, e.Bytes())
		}
	}
	// Exactly at the limit: four addresses.
	body = func() {
		ev.Fields().Address(guest.Address{}).Address(guest.Address{1: 1}).Address(guest.Address{}).Address(guest.Address{31: 2}).Emit()
	}
	if r := ch.Call(user, mod, "run", nil); r.Status != guesttest.StatusOK || len(r.Events[0].Data) != guest.EventFieldsLenMax {
		t.Fatalf("at the limit: %s %q", r.Status, r.Message)
	}
}

// TestNewEventChecksTopic: a topic outside ValidEventTopic panics at
// NewEvent (package initialization), with the topic in the message.
func TestNewEventChecksTopic(t *testing.T) {
	for _, topic := range []string{"", "Bad", "a b", string(make([]byte, guest.EventTopicLenMax+1))} {
		func() {
			defer func() {
				if r := recover(); r == nil || !bytes.Contains([]byte(fmt.Sprint(r)), []byte("bad event topic")) {
					t.Errorf("NewEvent(%q): recovered %v, want a bad-topic panic", topic, r)
				}
			}()
			guest.NewEvent(topic)
		}()
	}
	if guest.NewEvent("a.b_1") == (guest.Event{}) {
		t.Error("a valid topic gave the zero Event")
	}
}
