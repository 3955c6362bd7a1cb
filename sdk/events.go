package sdk

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/kairos-network/kairos/types"
)

// MaxEventLine bounds one line of the event stream (an event's data is at
// most a receipt's, in hex).
const MaxEventLine = 1 << 20

// StreamEvent is an event of an executed transaction, in chain order.
type StreamEvent struct {
	Height uint64        `json:"height"`
	Index  uint64        `json:"index"` // among the block's events
	Tx     types.Hash    `json:"tx"`
	Module types.Address `json:"module"`
	Topic  string        `json:"topic"`
	Data   hexBytes      `json:"data"`
	// Cursor resumes the stream just after this event.
	Cursor string `json:"-"`
}

// Events streams the node's events from cursor from ("" = from the next
// block, "0" = from the start, or a StreamEvent.Cursor) and calls fn for
// each, in chain order, until fn returns an error, ctx ends or the stream
// breaks; it returns that error. Resume with the last Cursor seen.
func (c *Client) Events(ctx context.Context, from string, fn func(StreamEvent) error) error {
	q := ""
	if from != "" {
		q = "?from=" + url.QueryEscape(from)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.Base+"/v1/events"+q, nil)
	if err != nil {
		return err
	}
	// No client timeout: a stream lasts as long as ctx.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := &APIError{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Code, e.Message = "http", fmt.Sprintf("GET /v1/events: HTTP %d", resp.StatusCode)
		}
		return e
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), MaxEventLine)
	var id, kind, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			kind = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "":
			if kind == "error" {
				return fmt.Errorf("%w: event stream: %s", ErrAPI, data)
			}
			var e StreamEvent
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				return fmt.Errorf("%w: event %q: %w", ErrResponse, data, err)
			}
			e.Cursor = id
			if err := fn(e); err != nil {
				return err
			}
			id, kind, data = "", "", ""
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: event stream: %w", ErrResponse, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: event stream ended", ErrResponse)
}
