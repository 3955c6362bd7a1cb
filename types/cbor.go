package types

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// Limits on what Decode accepts; they bound the work a hostile input can
// cause before any field is looked at.
const (
	// CBORMaxNesting is the deepest array/map nesting Decode accepts.
	CBORMaxNesting = 16
	// CBORMaxItems is the largest array or map Decode accepts.
	CBORMaxItems = 1 << 17
)

// Decoding errors. Each is wrapped with detail; test with errors.Is.
var (
	ErrNonCanonical = errors.New("types: cbor input is not in canonical form")
	ErrFloat        = errors.New("types: cbor floats are not allowed")
	ErrIndefinite   = errors.New("types: cbor indefinite lengths are not allowed")
	ErrTag          = errors.New("types: cbor tags are not allowed")
	ErrTrailing     = errors.New("types: trailing bytes after cbor item")
	ErrMalformed    = errors.New("types: malformed cbor")
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   CBORMaxNesting,
		MaxArrayElements:  CBORMaxItems,
		MaxMapPairs:       CBORMaxItems,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Encode returns the canonical CBOR encoding of v.
func Encode(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("types: encode %T: %w", v, err)
	}
	return b, nil
}

// MustEncode is Encode for values whose types are known to encode (the
// project's own structs); a failure is a programmer error.
func MustEncode(v any) []byte {
	b, err := Encode(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Decode reads exactly one canonical CBOR item from data into v. It rejects
// trailing bytes, duplicate map keys, indefinite lengths, floats, tags,
// unknown struct fields, and any encoding other than the canonical one (so
// that two different byte strings never decode to the same value).
func Decode(data []byte, v any) error {
	if err := scan(data); err != nil {
		return err
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Re-encoding is the simplest complete test of canonical form: shortest
	// integer heads, sorted map keys and no unknown fields all follow from
	// byte equality.
	again, err := encMode.Marshal(reflect.ValueOf(v).Elem().Interface())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(again, data) {
		return ErrNonCanonical
	}
	return nil
}

// scan walks the item structure of data without allocating and rejects what
// the decoder would otherwise accept silently or with an unclear error.
func scan(data []byte) error {
	n, err := scanItem(data, 0)
	if err != nil {
		return err
	}
	if n != len(data) {
		return fmt.Errorf("%w: %d of %d bytes used", ErrTrailing, n, len(data))
	}
	return nil
}

// scanItem returns the length of the item starting at data[0].
func scanItem(data []byte, depth int) (int, error) {
	if depth > CBORMaxNesting {
		return 0, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, CBORMaxNesting)
	}
	if len(data) == 0 {
		return 0, fmt.Errorf("%w: unexpected end of input", ErrMalformed)
	}
	major, info := data[0]>>5, data[0]&0x1f
	if info == 31 {
		return 0, ErrIndefinite
	}
	if info >= 28 {
		return 0, fmt.Errorf("%w: reserved additional info %d", ErrMalformed, info)
	}
	if major == 7 {
		switch info {
		case 25, 26, 27:
			return 0, ErrFloat
		case 24:
			if len(data) < 2 {
				return 0, fmt.Errorf("%w: unexpected end of input", ErrMalformed)
			}
			return 2, nil
		default:
			return 1, nil
		}
	}
	if major == 6 {
		return 0, ErrTag
	}
	arg, hl := uint64(info), 1
	if info >= 24 {
		size := 1 << (info - 24)
		if len(data) < 1+size {
			return 0, fmt.Errorf("%w: unexpected end of input", ErrMalformed)
		}
		arg = 0
		for _, b := range data[1 : 1+size] {
			arg = arg<<8 | uint64(b)
		}
		hl = 1 + size
	}
	switch major {
	case 0, 1:
		return hl, nil
	case 2, 3:
		if arg > uint64(len(data)-hl) {
			return 0, fmt.Errorf("%w: string longer than input", ErrMalformed)
		}
		return hl + int(arg), nil
	default: // 4 array, 5 map
		items := arg
		if major == 5 {
			if items > CBORMaxItems {
				return 0, fmt.Errorf("%w: map of %d pairs", ErrMalformed, items)
			}
			items *= 2
		}
		if items > CBORMaxItems*2 || items > uint64(len(data)) {
			return 0, fmt.Errorf("%w: container of %d items in %d bytes", ErrMalformed, arg, len(data))
		}
		off := hl
		for i := uint64(0); i < items; i++ {
			n, err := scanItem(data[off:], depth+1)
			if err != nil {
				return 0, err
			}
			off += n
		}
		return off, nil
	}
}
