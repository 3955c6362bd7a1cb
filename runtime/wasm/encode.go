package wasm

// Encode writes m in canonical form (see the package invariants). It trusts
// m to be well-formed; encoding a Module that Decode returned or that a pass
// built from one always succeeds.
func Encode(m *Module) []byte {
	var w writer
	w.b = append(w.b, magicVersion...)
	var s writer
	customs := func(after byte) {
		for _, c := range m.Customs {
			if c.After == after {
				s.reset()
				s.name(c.Name)
				s.b = append(s.b, c.Data...)
				w.section(SecCustom, s.b)
			}
		}
	}
	customs(0)
	emit := func(id byte, n int, body func()) {
		if n > 0 {
			s.reset()
			body()
			w.section(id, s.b)
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
		var f writer
		for i := range m.Code {
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
			s.u32(uint32(len(f.b)))
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

type writer struct{ b []byte }

func (w *writer) reset() { w.b = w.b[:0] }

func (w *writer) u32(v uint32) { w.uleb(uint64(v)) }

func (w *writer) uleb(v uint64) {
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

func (w *writer) sleb(v int64) {
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

func (w *writer) section(id byte, payload []byte) {
	w.b = append(w.b, id)
	w.u32(uint32(len(payload)))
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
	switch in.Op.kind() {
	case immBlockType:
		w.sleb(int64(in.A))
	case immIndex:
		w.u32(uint32(in.A))
	case immBrTable:
		w.u32(uint32(len(in.Targets)))
		for _, t := range in.Targets {
			w.u32(t)
		}
		w.u32(uint32(in.A))
	case immCallInd:
		w.u32(uint32(in.A))
		w.b = append(w.b, 0)
	case immMemArg:
		w.u32(uint32(in.A))
		w.u32(uint32(in.B))
	case immMemByte:
		w.b = append(w.b, 0)
	case immI32:
		w.sleb(int64(int32(in.A)))
	case immI64:
		w.sleb(int64(in.A))
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
