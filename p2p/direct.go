package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// readBufBytes sizes the buffered reader on an inbound stream; a frame
// body larger than this is read straight into its own buffer.
const readBufBytes = 4 << 10

// DirectHandler receives one direct message. It is called from the
// stream's goroutine, concurrently for different streams; it owns msg. A
// slow handler slows only the stream it was called from.
type DirectHandler func(from peer.ID, msg []byte)

// HandleDirect registers fn for inbound direct streams of proto (headers,
// votes). A stream carries any number of length-prefixed frames; see
// doc.go for the caps and deadlines applied.
func (h *Host) HandleDirect(proto protocol.ID, fn DirectHandler) {
	c := h.metrics.Kind(string(proto))
	h.host.SetStreamHandler(proto, func(s network.Stream) {
		from := s.Conn().RemotePeer()
		r := bufio.NewReaderSize(s, readBufBytes)
		for {
			// Between frames a stream may idle; once a frame has started
			// it must arrive within the frame timeout.
			_ = s.SetReadDeadline(time.Now().Add(h.cfg.idleTimeout))
			n, err := readPrefix(r, h.cfg.maxFrameBytes)
			if err != nil {
				h.streamFailed(s, c, err)
				return
			}
			_ = s.SetReadDeadline(time.Now().Add(h.cfg.frameTimeout))
			if !h.limiter.allow(from, string(proto)) {
				// Skip the body without allocating it, keep the stream.
				c.Dropped.Add(1)
				if _, err := r.Discard(n); err != nil {
					h.streamFailed(s, c, truncated(err))
					return
				}
				continue
			}
			msg, err := readBody(r, n)
			if err != nil {
				h.streamFailed(s, c, err)
				return
			}
			c.In.Add(1)
			if !h.enter() {
				_ = s.Reset()
				return
			}
			fn(from, msg)
			h.leave()
		}
	})
}

// isTimeout reports whether err is a missed deadline of a stream or a
// context.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrTimeout) || (errors.As(err, &ne) && ne.Timeout())
}

// streamFailed ends an inbound stream after a read error and counts why. A
// clean end of stream closes it; anything else resets it, so a peer that
// broke the framing rules cannot continue on the same stream.
func (h *Host) streamFailed(s network.Stream, c *Counters, err error) {
	switch {
	case errors.Is(err, io.EOF):
		_ = s.Close()
		return
	case errors.Is(err, ErrFrameTooLarge):
		c.Oversize.Add(1)
	case isTimeout(err):
		c.Timeouts.Add(1)
	default:
		c.Errors.Add(1)
	}
	_ = s.Reset()
	h.cfg.logger.Debug("p2p: inbound stream failed", "protocol", s.Protocol(), "peer", s.Conn().RemotePeer(), "err", err)
}

// outKey names one outbound direct stream.
type outKey struct {
	peer  peer.ID
	proto protocol.ID
}

// outStream is a reusable outbound stream; mu serialises frames on it.
type outStream struct {
	mu       sync.Mutex
	s        network.Stream // nil: open on next Send
	lastUsed time.Time
	dropped  atomic.Bool // removed from Host.out: callers fetch a new entry
}

// outStream returns the entry for (to, proto), creating it.
func (h *Host) outStream(to peer.ID, proto protocol.ID) (*outStream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	k := outKey{to, proto}
	o, ok := h.out[k]
	if !ok {
		o = new(outStream)
		h.out[k] = o
	}
	return o, nil
}

// dropOutStreams forgets the outbound streams to p (all of them when p is
// empty). It runs in libp2p's notification path, so it does not wait for
// a Send in progress: the streams die with their connection (disconnect,
// Close), and a Send holding a dropped entry sees the flag and fetches a
// fresh one.
func (h *Host) dropOutStreams(p peer.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, o := range h.out {
		if p == "" || k.peer == p {
			o.dropped.Store(true)
			delete(h.out, k)
		}
	}
}

// Send writes msg as one frame on the host's stream of proto to peer to,
// opening the stream if needed. Delivery is best effort (consensus pulls
// whatever is missing by hash): a nil error means the frame was handed to
// the stream, not that the peer processed it. A stream that has idled
// for half the idle timeout is replaced first, so a frame is not written
// to a stream the receiver is about to close.
func (h *Host) Send(ctx context.Context, to peer.ID, proto protocol.ID, msg []byte) error {
	c := h.metrics.Kind(string(proto))
	if len(msg) > h.cfg.maxFrameBytes {
		c.Oversize.Add(1)
		return fmt.Errorf("%w: sending %d > %d bytes", ErrFrameTooLarge, len(msg), h.cfg.maxFrameBytes)
	}
	var o *outStream
	for o == nil || o.dropped.Load() {
		if o != nil {
			o.mu.Unlock()
		}
		var err error
		if o, err = h.outStream(to, proto); err != nil {
			return err
		}
		o.mu.Lock()
	}
	defer o.mu.Unlock()
	if o.s != nil && time.Since(o.lastUsed) > h.cfg.idleTimeout/2 {
		_ = o.s.Close()
		o.s = nil
	}
	// One retry: a reused stream may have been reset by the peer since it
	// was last used; a fresh stream failing is a real failure.
	for attempt := 0; ; attempt++ {
		fresh := o.s == nil
		if fresh {
			s, err := h.host.NewStream(ctx, to, proto)
			if err != nil {
				return h.sendFailed(c, fmt.Errorf("p2p: open %s to %s: %w", proto, to, err))
			}
			o.s = s
		}
		_ = o.s.SetWriteDeadline(deadline(ctx, h.cfg.frameTimeout))
		err := writeFrame(o.s, msg)
		if err == nil {
			o.lastUsed = time.Now()
			c.Out.Add(1)
			return nil
		}
		_ = o.s.Reset()
		o.s = nil
		if fresh || attempt > 0 || isTimeout(err) {
			return h.sendFailed(c, fmt.Errorf("p2p: send %s to %s: %w", proto, to, err))
		}
	}
}

// sendFailed counts an outbound failure and marks timeouts with ErrTimeout.
func (h *Host) sendFailed(c *Counters, err error) error {
	if isTimeout(err) {
		c.Timeouts.Add(1)
		if !errors.Is(err, ErrTimeout) {
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		return err
	}
	c.Errors.Add(1)
	return err
}
