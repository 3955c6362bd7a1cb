package sdk

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kairos-network/kairos/types"
)

// ErrKey reports a key file that is not a hex ed25519 seed.
var ErrKey = errors.New("sdk: bad key")

// Key is an ed25519 signing key with its account address.
type Key struct {
	Priv ed25519.PrivateKey
}

// GenerateKey returns a new key read from r (crypto/rand when nil).
func GenerateKey(r io.Reader) (*Key, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("sdk: generate key: %w", err)
	}
	return &Key{Priv: priv}, nil
}

// KeyFromSeed returns the key of a 32-byte seed.
func KeyFromSeed(seed []byte) (*Key, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: seed of %d bytes, want %d", ErrKey, len(seed), ed25519.SeedSize)
	}
	return &Key{Priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public returns the public key.
func (k *Key) Public() ed25519.PublicKey { return k.Priv.Public().(ed25519.PublicKey) }

// Address returns the account address of the key.
func (k *Key) Address() types.Address { return types.AddressFromPublicKey(k.Public()) }

// SaveKey writes k's seed as hex to path, readable by the owner only. It
// refuses to overwrite an existing file, so a key is never lost by
// mistake.
func SaveKey(path string, k *Key) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sdk: save key: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(k.Priv.Seed()) + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("sdk: save key: %w", err)
	}
	return nil
}

// keyFileMax bounds what LoadKey reads: a hex seed and some whitespace.
const keyFileMax = 256

// LoadKey reads a key saved by SaveKey.
func LoadKey(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sdk: load key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, keyFileMax+1))
	if err != nil {
		return nil, fmt.Errorf("sdk: load key: %w", err)
	}
	if len(b) > keyFileMax {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrKey, path, keyFileMax)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not hex: %w", ErrKey, path, err)
	}
	return KeyFromSeed(seed)
}
