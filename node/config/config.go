// Package config reads and writes the TOML configuration of one validator
// (`kairos node --home DIR`) and generates the homes of a local
// multi-process testnet (`kairos init`).
//
// A home holds config.toml and the validator's key file (hex of the 32-byte
// ed25519 seed, mode 0600). The validator list in config.toml is the
// genesis: every validator of a network must have the same one.
//
// Loading is strict: unknown keys, a missing or malformed key file, a key
// that is not in the validator list, and non-loopback addresses (this
// version runs on 127.0.0.1 only) are errors wrapping ErrConfig.
package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/p2p"
)

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("config: bad node configuration")

// File names inside a home.
const (
	FileName = "config.toml"
	KeyName  = "validator.key"
)

// MaxValidators bounds the validator list read from a file.
const MaxValidators = consensus.MaxValidators

// Validator is one genesis entry.
type Validator struct {
	PublicKey string `toml:"public_key"` // hex ed25519
	Weight    uint64 `toml:"weight"`
	Address   string `toml:"address"` // libp2p multiaddr, without /p2p
}

// Genesis holds the network rules beside the validator list that every
// validator must share (consensus.Params): where checkpoints are signed,
// where logs are compacted (so every validator can serve the same
// snapshots) and how often an idle chain makes an empty block. All three
// are required; Load checks them with consensus.NewCommittee.
type Genesis struct {
	CheckpointInterval   uint64 `toml:"checkpoint_interval"`
	CompactEvery         uint64 `toml:"compact_every"`
	EmptyBlockIntervalMs int64  `toml:"empty_block_interval_ms"` // 0 = never
}

// DefaultGenesis is what WriteTestnet writes: consensus.DefaultParams.
func DefaultGenesis() Genesis {
	p := consensus.DefaultParams()
	return Genesis{CheckpointInterval: p.CheckpointInterval, CompactEvery: p.CompactEvery,
		EmptyBlockIntervalMs: p.EmptyBlockInterval / int64(time.Millisecond)}
}

// File is config.toml.
type File struct {
	ChainID      string      `toml:"chain_id"`
	KeyFile      string      `toml:"key_file"` // relative to the home
	DataDir      string      `toml:"data_dir"` // relative to the home
	Listen       string      `toml:"listen"`   // libp2p multiaddr
	API          string      `toml:"api"`      // host:port of the HTTP API
	KeepVersions uint64      `toml:"keep_versions"`
	Genesis      Genesis     `toml:"genesis"`
	Validators   []Validator `toml:"validators"`
}

// Loaded is a checked configuration.
type Loaded struct {
	File      File
	Home      string
	Key       ed25519.PrivateKey
	Committee *consensus.Committee
	Bootstrap []peer.AddrInfo // every other validator
	DataDir   string
}

// Load reads and checks home/config.toml and the key file.
func Load(home string) (*Loaded, error) {
	var f File
	md, err := toml.DecodeFile(filepath.Join(home, FileName), &f)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%w: unknown keys %v", ErrConfig, und)
	}
	if f.ChainID == "" || f.KeyFile == "" || f.DataDir == "" || len(f.Validators) == 0 || len(f.Validators) > MaxValidators {
		return nil, fmt.Errorf("%w: chain_id, key_file, data_dir and 1..%d validators are required", ErrConfig, MaxValidators)
	}
	if err := loopbackMultiaddr(f.Listen); err != nil {
		return nil, fmt.Errorf("%w: listen: %w", ErrConfig, err)
	}
	if host, _, err := net.SplitHostPort(f.API); err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("%w: api %q must be 127.0.0.1:port", ErrConfig, f.API)
	}
	seed, err := os.ReadFile(filepath.Join(home, f.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: key: %w", ErrConfig, err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(seed)))
	if err != nil || len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: key file must hold the hex of a %d-byte seed", ErrConfig, ed25519.SeedSize)
	}
	l := &Loaded{File: f, Home: home, Key: ed25519.NewKeyFromSeed(raw), DataDir: filepath.Join(home, f.DataDir)}
	me := hex.EncodeToString(l.Key.Public().(ed25519.PublicKey))
	vals := make([]consensus.Validator, len(f.Validators))
	found := false
	for i, v := range f.Validators {
		pub, err := hex.DecodeString(v.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: validator %d public_key", ErrConfig, i)
		}
		id, err := p2p.PeerID(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: validator %d: %w", ErrConfig, i, err)
		}
		vals[i] = consensus.Validator{PeerID: id.String(), Key: pub, Weight: v.Weight}
		if v.PublicKey == me {
			found = true
			continue
		}
		if err := loopbackMultiaddr(v.Address); err != nil {
			return nil, fmt.Errorf("%w: validator %d address: %w", ErrConfig, i, err)
		}
		addr, _ := ma.NewMultiaddr(v.Address)
		l.Bootstrap = append(l.Bootstrap, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}})
	}
	if !found {
		return nil, fmt.Errorf("%w: the key file's key is not in the validator list", ErrConfig)
	}
	for _, k := range []string{"checkpoint_interval", "compact_every", "empty_block_interval_ms"} {
		if !md.IsDefined("genesis", k) {
			return nil, fmt.Errorf("%w: genesis.%s is required (the same on every validator)", ErrConfig, k)
		}
	}
	p := consensus.DefaultParams()
	p.CheckpointInterval, p.CompactEvery = f.Genesis.CheckpointInterval, f.Genesis.CompactEvery
	if f.Genesis.EmptyBlockIntervalMs < 0 || f.Genesis.EmptyBlockIntervalMs > math.MaxInt64/int64(time.Millisecond) {
		return nil, fmt.Errorf("%w: genesis.empty_block_interval_ms %d", ErrConfig, f.Genesis.EmptyBlockIntervalMs)
	}
	p.EmptyBlockInterval = f.Genesis.EmptyBlockIntervalMs * int64(time.Millisecond)
	if l.Committee, err = consensus.NewCommittee(f.ChainID, 0, vals, p, nil); err != nil {
		return nil, fmt.Errorf("%w: genesis: %w", ErrConfig, err)
	}
	return l, nil
}

func loopbackMultiaddr(s string) error {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return err
	}
	if ip, err := a.ValueForProtocol(ma.P_IP4); err != nil || ip != "127.0.0.1" {
		return fmt.Errorf("%q is not on /ip4/127.0.0.1", s)
	}
	return nil
}

// NodeConfig returns the node configuration of l (runner and logging are
// the caller's).
func (l *Loaded) NodeConfig() node.Config {
	return node.Config{Committee: l.Committee, Key: l.Key, Dir: l.DataDir, Bootstrap: l.Bootstrap,
		Listen: []string{l.File.Listen}, KeepVersions: l.File.KeepVersions}
}

// WriteTestnet creates homes dir/0 .. dir/n-1 of a local testnet with fresh
// random keys: validator i listens on 127.0.0.1:p2pPort+i and serves its API
// on 127.0.0.1:apiPort+i. Existing files are not overwritten.
func WriteTestnet(dir, chainID string, n, p2pPort, apiPort int) ([]string, error) {
	if n < 1 || n > MaxValidators || chainID == "" || p2pPort <= 0 || apiPort <= 0 || p2pPort+n > 65535 || apiPort+n > 65535 {
		return nil, fmt.Errorf("%w: %d validators, chain %q, ports %d/%d", ErrConfig, n, chainID, p2pPort, apiPort)
	}
	seeds := make([][]byte, n)
	vals := make([]Validator, n)
	for i := range seeds {
		seeds[i] = make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seeds[i]); err != nil {
			return nil, err
		}
		pub := ed25519.NewKeyFromSeed(seeds[i]).Public().(ed25519.PublicKey)
		vals[i] = Validator{PublicKey: hex.EncodeToString(pub), Weight: 1, Address: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort+i)}
	}
	var homes []string
	for i := range seeds {
		home := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(home, 0o700); err != nil {
			return nil, err
		}
		f := File{ChainID: chainID, KeyFile: KeyName, DataDir: "data", Listen: vals[i].Address,
			API: fmt.Sprintf("127.0.0.1:%d", apiPort+i), Genesis: DefaultGenesis(), Validators: vals}
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(f); err != nil {
			return nil, err
		}
		if err := writeNew(filepath.Join(home, KeyName), []byte(hex.EncodeToString(seeds[i])+"\n"), 0o600); err != nil {
			return nil, err
		}
		if err := writeNew(filepath.Join(home, FileName), []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
		homes = append(homes, home)
	}
	return homes, nil
}

// writeNew writes a file that must not exist yet, synced.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
