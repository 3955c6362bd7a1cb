package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTestnetLoads(t *testing.T) {
	homes, err := WriteTestnet(t.TempDir(), "local", 4, 19000, 18600)
	if err != nil {
		t.Fatal(err)
	}
	var first *Loaded
	for i, h := range homes {
		l, err := Load(h)
		if err != nil {
			t.Fatalf("home %d: %v", i, err)
		}
		if len(l.Bootstrap) != 3 || l.Committee.Q() != 3 || l.File.API != "127.0.0.1:"+[]string{"18600", "18601", "18602", "18603"}[i] {
			t.Fatalf("home %d: %d bootstrap peers, Q=%d, api %s", i, len(l.Bootstrap), l.Committee.Q(), l.File.API)
		}
		if first == nil {
			first = l
		}
		for j, v := range l.Committee.Validators {
			if string(v.Key) != string(first.Committee.Validators[j].Key) {
				t.Fatalf("home %d has another genesis", i)
			}
		}
		if p := l.Committee.Params; p.CheckpointInterval != 1 || p.CompactEvery != 256 || p.EmptyBlockInterval != 10e9 {
			t.Fatalf("home %d: genesis params %+v", i, p)
		}
		nc := l.NodeConfig()
		if nc.Dir != filepath.Join(h, "data") || !nc.Key.Equal(l.Key) || len(nc.Listen) != 1 {
			t.Fatalf("home %d node config %+v", i, nc)
		}
	}
	if _, err := WriteTestnet(filepath.Dir(homes[0]), "local", 4, 19000, 18600); !errors.Is(err, ErrConfig) {
		t.Fatalf("writing over an existing testnet: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	edit := func(t *testing.T, f func(home, cfg string) string) string {
		homes, err := WriteTestnet(t.TempDir(), "local", 4, 19000, 18600)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(homes[0], FileName))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(homes[0], FileName), []byte(f(homes[0], string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
		return homes[0]
	}
	cases := map[string]func(home, cfg string) string{
		"unknown key": func(_, c string) string { return "surprise = 1\n" + c },
		"not toml":    func(_, c string) string { return "[[[" },
		"public listen": func(_, c string) string {
			return strings.Replace(c, `listen = "/ip4/127.0.0.1/`, `listen = "/ip4/0.0.0.0/`, 1)
		},
		"public api":       func(_, c string) string { return strings.Replace(c, `api = "127.0.0.1:`, `api = "0.0.0.0:`, 1) },
		"no chain":         func(_, c string) string { return strings.Replace(c, `chain_id = "local"`, `chain_id = ""`, 1) },
		"bad public key":   func(_, c string) string { return strings.Replace(c, `public_key = "`, `public_key = "zz`, 1) },
		"zero weight":      func(_, c string) string { return strings.Replace(c, `weight = 1`, `weight = 0`, 1) },
		"missing key file": func(home, c string) string { os.Remove(filepath.Join(home, KeyName)); return c },
		"short key": func(home, c string) string {
			os.WriteFile(filepath.Join(home, KeyName), []byte("abcd"), 0o600)
			return c
		},
		"key not a validator": func(home, c string) string {
			os.WriteFile(filepath.Join(home, KeyName), []byte(strings.Repeat("ab", 32)), 0o600)
			return c
		},
		"no genesis": func(_, c string) string {
			return strings.Replace(strings.Replace(c, "[genesis]", "", 1), "checkpoint_interval", "x_checkpoint_interval", 1)
		},
		"no checkpoint interval": func(_, c string) string { return strings.Replace(c, "checkpoint_interval = 1\n", "", 1) },
		"no empty block interval": func(_, c string) string {
			return strings.Replace(c, "empty_block_interval_ms = 10000\n", "", 1)
		},
		"checkpoint interval 0": func(_, c string) string {
			return strings.Replace(c, "checkpoint_interval = 1", "checkpoint_interval = 0", 1)
		},
		"checkpoint interval 101": func(_, c string) string {
			return strings.Replace(c, "checkpoint_interval = 1", "checkpoint_interval = 101", 1)
		},
		"compact not a multiple": func(_, c string) string {
			return strings.Replace(c, "checkpoint_interval = 1", "checkpoint_interval = 10", 1) // compact_every 256
		},
		"negative empty interval": func(_, c string) string {
			return strings.Replace(c, "empty_block_interval_ms = 10000", "empty_block_interval_ms = -1", 1)
		},
		"public peer address": func(_, c string) string {
			return strings.Replace(c, `address = "/ip4/127.0.0.1/tcp/19001"`, `address = "/ip4/8.8.8.8/tcp/19001"`, 1)
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Load(edit(t, f)); !errors.Is(err, ErrConfig) {
				t.Fatalf("Load: %v, want %v", err, ErrConfig)
			}
		})
	}
}
