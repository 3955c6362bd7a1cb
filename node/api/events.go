package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/types"
)

// Limits of the event stream.
const (
	// MaxEventStreams caps the open GET /v1/events streams: each holds a
	// goroutine and reads the store.
	MaxEventStreams = 64
	// EventPoll spaces a caught-up stream's looks for a new block when
	// the backend cannot wait for a height (a HeightWaiter, as a node is,
	// wakes the stream as soon as the block is served). It is wall-clock
	// pacing of an API answer and never reaches consensus.
	EventPoll = 50 * time.Millisecond
)

// CodeTooManyStreams answers a stream request over MaxEventStreams.
const CodeTooManyStreams = "too_many_streams"

// Cursor is a position in the chain's event sequence: the event at Index
// (counting every event of the block, in block and receipt order) of the
// block at Height. Its text form is "height:index".
type Cursor struct {
	Height uint64
	Index  uint64
}

func (c Cursor) String() string { return fmt.Sprintf("%d:%d", c.Height, c.Index) }

// ParseCursor reads "height:index" or "height" (= "height:0").
func ParseCursor(s string) (Cursor, error) {
	hs, is, two := strings.Cut(s, ":")
	h, err := strconv.ParseUint(hs, 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("cursor %q: %w", s, err)
	}
	c := Cursor{Height: h}
	if two {
		if c.Index, err = strconv.ParseUint(is, 10, 64); err != nil {
			return Cursor{}, fmt.Errorf("cursor %q: %w", s, err)
		}
	}
	return c, nil
}

// StreamEvent is the data of one Server-Sent Event of GET /v1/events. Its
// SSE id is the cursor of the next event, so a client resumes with
// ?from=<last id> (or the Last-Event-ID header) and misses nothing.
type StreamEvent struct {
	Height uint64        `json:"height"`
	Index  uint64        `json:"index"`
	Tx     types.Hash    `json:"tx"`
	Module types.Address `json:"module"`
	Topic  string        `json:"topic"`
	Data   string        `json:"data"` // hex
}

// events streams the events of executed blocks in chain order from the
// cursor ?from= (or Last-Event-ID; default: the next block), then follows
// new blocks until the client leaves. Only receipts of successful
// transactions carry events.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	from := r.URL.Query().Get("from")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		from = id
	}
	var cur Cursor
	if from == "" {
		cur = Cursor{Height: s.b.Status().Height + 1}
	} else {
		var err error
		if cur, err = ParseCursor(from); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
			return
		}
	}
	cur.Height = max(cur.Height, 1)
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, CodeInternal, "streaming unsupported")
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		writeError(w, http.StatusServiceUnavailable, CodeTooManyStreams, fmt.Sprintf("over %d event streams", MaxEventStreams))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	ctx := r.Context()
	hw, _ := s.b.(HeightWaiter)
	t := time.NewTicker(EventPoll)
	defer t.Stop()
	for {
		if cur.Height > s.b.Status().Height {
			if hw != nil {
				if hw.WaitHeight(ctx, cur.Height) != nil {
					return // the client left, or the node stops
				}
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				continue
			}
		}
		if err := s.blockEvents(ctx, w, cur); err != nil {
			// The headers are sent: end the stream with an error event
			// the client can read; it resumes from its last id.
			s.log.Error("api events", "height", cur.Height, "err", err)
			fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
			fl.Flush()
			return
		}
		fl.Flush()
		cur = Cursor{Height: cur.Height + 1}
	}
}

// blockEvents writes the events of block cur.Height from index cur.Index.
func (s *server) blockEvents(ctx context.Context, w http.ResponseWriter, cur Cursor) error {
	ids, err := s.b.HeightTxs(cur.Height)
	if errors.Is(err, node.ErrNotFound) {
		return nil // a height without a block has no events
	}
	if err != nil {
		return err
	}
	var i uint64
	for _, id := range ids {
		if ctx.Err() != nil {
			return nil
		}
		rc, _, err := s.b.Receipt(id)
		if err != nil {
			return fmt.Errorf("receipt of %s: %w", id, err)
		}
		for _, e := range rc.Events {
			if i >= cur.Index {
				data, _ := json.Marshal(StreamEvent{Height: cur.Height, Index: i, Tx: id, Module: e.Module, Topic: e.Topic, Data: hex.EncodeToString(e.Data)})
				next := Cursor{Height: cur.Height, Index: i + 1}
				if _, err := fmt.Fprintf(w, "id: %s\nevent: event\ndata: %s\n\n", next, data); err != nil {
					return nil // the client left
				}
			}
			i++
		}
	}
	return nil
}
