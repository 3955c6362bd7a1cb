package p2p

import (
	"bytes"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
)

// answeredStream is a stream whose responder has already answered and
// stopped reading: writes succeed, CloseWrite fails (as QUIC's does once
// STOP_SENDING has arrived), and reads return the response.
type answeredStream struct {
	network.Stream // nil: calling anything else panics
	resp           *bytes.Reader
	closeErr       error
}

func (s *answeredStream) Write(p []byte) (int, error) { return len(p), nil }
func (s *answeredStream) Read(p []byte) (int, error)  { return s.resp.Read(p) }
func (s *answeredStream) CloseWrite() error           { return s.closeErr }

// TestExchangeAfterResponderClosed: the response is returned when the
// responder's close has cancelled our write side before CloseWrite (the
// race that failed TestRequestRoundTrip/quic once); with no response the
// close error is part of the error.
func TestExchangeAfterResponderClosed(t *testing.T) {
	closeErr := errors.New("close called for canceled stream 16")
	var frame bytes.Buffer
	if err := writeResponse(&frame, statusOK, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	s := &answeredStream{resp: bytes.NewReader(frame.Bytes()), closeErr: closeErr}
	resp, err := exchange(s, []byte("who"), 1<<10)
	if err != nil || string(resp) != "answer" {
		t.Fatalf("exchange = %q, %v; want the response", resp, err)
	}

	s = &answeredStream{resp: bytes.NewReader(nil), closeErr: closeErr}
	if _, err := exchange(s, []byte("who"), 1<<10); !errors.Is(err, closeErr) || !errors.Is(err, ErrTruncated) {
		t.Fatalf("exchange without a response: %v, want the close error and ErrTruncated", err)
	}
}
