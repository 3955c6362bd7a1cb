package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// A request is one frame on a fresh stream; the requester then closes its
// write side. The response is one frame whose first byte is a status:
// statusOK followed by the response, or statusError followed by a UTF-8
// message of at most maxErrorBytes.
const (
	statusOK    = 0
	statusError = 1
	// maxErrorBytes caps the error text a responder sends back.
	maxErrorBytes = 256
)

// RequestHandler serves one request and returns the response (at most
// MaxResponseBytes) or an error whose text is sent to the requester. It
// must return once ctx is done (the request timeout). It is called
// concurrently and owns req.
type RequestHandler func(ctx context.Context, from peer.ID, req []byte) ([]byte, error)

// HandleRequest registers fn for proto (fetch certificates, transactions,
// blocks, checkpoints by id or range).
func (h *Host) HandleRequest(proto protocol.ID, fn RequestHandler) {
	c := h.metrics.Kind(string(proto))
	h.host.SetStreamHandler(proto, func(s network.Stream) {
		from := s.Conn().RemotePeer()
		_ = s.SetReadDeadline(time.Now().Add(h.cfg.frameTimeout))
		r := bufio.NewReaderSize(s, readBufBytes)
		n, err := readPrefix(r, h.cfg.maxFrameBytes)
		if err != nil {
			h.streamFailed(s, c, truncated(err)) // EOF before a request is a truncation
			return
		}
		// Refuse over-rate requests before reading (allocating) them.
		if !h.limiter.allow(from, string(proto)) {
			c.Dropped.Add(1)
			_ = s.Reset()
			return
		}
		req, err := readBody(r, n)
		if err != nil {
			h.streamFailed(s, c, err)
			return
		}
		if !h.enter() {
			_ = s.Reset()
			return
		}
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.requestTimeout)
		resp, err := fn(ctx, from, req)
		cancel()
		h.leave()
		status := byte(statusOK)
		switch {
		case err != nil:
			c.Errors.Add(1)
			status, resp = statusError, errorText(err.Error())
		case len(resp) > h.cfg.maxResponseBytes:
			c.Oversize.Add(1)
			status, resp = statusError, errorText(fmt.Sprintf("response of %d bytes over the cap", len(resp)))
		}
		_ = s.SetWriteDeadline(time.Now().Add(h.cfg.frameTimeout))
		if err := writeResponse(s, status, resp); err != nil {
			h.streamFailed(s, c, err)
			return
		}
		c.In.Add(1)
		_ = s.Close()
	})
}

// errorText truncates msg to maxErrorBytes on a rune boundary.
func errorText(msg string) []byte {
	if len(msg) > maxErrorBytes {
		msg = msg[:maxErrorBytes]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	return []byte(msg)
}

// writeResponse writes the frame of status followed by body with one
// Write and one copy of body.
func writeResponse(w io.Writer, status byte, body []byte) error {
	buf := binary.AppendUvarint(make([]byte, 0, maxPrefixLen+1+len(body)), uint64(1+len(body)))
	buf = append(append(buf, status), body...)
	_, err := w.Write(buf)
	return err
}

// Request sends req to peer to on proto and returns the response. The
// whole exchange is bounded by the request timeout or ctx's deadline,
// whichever is earlier (ErrTimeout); responses above MaxResponseBytes are
// refused before allocation (ErrResponseTooLarge); a handler error comes
// back as ErrRemote with the remote's text.
func (h *Host) Request(ctx context.Context, to peer.ID, proto protocol.ID, req []byte) ([]byte, error) {
	c := h.metrics.Kind(string(proto))
	if len(req) > h.cfg.maxFrameBytes {
		c.Oversize.Add(1)
		return nil, fmt.Errorf("%w: request of %d > %d bytes", ErrFrameTooLarge, len(req), h.cfg.maxFrameBytes)
	}
	dl := deadline(ctx, h.cfg.requestTimeout)
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	s, err := h.host.NewStream(ctx, to, proto)
	if err != nil {
		return nil, h.sendFailed(c, fmt.Errorf("p2p: open %s to %s: %w", proto, to, err))
	}
	_ = s.SetDeadline(dl)
	c.Out.Add(1)
	resp, err := exchange(s, req, h.cfg.maxResponseBytes)
	if err != nil {
		_ = s.Reset()
		err = fmt.Errorf("p2p: request %s to %s: %w", proto, to, err)
		switch {
		case errors.Is(err, ErrResponseTooLarge):
			c.Oversize.Add(1)
			return nil, err
		case errors.Is(err, ErrRemote):
			c.Errors.Add(1)
			return nil, err
		}
		return nil, h.sendFailed(c, err)
	}
	_ = s.Close()
	return resp, nil
}

// exchange writes the request frame and reads the response frame.
//
// A failed CloseWrite is not fatal by itself: the responder may have
// answered and closed its read side already (on QUIC that cancels our
// write side, and CloseWrite then reports "close called for canceled
// stream"), so the response is read first and the close error only
// explains a response that did not come.
func exchange(s network.Stream, req []byte, maxResp int) ([]byte, error) {
	if err := writeFrame(s, req); err != nil {
		return nil, err
	}
	closeErr := s.CloseWrite()
	frame, err := readFrame(bufio.NewReaderSize(s, readBufBytes), maxResp+1)
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			return nil, fmt.Errorf("%w: %w", ErrResponseTooLarge, err)
		}
		if closeErr != nil {
			return nil, fmt.Errorf("close write: %w; read: %w", closeErr, truncated(err))
		}
		return nil, truncated(err)
	}
	return parseResponse(frame)
}

// parseResponse splits a response frame into its status and body.
func parseResponse(frame []byte) ([]byte, error) {
	if len(frame) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrBadResponse)
	}
	switch frame[0] {
	case statusOK:
		return frame[1:], nil
	case statusError:
		if len(frame)-1 > maxErrorBytes || !utf8.Valid(frame[1:]) {
			return nil, fmt.Errorf("%w: error text not UTF-8 or over %d bytes", ErrBadResponse, maxErrorBytes)
		}
		return nil, fmt.Errorf("%w: %s", ErrRemote, frame[1:])
	default:
		return nil, fmt.Errorf("%w: status %d", ErrBadResponse, frame[0])
	}
}
