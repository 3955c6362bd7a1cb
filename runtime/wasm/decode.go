package wasm

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Errors. Every decode error wraps exactly one of these.
var (
	// ErrMalformed: the bytes are not a well-formed binary module.
	ErrMalformed = errors.New("wasm: malformed binary")
	// ErrUnsupported: well-formed, but uses a feature Kairos does not run.
	ErrUnsupported = errors.New("wasm: unsupported feature")
)

// MaxBrTableDecode bounds the labels of one br_table the decoder accepts
// before any policy applies; it only exists so the decoder itself has a
// bound independent of the input length. Policy limits are in validate.
const MaxBrTableDecode = 1 << 20

var magicVersion = []byte{0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00}

// sectionOrder gives the position a non-custom section must appear at.
var sectionOrder = [13]int{
	SecType: 1, SecImport: 2, SecFunction: 3, SecTable: 4, SecMemory: 5,
	SecGlobal: 6, SecExport: 7, SecStart: 8, SecElement: 9, SecDataCount: 10,
	SecCode: 11, SecData: 12,
}

type reader struct {
	b      []byte
	off    int
	layout *Layout // shared by the readers of one module
}

func (r *reader) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.errf("unexpected end")
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n uint32) ([]byte, error) {
	if uint64(n) > uint64(r.remaining()) {
		return nil, r.errf("length %d past the end (%d left)", n, r.remaining())
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}

// uleb reads an unsigned LEB128 of at most bits bits. Over-long encodings
// and values that do not fit are malformed.
func (r *reader) uleb(bits uint) (uint64, error) {
	start := r.off
	v, err := r.ulebRaw(bits)
	if err == nil {
		r.layout.record(r.off-start, ulebLen(v))
	}
	return v, err
}

func (r *reader) ulebRaw(bits uint) (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7F) << shift
		if shift+7 >= bits { // last byte the width allows
			if c&0x80 != 0 || (c&0x7F)>>(bits-shift) != 0 {
				return 0, r.errf("integer too large for u%d", bits)
			}
			return v, nil
		}
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// sleb reads a signed LEB128 of at most bits bits, sign-extended to 64.
func (r *reader) sleb(bits uint) (int64, error) {
	start := r.off
	v, err := r.slebRaw(bits)
	if err == nil {
		r.layout.record(r.off-start, slebLen(v))
	}
	return v, err
}

func (r *reader) slebRaw(bits uint) (int64, error) {
	var v int64
	for shift := uint(0); ; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7F) << shift
		if shift+7 >= bits { // last byte the width allows
			used := bits - shift // value bits in this byte, 1..7
			top := (c & 0x7F) >> (used - 1)
			if c&0x80 != 0 || top != 0 && top != 0x7F>>(used-1) {
				return 0, r.errf("integer too large for s%d", bits)
			}
		}
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v, nil
		}
	}
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", r.errf("name is not UTF-8")
	}
	return string(b), nil
}

// count reads a vector length and checks it against the bytes left, given
// that each element takes at least min bytes: no allocation ever exceeds
// what the input could describe.
func (r *reader) count(min int) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n)*uint64(min) > uint64(r.remaining()) {
		return 0, r.errf("vector of %d entries cannot fit in %d bytes", n, r.remaining())
	}
	return n, nil
}

func (r *reader) valType() (ValType, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch ValType(c) {
	case I32, I64, F32, F64:
		return ValType(c), nil
	case 0x7B:
		return 0, fmt.Errorf("%w: SIMD (v128 value type)", ErrUnsupported)
	case 0x70, 0x6F:
		return 0, fmt.Errorf("%w: reference types (reference value type)", ErrUnsupported)
	}
	return 0, r.errf("invalid value type 0x%02x", c)
}

func (r *reader) limits(what string) (Limits, error) {
	flag, err := r.byte()
	if err != nil {
		return Limits{}, err
	}
	switch flag {
	case 0, 1:
	case 2, 3:
		return Limits{}, fmt.Errorf("%w: threads (shared %s)", ErrUnsupported, what)
	case 4, 5, 6, 7:
		return Limits{}, fmt.Errorf("%w: memory64 (%s)", ErrUnsupported, what)
	default:
		return Limits{}, r.errf("invalid limits flag 0x%02x", flag)
	}
	var l Limits
	if l.Min, err = r.u32(); err != nil {
		return l, err
	}
	if flag == 1 {
		l.HasMax = true
		if l.Max, err = r.u32(); err != nil {
			return l, err
		}
	}
	return l, nil
}

func (r *reader) tableType() (Limits, error) {
	c, err := r.byte()
	if err != nil {
		return Limits{}, err
	}
	if c == 0x6F {
		return Limits{}, fmt.Errorf("%w: reference types (externref table)", ErrUnsupported)
	}
	if c != 0x70 {
		return Limits{}, r.errf("invalid table element type 0x%02x", c)
	}
	return r.limits("table")
}

func (r *reader) globalType() (GlobalType, error) {
	t, err := r.valType()
	if err != nil {
		return GlobalType{}, err
	}
	m, err := r.byte()
	if err != nil {
		return GlobalType{}, err
	}
	if m > 1 {
		return GlobalType{}, r.errf("invalid mutability 0x%02x", m)
	}
	return GlobalType{Type: t, Mutable: m == 1}, nil
}

// constExpr reads a constant expression: one constant instruction and end.
func (r *reader) constExpr() (Instr, error) {
	in, err := r.instr()
	if err != nil {
		return Instr{}, err
	}
	switch in.Op {
	case OpI32Const, OpI64Const, OpF32Const, OpF64Const, OpGlobalGet:
	default:
		return Instr{}, fmt.Errorf("%w: constant expression with %v (extended constant expressions)", ErrUnsupported, in.Op)
	}
	end, err := r.byte()
	if err != nil {
		return Instr{}, err
	}
	if end != byte(OpEnd) {
		return Instr{}, fmt.Errorf("%w: constant expression longer than one instruction (extended constant expressions)", ErrUnsupported)
	}
	return in, nil
}

// instr reads one instruction with its immediates.
func (r *reader) instr() (Instr, error) {
	c, err := r.byte()
	if err != nil {
		return Instr{}, err
	}
	op := Opcode(c)
	if c == 0xFC {
		sub, err := r.u32()
		if err != nil {
			return Instr{}, err
		}
		if sub > 0xFF {
			return Instr{}, r.errf("unknown opcode 0xfc %d", sub)
		}
		op = 0xFC00 | Opcode(sub)
	}
	in := Instr{Op: op}
	switch op.kind() {
	case immInvalid:
		// Prefixes of whole proposals (0xFB GC, 0xFD SIMD, 0xFE threads)
		// are rejected on the prefix byte alone.
		if f, ok := unsupported[op]; ok {
			return in, fmt.Errorf("%w: %s (opcode %v)", ErrUnsupported, f, op)
		}
		return in, r.errf("unknown opcode %v", op)
	case immNone:
	case immBlockType:
		v, err := r.sleb(33)
		if err != nil {
			return in, err
		}
		if v < 0 {
			switch v {
			case BlockEmpty, BlockI32, BlockI64, BlockF32, BlockF64:
			case -5:
				return in, fmt.Errorf("%w: SIMD (v128 block type)", ErrUnsupported)
			case -16, -17:
				return in, fmt.Errorf("%w: reference types (reference block type)", ErrUnsupported)
			default:
				return in, r.errf("invalid block type %d", v)
			}
		}
		in.A = uint64(v)
	case immIndex:
		v, err := r.u32()
		in.A = uint64(v)
		if err != nil {
			return in, err
		}
	case immBrTable:
		n, err := r.count(1)
		if err != nil {
			return in, err
		}
		if n > MaxBrTableDecode {
			return in, r.errf("br_table of %d labels", n)
		}
		in.Targets = make([]uint32, n)
		for i := range in.Targets {
			if in.Targets[i], err = r.u32(); err != nil {
				return in, err
			}
		}
		v, err := r.u32()
		in.A = uint64(v)
		if err != nil {
			return in, err
		}
	case immCallInd:
		v, err := r.u32()
		if err != nil {
			return in, err
		}
		in.A = uint64(v)
		if err := r.zeroByte("table index", "reference types (call_indirect table index)"); err != nil {
			return in, err
		}
	case immMemArg:
		a, err := r.u32()
		if err != nil {
			return in, err
		}
		if a >= 64 {
			return in, fmt.Errorf("%w: multi-memory (memarg alignment flag 0x%x)", ErrUnsupported, a)
		}
		o, err := r.u32()
		if err != nil {
			return in, err
		}
		in.A, in.B = uint64(a), uint64(o)
	case immMemByte:
		if err := r.zeroByte("memory index", "multi-memory"); err != nil {
			return in, err
		}
	case immI32:
		v, err := r.sleb(32)
		if err != nil {
			return in, err
		}
		in.A = uint64(v)
	case immI64:
		v, err := r.sleb(64)
		if err != nil {
			return in, err
		}
		in.A = uint64(v)
	case immF32, immF64:
		n := uint32(4)
		if op == OpF64Const {
			n = 8
		}
		b, err := r.bytes(n)
		if err != nil {
			return in, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			in.A = in.A<<8 | uint64(b[i])
		}
	case immDataMem:
		v, err := r.u32()
		if err != nil {
			return in, err
		}
		in.A = uint64(v)
		if err := r.zeroByte("memory index", "multi-memory"); err != nil {
			return in, err
		}
	case immTwoMem:
		for range 2 {
			if err := r.zeroByte("memory index", "multi-memory"); err != nil {
				return in, err
			}
		}
	}
	return in, nil
}

func (r *reader) zeroByte(what, feature string) error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c != 0 {
		return fmt.Errorf("%w: %s (%s 0x%02x)", ErrUnsupported, feature, what, c)
	}
	return nil
}

// body decodes a function body up to and including its final end, which is
// not stored. It tracks block nesting only to find that end.
func (r *reader) body() ([]Instr, error) {
	// An instruction takes at least one byte: this bounds the allocation.
	out := make([]Instr, 0, min(r.remaining(), 1<<16))
	depth := 0
	for {
		if r.remaining() == 0 {
			return nil, r.errf("function body without end")
		}
		in, err := r.instr()
		if err != nil {
			return nil, err
		}
		switch in.Op {
		case OpBlock, OpLoop, OpIf:
			depth++
		case OpElse:
			if depth == 0 {
				return nil, r.errf("else outside if")
			}
		case OpEnd:
			if depth == 0 {
				if r.remaining() != 0 {
					return nil, r.errf("%d bytes after the end of a function body", r.remaining())
				}
				return out, nil
			}
			depth--
		}
		out = append(out, in)
	}
}

// Decode parses a binary module. See the package invariants.
func Decode(b []byte) (*Module, error) {
	r := &reader{b: b, layout: &Layout{}}
	if len(b) < len(magicVersion) || string(b[:4]) != string(magicVersion[:4]) {
		return nil, r.errf("not a wasm module (bad magic)")
	}
	if string(b[4:8]) != string(magicVersion[4:]) {
		return nil, r.errf("unsupported binary version")
	}
	r.off = 8
	m := &Module{Layout: r.layout}
	last := 0       // order of the last non-custom section
	var lastID byte // its id
	var funcCount *uint32
	for r.remaining() > 0 {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		payload, err := r.bytes(size)
		if err != nil {
			return nil, err
		}
		base := r.off - int(size)
		s := &reader{b: payload, layout: r.layout}
		if id == SecCustom {
			name, err := s.name()
			if err != nil {
				return nil, offset(err, base)
			}
			m.Customs = append(m.Customs, Custom{After: lastID, Name: name, Data: payload[s.off:]})
			continue
		}
		if int(id) >= len(sectionOrder) || sectionOrder[id] == 0 {
			return nil, r.errf("unknown section id %d", id)
		}
		if sectionOrder[id] <= last {
			return nil, r.errf("section %d out of order or repeated", id)
		}
		last, lastID = sectionOrder[id], id
		if err := m.section(id, s); err != nil {
			return nil, offset(err, base)
		}
		if s.remaining() != 0 {
			return nil, r.errf("section %d has %d trailing bytes", id, s.remaining())
		}
		if id == SecFunction {
			n := uint32(len(m.Funcs))
			funcCount = &n
		}
	}
	if funcCount != nil && int(*funcCount) != len(m.Code) || funcCount == nil && len(m.Code) != 0 {
		return nil, fmt.Errorf("%w: %d function declarations but %d bodies", ErrMalformed, len(m.Funcs), len(m.Code))
	}
	if len(r.layout.pad) == 0 {
		m.Layout = nil
	}
	if m.DataCount != nil && int(*m.DataCount) != len(m.Data) {
		return nil, fmt.Errorf("%w: data count %d but %d data segments", ErrMalformed, *m.DataCount, len(m.Data))
	}
	return m, nil
}

// offset adds a section's base to a decode error for a useful position; the
// error chain is kept.
func offset(err error, base int) error {
	return fmt.Errorf("%w (section at byte %d)", err, base)
}

func (m *Module) section(id byte, r *reader) error {
	switch id {
	case SecType:
		n, err := r.count(3)
		if err != nil {
			return err
		}
		m.Types = make([]FuncType, n)
		for i := range m.Types {
			c, err := r.byte()
			if err != nil {
				return err
			}
			if c != 0x60 {
				return fmt.Errorf("%w: type form 0x%02x (only function types)", ErrUnsupported, c)
			}
			for _, dst := range []*[]ValType{&m.Types[i].Params, &m.Types[i].Results} {
				k, err := r.count(1)
				if err != nil {
					return err
				}
				v := make([]ValType, k)
				for j := range v {
					if v[j], err = r.valType(); err != nil {
						return err
					}
				}
				*dst = v
			}
		}
	case SecImport:
		n, err := r.count(4)
		if err != nil {
			return err
		}
		m.Imports = make([]Import, n)
		for i := range m.Imports {
			im := &m.Imports[i]
			if im.Module, err = r.name(); err != nil {
				return err
			}
			if im.Name, err = r.name(); err != nil {
				return err
			}
			k, err := r.byte()
			if err != nil {
				return err
			}
			im.Kind = ExternKind(k)
			switch im.Kind {
			case ExternFunc:
				im.TypeIndex, err = r.u32()
			case ExternTable:
				im.Limits, err = r.tableType()
			case ExternMemory:
				im.Limits, err = r.limits("memory")
			case ExternGlobal:
				im.Global, err = r.globalType()
			case 4:
				err = fmt.Errorf("%w: exception handling (tag import)", ErrUnsupported)
			default:
				err = r.errf("invalid import kind 0x%02x", k)
			}
			if err != nil {
				return err
			}
		}
	case SecFunction:
		n, err := r.count(1)
		if err != nil {
			return err
		}
		m.Funcs = make([]uint32, n)
		for i := range m.Funcs {
			if m.Funcs[i], err = r.u32(); err != nil {
				return err
			}
		}
	case SecTable:
		n, err := r.count(2)
		if err != nil {
			return err
		}
		m.Tables = make([]Limits, n)
		for i := range m.Tables {
			if m.Tables[i], err = r.tableType(); err != nil {
				return err
			}
		}
	case SecMemory:
		n, err := r.count(2)
		if err != nil {
			return err
		}
		m.Memories = make([]Limits, n)
		for i := range m.Memories {
			if m.Memories[i], err = r.limits("memory"); err != nil {
				return err
			}
		}
	case SecGlobal:
		n, err := r.count(4)
		if err != nil {
			return err
		}
		m.Globals = make([]Global, n)
		for i := range m.Globals {
			g := &m.Globals[i]
			if g.GlobalType, err = r.globalType(); err != nil {
				return err
			}
			if g.Init, err = r.constExpr(); err != nil {
				return err
			}
		}
	case SecExport:
		n, err := r.count(3)
		if err != nil {
			return err
		}
		m.Exports = make([]Export, n)
		for i := range m.Exports {
			e := &m.Exports[i]
			if e.Name, err = r.name(); err != nil {
				return err
			}
			k, err := r.byte()
			if err != nil {
				return err
			}
			if k > 3 {
				return r.errf("invalid export kind 0x%02x", k)
			}
			e.Kind = ExternKind(k)
			if e.Index, err = r.u32(); err != nil {
				return err
			}
		}
	case SecStart:
		v, err := r.u32()
		if err != nil {
			return err
		}
		m.Start = &v
	case SecElement:
		n, err := r.count(3)
		if err != nil {
			return err
		}
		m.Elements = make([]Element, n)
		for i := range m.Elements {
			flag, err := r.u32()
			if err != nil {
				return err
			}
			if flag != 0 {
				if flag <= 7 {
					return fmt.Errorf("%w: reference types / table mutation (element segment flag %d)", ErrUnsupported, flag)
				}
				return r.errf("invalid element segment flag %d", flag)
			}
			e := &m.Elements[i]
			if e.Offset, err = r.constExpr(); err != nil {
				return err
			}
			k, err := r.count(1)
			if err != nil {
				return err
			}
			e.Funcs = make([]uint32, k)
			for j := range e.Funcs {
				if e.Funcs[j], err = r.u32(); err != nil {
					return err
				}
			}
		}
	case SecDataCount:
		v, err := r.u32()
		if err != nil {
			return err
		}
		m.DataCount = &v
	case SecCode:
		n, err := r.count(2)
		if err != nil {
			return err
		}
		m.Code = make([]Code, n)
		for i := range m.Code {
			size, err := r.u32()
			if err != nil {
				return err
			}
			b, err := r.bytes(size)
			if err != nil {
				return err
			}
			fr := &reader{b: b, layout: r.layout}
			if err := fr.code(&m.Code[i]); err != nil {
				return fmt.Errorf("function body %d: %w", i, err)
			}
		}
	case SecData:
		n, err := r.count(2)
		if err != nil {
			return err
		}
		m.Data = make([]Data, n)
		for i := range m.Data {
			d := &m.Data[i]
			if d.Flags, err = r.u32(); err != nil {
				return err
			}
			switch d.Flags {
			case DataActive:
			case DataPassive:
			case DataActiveExplicit:
				idx, err := r.u32()
				if err != nil {
					return err
				}
				if idx != 0 {
					return fmt.Errorf("%w: multi-memory (data segment for memory %d)", ErrUnsupported, idx)
				}
			default:
				return r.errf("invalid data segment flag %d", d.Flags)
			}
			if d.Flags != DataPassive {
				if d.Offset, err = r.constExpr(); err != nil {
					return err
				}
			}
			k, err := r.u32()
			if err != nil {
				return err
			}
			if d.Init, err = r.bytes(k); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *reader) code(c *Code) error {
	n, err := r.count(2)
	if err != nil {
		return err
	}
	c.Locals = make([]LocalDecl, n)
	for i := range c.Locals {
		if c.Locals[i].Count, err = r.u32(); err != nil {
			return err
		}
		if c.Locals[i].Type, err = r.valType(); err != nil {
			return err
		}
	}
	c.Body, err = r.body()
	return err
}
