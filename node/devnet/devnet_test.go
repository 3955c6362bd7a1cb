package devnet

import (
	"errors"
	"net/http"
	"testing"
)

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Dir: ""},
		{Dir: t.TempDir(), Validators: MaxValidators + 1},
		{Dir: t.TempDir(), Validators: -1},
		{Dir: t.TempDir(), APIAddr: "0.0.0.0:0"},
		{Dir: t.TempDir(), APIAddr: "localhost"},
		{Dir: t.TempDir(), APIAddr: "127.0.0.1:x"},
	} {
		if d, err := Start(c); !errors.Is(err, ErrConfig) {
			if d != nil {
				d.Close()
			}
			t.Errorf("Start(%+v) = %v, want %v", c, err, ErrConfig)
		}
	}
}

func TestStartServesAPIs(t *testing.T) {
	d, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	}()
	if len(d.Nodes) != 4 || len(d.APIs) != 4 {
		t.Fatalf("%d nodes, %d APIs", len(d.Nodes), len(d.APIs))
	}
	for i, u := range d.APIs {
		resp, err := http.Get(u + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("validator %d status: %d", i, resp.StatusCode)
		}
	}
}
