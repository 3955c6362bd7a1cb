package sdk

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kairos-network/kairos/types"
)

func TestKeySaveLoad(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "key")
	if err := SaveKey(path, k); err != nil {
		t.Fatal(err)
	}
	if err := SaveKey(path, k); err == nil {
		t.Fatal("SaveKey overwrote an existing key")
	}
	got, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Priv, k.Priv) || got.Address() != types.AddressFromPublicKey(k.Public()) {
		t.Fatal("loaded key differs")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	for name, content := range map[string]string{
		"empty": "", "not hex": "zz", "short": "00ff", "long": string(bytes.Repeat([]byte("0"), keyFileMax+1)),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKey(p); !errors.Is(err, ErrKey) {
			t.Errorf("%s: %v, want %v", name, err, ErrKey)
		}
	}
}

// testCommittee has n validators of weight 1 with keys from fixed seeds.
func testCommittee(n int) (*Committee, []ed25519.PrivateKey) {
	c := &Committee{ChainID: "sdk-test", Epoch: 3}
	var keys []ed25519.PrivateKey
	for i := range n {
		s := sha256.Sum256([]byte(fmt.Sprint("sdk-test-validator-", i)))
		keys = append(keys, ed25519.NewKeyFromSeed(s[:]))
		c.Validators = append(c.Validators, Validator{Key: keys[i].Public().(ed25519.PublicKey), Weight: 1})
	}
	return c, keys
}

func sign(c *Committee, keys []ed25519.PrivateKey, cc *CheckpointCert, signers ...uint32) {
	cc.Signers, cc.Sigs = nil, nil
	for _, s := range signers {
		v := checkpointVote{Height: cc.Height, BlockID: cc.BlockID, StateRoot: cc.StateRoot, OrderingStateHash: cc.OrderingStateHash, Signer: s}
		d := c.signingHash(types.MustEncode(&v))
		cc.Signers = append(cc.Signers, s)
		cc.Sigs = append(cc.Sigs, ed25519.Sign(keys[s], d[:]))
	}
}

// TestQuorum: with f = floor((w-1)/3), the most faulty weight a committee
// of weight w tolerates, two quorums intersect in more than f (safety) and
// the w-f honest weight reaches a quorum alone (liveness).
func TestQuorum(t *testing.T) {
	for w := uint64(1); w <= 40; w++ {
		c := &Committee{}
		for range w {
			c.Validators = append(c.Validators, Validator{Weight: 1})
		}
		f := (w - 1) / 3
		q := c.Quorum()
		if 2*q <= w+f || q > w-f {
			t.Errorf("w=%d: quorum %d is unsafe or unreachable (f=%d)", w, q, f)
		}
	}
}

// TestVerifyCheckpoint: one valid certificate, then one mutation per rule.
func TestVerifyCheckpoint(t *testing.T) {
	c, keys := testCommittee(4)
	base := CheckpointCert{Height: 9, BlockID: [32]byte{1}, StateRoot: types.Root{2}, OrderingStateHash: [32]byte{3}}
	sign(c, keys, &base, 0, 1, 3)
	if err := c.VerifyCheckpoint(&base); err != nil {
		t.Fatalf("valid certificate rejected: %v", err)
	}
	cases := []struct {
		name string
		mod  func(cc *CheckpointCert, c *Committee)
		want error
	}{
		{"below quorum", func(cc *CheckpointCert, c *Committee) { sign(c, keys, cc, 0, 1) }, ErrNoQuorum},
		{"unknown signer", func(cc *CheckpointCert, c *Committee) { cc.Signers[2] = 4 }, ErrCheckpoint},
		{"duplicate signer", func(cc *CheckpointCert, c *Committee) { sign(c, keys, cc, 0, 1, 1) }, ErrCheckpoint},
		{"descending", func(cc *CheckpointCert, c *Committee) { sign(c, keys, cc, 3, 1, 0) }, ErrCheckpoint},
		{"missing signature", func(cc *CheckpointCert, c *Committee) { cc.Sigs = cc.Sigs[:2] }, ErrCheckpoint},
		{"bad signature", func(cc *CheckpointCert, c *Committee) { cc.Sigs[1] = append([]byte{}, cc.Sigs[0]...) }, ErrCheckpoint},
		{"other root", func(cc *CheckpointCert, c *Committee) { cc.StateRoot[0] ^= 1 }, ErrCheckpoint},
		{"other height", func(cc *CheckpointCert, c *Committee) { cc.Height++ }, ErrCheckpoint},
		{"other block", func(cc *CheckpointCert, c *Committee) { cc.BlockID[5] ^= 1 }, ErrCheckpoint},
		{"other ordering", func(cc *CheckpointCert, c *Committee) { cc.OrderingStateHash[5] ^= 1 }, ErrCheckpoint},
		{"other chain", func(cc *CheckpointCert, c *Committee) { c.ChainID = "x" }, ErrCheckpoint},
		{"other epoch", func(cc *CheckpointCert, c *Committee) { c.Epoch++ }, ErrCheckpoint},
		{"short key", func(cc *CheckpointCert, c *Committee) { c.Validators[1].Key = c.Validators[1].Key[:5] }, ErrCheckpoint},
		{"no validators", func(cc *CheckpointCert, c *Committee) { c.Validators = nil }, ErrCommittee},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := base
			cc.Signers = append([]uint32{}, base.Signers...)
			cc.Sigs = append([][]byte{}, base.Sigs...)
			cm := *c
			cm.Validators = append([]Validator{}, c.Validators...)
			tc.mod(&cc, &cm)
			if err := cm.VerifyCheckpoint(&cc); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzVerifyCheckpoint: any bytes decoded as a certificate are rejected
// with an error or accepted, never a panic; an accepted one carries a
// quorum of distinct known signers.
func FuzzVerifyCheckpoint(f *testing.F) {
	c, keys := testCommittee(4)
	cc := CheckpointCert{Height: 1}
	sign(c, keys, &cc, 0, 1, 2)
	f.Add(types.MustEncode(&cc))
	f.Add([]byte{0x86})
	f.Fuzz(func(t *testing.T, b []byte) {
		var cc CheckpointCert
		if types.Decode(b, &cc) != nil {
			return
		}
		if c.VerifyCheckpoint(&cc) == nil && len(cc.Signers) < 3 {
			t.Fatalf("accepted %d signers", len(cc.Signers))
		}
	})
}
