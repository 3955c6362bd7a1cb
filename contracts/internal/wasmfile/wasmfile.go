package wasmfile

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed reports bytes that are not a wasm binary of the supported
// shape.
var ErrMalformed = errors.New("wasmfile: malformed module")

// Value types as they appear in signatures.
const (
	I32 = 0x7f
	I64 = 0x7e
	F32 = 0x7d
	F64 = 0x7c
)

// FuncType is a function signature.
type FuncType struct{ Params, Results []byte }

// String renders the signature like docs/abi.md: "(i32, i64) -> i32",
// "() -> ()".
func (t FuncType) String() string {
	list := func(v []byte) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = map[byte]string{I32: "i32", I64: "i64", F32: "f32", F64: "f64"}[x]
			if s[i] == "" {
				s[i] = fmt.Sprintf("0x%02x", x)
			}
		}
		return strings.Join(s, ", ")
	}
	res := list(t.Results)
	if len(t.Results) != 1 {
		res = "(" + res + ")"
	}
	return "(" + list(t.Params) + ") -> " + res
}

// External kinds of imports and exports.
const (
	KindFunc   = 0
	KindTable  = 1
	KindMemory = 2
	KindGlobal = 3
)

// Import is one import; Type is set for functions.
type Import struct {
	Module, Name string
	Kind         byte
	Type         FuncType
}

// Export is one export; Type is set for functions.
type Export struct {
	Name  string
	Kind  byte
	Index uint32
	Type  FuncType
}

// Memory is a defined memory's limits in pages; Max is -1 when absent.
type Memory struct {
	Min, Max int64
	Shared   bool
}

// Module is what Parse reads.
type Module struct {
	Imports  []Import
	Exports  []Export
	Memories []Memory // defined (not imported) memories
	HasStart bool
}

type reader struct {
	b   []byte
	off int
}

func (r *reader) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrMalformed, what, r.off)
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.fail("unexpected end")
	}
	r.off++
	return r.b[r.off-1], nil
}

// u32 reads an unsigned LEB128 of at most 5 bytes that fits 32 bits.
func (r *reader) u32() (uint32, error) {
	var v uint64
	for i := 0; i < 5; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if v > 0xffffffff {
				return 0, r.fail("u32 overflow")
			}
			return uint32(v), nil
		}
	}
	return 0, r.fail("u32 too long")
}

// count reads a vector length and rejects one larger than the bytes left
// (each element takes at least one byte), so no input makes Parse allocate
// more than its own size.
func (r *reader) count() (int, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if int64(n) > int64(len(r.b)-r.off) {
		return 0, r.fail("vector longer than the input")
	}
	return int(n), nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, r.fail("unexpected end")
	}
	r.off += n
	return r.b[r.off-n : r.off], nil
}

func (r *reader) name() (string, error) {
	n, err := r.count()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(n)
	return string(b), err
}

func (r *reader) valtypes() ([]byte, error) {
	n, err := r.count()
	if err != nil {
		return nil, err
	}
	b, err := r.bytes(n)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, b...), nil
}

func (r *reader) limits() (Memory, error) {
	flags, err := r.byte()
	if err != nil {
		return Memory{}, err
	}
	if flags > 3 {
		return Memory{}, r.fail("limits flags")
	}
	min, err := r.u32()
	if err != nil {
		return Memory{}, err
	}
	m := Memory{Min: int64(min), Max: -1, Shared: flags&2 != 0}
	if flags&1 != 0 {
		max, err := r.u32()
		if err != nil {
			return Memory{}, err
		}
		m.Max = int64(max)
	}
	return m, nil
}

// Parse reads a binary module.
func Parse(b []byte) (*Module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" || string(b[4:8]) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("%w: bad magic or version", ErrMalformed)
	}
	var (
		m         Module
		types     []FuncType
		funcTypes []uint32 // type index per function, imports first
		lastID    byte
	)
	r := &reader{b: b, off: 8}
	for r.off < len(b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		body, err := r.bytes(int(size))
		if err != nil {
			return nil, err
		}
		if id != 0 {
			// Known sections appear at most once, in increasing id order
			// (data count, 12, sits between 9 and 10).
			order := map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 10, 10: 11, 11: 12}
			if order[id] == 0 {
				return nil, r.fail(fmt.Sprintf("unknown section %d", id))
			}
			if order[id] <= order[lastID] {
				return nil, r.fail(fmt.Sprintf("section %d out of order", id))
			}
			lastID = id
		}
		s := &reader{b: body}
		switch id {
		case 1:
			err = s.vec(func() error {
				if f, err := s.byte(); err != nil || f != 0x60 {
					return s.fail("function type form")
				}
				p, err := s.valtypes()
				if err != nil {
					return err
				}
				res, err := s.valtypes()
				types = append(types, FuncType{p, res})
				return err
			})
		case 2:
			err = s.vec(func() error {
				var im Import
				var err error
				if im.Module, err = s.name(); err != nil {
					return err
				}
				if im.Name, err = s.name(); err != nil {
					return err
				}
				if im.Kind, err = s.byte(); err != nil {
					return err
				}
				switch im.Kind {
				case KindFunc:
					ti, err := s.u32()
					if err != nil {
						return err
					}
					if int(ti) >= len(types) {
						return s.fail("import type index")
					}
					im.Type = types[ti]
					funcTypes = append(funcTypes, ti)
				case KindTable:
					if _, err := s.byte(); err != nil {
						return err
					}
					_, err = s.limits()
				case KindMemory:
					_, err = s.limits()
				case KindGlobal:
					_, err = s.bytes(2)
				default:
					return s.fail("import kind")
				}
				m.Imports = append(m.Imports, im)
				return err
			})
		case 3:
			err = s.vec(func() error {
				ti, err := s.u32()
				if err == nil && int(ti) >= len(types) {
					err = s.fail("function type index")
				}
				funcTypes = append(funcTypes, ti)
				return err
			})
		case 5:
			err = s.vec(func() error {
				mem, err := s.limits()
				m.Memories = append(m.Memories, mem)
				return err
			})
		case 7:
			err = s.vec(func() error {
				var ex Export
				var err error
				if ex.Name, err = s.name(); err != nil {
					return err
				}
				if ex.Kind, err = s.byte(); err != nil {
					return err
				}
				if ex.Index, err = s.u32(); err != nil {
					return err
				}
				if ex.Kind == KindFunc {
					if int64(ex.Index) >= int64(len(funcTypes)) {
						return s.fail("export function index")
					}
					ex.Type = types[funcTypes[ex.Index]]
				}
				m.Exports = append(m.Exports, ex)
				return nil
			})
		case 8:
			m.HasStart = true
			_, err = s.u32()
		default:
			continue // code, data and others are not read
		}
		if err != nil {
			return nil, err
		}
		if s.off != len(body) {
			return nil, s.fail(fmt.Sprintf("section %d has trailing bytes", id))
		}
	}
	return &m, nil
}

func (r *reader) vec(elem func() error) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := elem(); err != nil {
			return err
		}
	}
	return nil
}
