package wasmfile

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// module assembles a binary from sections, so tests state their input
// byte by byte instead of depending on a wasm toolchain.
func module(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

func section(id byte, body ...byte) []byte {
	return append([]byte{id, byte(len(body))}, body...)
}

func TestParseSmallModule(t *testing.T) {
	b := module(
		section(1, 2, 0x60, 2, I32, I64, 1, I32, 0x60, 0, 0), // types
		section(2, 1, 1, 'k', 3, 'a', 'b', 'c', KindFunc, 0), // import k.abc type 0
		section(3, 1, 1),       // one function of type 1
		section(5, 1, 1, 2, 3), // memory min 2 max 3
		section(7, 2, 1, 'm', KindMemory, 0, 3, 'r', 'u', 'n', KindFunc, 1), // exports
	)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Imports) != 1 || m.Imports[0].Module != "k" || m.Imports[0].Name != "abc" || m.Imports[0].Type.String() != "(i32, i64) -> i32" {
		t.Fatalf("imports %+v", m.Imports)
	}
	if len(m.Memories) != 1 || m.Memories[0] != (Memory{Min: 2, Max: 3}) {
		t.Fatalf("memories %+v", m.Memories)
	}
	if len(m.Exports) != 2 || m.Exports[1].Name != "run" || m.Exports[1].Type.String() != "() -> ()" || m.Exports[0].Kind != KindMemory {
		t.Fatalf("exports %+v", m.Exports)
	}
	if m.HasStart {
		t.Fatal("no start section was given")
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string][]byte{
		"empty":             {},
		"bad magic":         []byte("\x00asn\x01\x00\x00\x00"),
		"bad version":       []byte("\x00asm\x02\x00\x00\x00"),
		"truncated section": module([]byte{1, 5, 0}),
		"huge vector":       module(section(1, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"leb too long":      module(section(1, 0x80, 0x80, 0x80, 0x80, 0x80, 0)),
		"bad type form":     module(section(1, 1, 0x61, 0, 0)),
		"import type index": module(section(2, 1, 1, 'k', 1, 'f', KindFunc, 0)),
		"import kind":       module(section(2, 1, 1, 'k', 1, 'f', 9, 0)),
		"export func index": module(section(7, 1, 1, 'f', KindFunc, 0)),
		"out of order":      module(section(3, 0), section(1, 0)),
		"duplicate":         module(section(1, 0), section(1, 0)),
		"unknown section":   module(section(13, 0)),
		"trailing bytes":    module(section(1, 0, 0)),
		"limits flags":      module(section(5, 1, 4, 0)),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestParseCommittedWAT(t *testing.T) {
	b, err := os.ReadFile("../../counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range m.Exports {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, ","); got != "memory,increment,get" {
		t.Fatalf("exports %s", got)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../counter_wat/counter.wasm"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, e := range m.Exports {
			_ = e.Type.String()
		}
	})
}
