package wasm

// Encode writes m in canonical form (see the package invariants). It trusts
// m to be well-formed; encoding a Module that Decode returned or that a pass
// built from one always succeeds.
func Encode(m *Module) []byte {
	var n int
	var pad map[int]uint8
	if m.Layout != nil {
		pad = m.Layout.pad
	}
	w := writer{pad: pad, n: &n}
	w.b = append(w.b, magicVersion...)
	s := writer{pad: pad, n: &n}
	customs := func(after byte) {
		for _, c := range m.Customs {
			if c.After == after {
				k := w.next() // the size comes first in the byte stream
				s.reset()
				s.name(c.Name)
				s.b = append(s.b, c.Data...)
				w.section(SecCustom, s.b, k)
			}
		}
	}
	customs(0)
	emit := func(id byte, count int, body func()) {
		if count > 0 {
			k := w.next()
			s.reset()
			body()
			w.section(id, s.b, k)
		}
		// Customs that followed a section we did not write (because it
		// was empty) would be lost; a section is only recorded as After
		// when it was present, and present sections decode to n > 0 or
		// (for start and data count) non-nil.
		customs(id)
	}
	emit(SecType, len(m.Types), func() {
		s.u32(uint32(len(m.Types)))
		for _, t := range m.Types {
			s.b = append(s.b, 0x60)
			s.vals(t.Params)
			s.vals(t.Results)
		}
	})
	emit(SecImport, len(m.Imports), func() {
		s.u32(uint32(len(m.Imports)))
		for _, im := range m.Imports {
			s.name(im.Module)
			s.name(im.Name)
			s.b = append(s.b, byte(im.Kind))
			switch im.Kind {
			case ExternFunc:
				s.u32(im.TypeIndex)
			case ExternTable:
				s.b = append(s.b, 0x70)
				s.limits(im.Limits)
			case ExternMemory:
				s.limits(im.Limits)
			case ExternGlobal:
				s.globalType(im.Global)
			}
		}
	})
	emit(SecFunction, len(m.Funcs), func() {
		s.u32(uint32(len(m.Funcs)))
		for _, f := range m.Funcs {
			s.u32(f)
		}
	})
	emit(SecTable, len(m.Tables), func() {
		s.u32(uint32(len(m.Tables)))
		for _, t := range m.Tables {
			s.b = append(s.b, 0x70)
			s.limits(t)
		}
	})
	emit(SecMemory, len(m.Memories), func() {
		s.u32(uint32(len(m.Memories)))
		for _, l := range m.Memories {
			s.limits(l)
		}
	})
	emit(SecGlobal, len(m.Globals), func() {
		s.u32(uint32(len(m.Globals)))
		for _, g := range m.Globals {
			s.globalType(g.GlobalType)
			s.constExpr(g.Init)
		}
	})
	emit(SecExport, len(m.Exports), func() {
		s.u32(uint32(len(m.Exports)))
		for _, e := range m.Exports {
			s.name(e.Name)
			s.b = append(s.b, byte(e.Kind))
			s.u32(e.Index)
		}
	})
	emit(SecStart, bool2int(m.Start != nil), func() { s.u32(*m.Start) })
	emit(SecElement, len(m.Elements), func() {
		s.u32(uint32(len(m.Elements)))
		for _, e := range m.Elements {
			s.u32(0)
			s.constExpr(e.Offset)
			s.u32(uint32(len(e.Funcs)))
			for _, f := range e.Funcs {
				s.u32(f)
			}
		}
	})
	emit(SecDataCount, bool2int(m.DataCount != nil), func() { s.u32(*m.DataCount) })
	emit(SecCode, len(m.Code), func() {
		s.u32(uint32(len(m.Code)))
		f := writer{pad: pad, n: &n}
		for i := range m.Code {
			k := f.next()
			f.reset()
			c := &m.Code[i]
			f.u32(uint32(len(c.Locals)))
			for _, l := range c.Locals {
				f.u32(l.Count)
				f.b = append(f.b, byte(l.Type))
			}
			for j := range c.Body {
				f.instr(&c.Body[j])
			}
			f.b = append(f.b, byte(OpEnd))
			s.uleb(uint64(len(f.b)), k)
			s.b = append(s.b, f.b...)
		}
	})
	emit(SecData, len(m.Data), func() {
		s.u32(uint32(len(m.Data)))
		for _, d := range m.Data {
			s.u32(d.Flags)
			if d.Flags == DataActiveExplicit {
				s.u32(0)
			}
			if d.Flags != DataPassive {
				s.constExpr(d.Offset)
			}
			s.u32(uint32(len(d.Init)))
			s.b = append(s.b, d.Init...)
		}
	})
	return w.b
}

// EncodeInstrs appends the encoding of instructions to dst; tests and tools
// use it to build bodies.
func EncodeInstrs(dst []byte, body []Instr) []byte {
	w := writer{b: dst}
	for i := range body {
		w.instr(&body[i])
	}
	return w.b
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writer appends the encoding. When a module has a Layout, all writers of
// one Encode share an ordinal counter so padded integers land where they
// were read.
type writer struct {
	b   []byte
	pad map[int]uint8
	n   *int
}

func (w *writer) reset() { w.b = w.b[:0] }

func (w *writer) u32(v uint32) { w.uleb(uint64(v), w.next()) }

// next takes the next integer ordinal and returns its recorded width, or 0.
func (w *writer) next() int {
	if w.pad == nil {
		return 0
	}
	k := *w.n
	*w.n++
	return int(w.pad[k])
}

// ulebLen and slebLen are the minimal encoded sizes.
func ulebLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func slebLen(v int64) int {
	n := 1
	for v < -64 || v > 63 {
		v >>= 7
		n++
	}
	return n
}

// padded writes v in width bytes when that is a longer valid encoding
// (at most 5 bytes for 32-bit integers, 10 for 64-bit); otherwise minimal.
func (w *writer) padded(v uint64, width, minimal, maxWidth int, neg bool) bool {
	if width <= minimal || width > maxWidth {
		return false
	}
	for i := 0; i < width-1; i++ {
		w.b = append(w.b, byte(v&0x7F)|0x80)
		v >>= 7
		if neg {
			v |= 0x7F << 57
		}
	}
	w.b = append(w.b, byte(v&0x7F))
	return true
}

func (w *writer) uleb(v uint64, width int) {
	maxW := 10
	if v <= 0xFFFFFFFF {
		maxW = 5
	}
	if w.padded(v, width, ulebLen(v), maxW, false) {
		return
	}
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		w.b = append(w.b, c)
		if v == 0 {
			return
		}
	}
}

func (w *writer) sleb(v int64, maxW int) {
	if w.padded(uint64(v), w.next(), slebLen(v), maxW, v < 0) {
		return
	}
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			w.b = append(w.b, c)
			return
		}
		w.b = append(w.b, c|0x80)
	}
}

func (w *writer) name(s string) {
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
}

// section writes a section whose size integer had ordinal width sizeWidth.
func (w *writer) section(id byte, payload []byte, sizeWidth int) {
	w.b = append(w.b, id)
	w.uleb(uint64(len(payload)), sizeWidth)
	w.b = append(w.b, payload...)
}

func (w *writer) vals(v []ValType) {
	w.u32(uint32(len(v)))
	for _, t := range v {
		w.b = append(w.b, byte(t))
	}
}

func (w *writer) limits(l Limits) {
	if l.HasMax {
		w.b = append(w.b, 1)
		w.u32(l.Min)
		w.u32(l.Max)
		return
	}
	w.b = append(w.b, 0)
	w.u32(l.Min)
}

func (w *writer) globalType(g GlobalType) {
	w.b = append(w.b, byte(g.Type), bool2byte(g.Mutable))
}

func bool2byte(b bool) byte { return byte(bool2int(b)) }

func (w *writer) constExpr(in Instr) {
	w.instr(&in)
	w.b = append(w.b, byte(OpEnd))
}

func (w *writer) instr(in *Instr) {
	if in.Op > 0xFF {
		w.b = append(w.b, 0xFC)
		w.u32(uint32(in.Op & 0xFF))
	} else {
		w.b = append(w.b, byte(in.Op))
	}
	switch in.Op.encodeKind() {
	case immRefType:
		w.b = append(w.b, byte(FuncRef))
	case immBlockType:
		w.sleb(int64(in.A), 5)
	case immIndex:
		w.u32(uint32(in.A))
	case immBrTable:
		labels := in.Labels()
		w.u32(uint32(len(labels)))
		for _, t := range labels {
			w.u32(t)
		}
		w.u32(uint32(in.A))
	case immCallInd:
		w.u32(uint32(in.A))
		w.b = append(w.b, 0)
	case immMemArg:
		w.u32(uint32(in.A))
		w.u32(in.B)
	case immMemByte:
		w.b = append(w.b, 0)
	case immI32:
		w.sleb(int64(int32(in.A)), 5)
	case immI64:
		w.sleb(int64(in.A), 10)
	case immF32:
		v := uint32(in.A)
		w.b = append(w.b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	case immF64:
		v := in.A
		for range 8 {
			w.b = append(w.b, byte(v))
			v >>= 8
		}
	case immDataMem:
		w.u32(uint32(in.A))
		w.b = append(w.b, 0)
	case immTwoMem:
		w.b = append(w.b, 0, 0)
	}
}
