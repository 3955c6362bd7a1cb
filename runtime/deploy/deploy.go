package deploy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// Imports is the network's import allow-list: exactly the functions the
// engine registers, the host ABI (host.Funcs) then the virtual WASI
// (wasi.Funcs), so a module deploys if and only if every import it names
// is served (docs/abi.md sections 4 and 8). It is the one source of truth;
// validate.WASISubset is only the part the Go runtime itself imports.
func Imports() []validate.HostFunc { return append(host.Funcs(), wasi.Funcs()...) }

// Config is the network's deploy configuration: the default limits and
// Imports.
func Config() validate.Config {
	return validate.Config{Limits: validate.DefaultLimits(), Imports: Imports()}
}

// Prepared is a module that passed the pipeline, or as much of it as was
// measured before a rejection.
type Prepared struct {
	CodeCID      cid.Cid // CIDv1, raw codec, sha2-256 of Original
	Original     []byte
	Module       *wasm.Module // decoded Original; nil if it did not decode
	Uses         []validate.Use
	Instrumented []byte // nil unless validation passed
	MeterVersion int
}

// CodeCID is the id of a module's original bytes: CIDv1, raw codec,
// sha2-256 multihash.
func CodeCID(b []byte) cid.Cid {
	h, err := mh.Sum(b, mh.SHA2_256, -1)
	if err != nil {
		panic("deploy: sha2-256 multihash: " + err.Error()) // cannot fail for a fixed, known code
	}
	return cid.NewCidV1(cid.Raw, h)
}

// Prepare runs the pipeline. On a validation failure it returns the partial
// Prepared (CID, uses measured so far) and the validate error.
func Prepare(b []byte, cfg validate.Config) (*Prepared, error) {
	p := &Prepared{CodeCID: CodeCID(b), Original: b, MeterVersion: meter.Version}
	m, uses, err := validate.Check(b, cfg)
	p.Module, p.Uses = m, uses
	if err != nil {
		return p, err
	}
	im, err := meter.Instrument(m)
	if err != nil {
		return p, err
	}
	p.Instrumented = wasm.Encode(im)
	return p, nil
}

// ErrBadHostFunc: a host function description does not parse.
var ErrBadHostFunc = errors.New("deploy: bad host function description")

// ParseHostFunc parses "module.name(i32,i64)->(i32)" (results may be
// written without parentheses, "->" may be omitted for no results) into an
// allow-list entry. It is how operators and tools add host functions until
// the host ABI table is part of the build.
func ParseHostFunc(s string) (validate.HostFunc, error) {
	bad := func(why string) (validate.HostFunc, error) {
		return validate.HostFunc{}, fmt.Errorf("%w: %q: %s", ErrBadHostFunc, s, why)
	}
	open := strings.IndexByte(s, '(')
	closeAt := strings.IndexByte(s, ')')
	if open < 0 || closeAt < open {
		return bad("want module.name(params)->(results)")
	}
	qual := s[:open]
	dot := strings.LastIndexByte(qual, '.')
	if dot <= 0 || dot == len(qual)-1 {
		return bad("want module.name before the parameters")
	}
	params, err := parseVals(s[open+1 : closeAt])
	if err != nil {
		return bad(err.Error())
	}
	rest := strings.TrimSpace(s[closeAt+1:])
	var results []wasm.ValType
	if rest != "" {
		r, ok := strings.CutPrefix(rest, "->")
		if !ok {
			return bad("want -> before the results")
		}
		r = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(r), "("), ")")
		if results, err = parseVals(r); err != nil {
			return bad(err.Error())
		}
	}
	return validate.HostFunc{Module: qual[:dot], Name: qual[dot+1:], Type: wasm.FuncType{Params: params, Results: results}}, nil
}

func parseVals(s string) ([]wasm.ValType, error) {
	var out []wasm.ValType
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		t, ok := map[string]wasm.ValType{"i32": wasm.I32, "i64": wasm.I64, "f32": wasm.F32, "f64": wasm.F64}[f]
		if !ok {
			return nil, fmt.Errorf("unknown value type %q", f)
		}
		out = append(out, t)
	}
	return out, nil
}
