package p2p

import "errors"

// Sentinel errors. They are wrapped with %w; check them with errors.Is.
var (
	// ErrConfig reports an invalid or contradictory Config.
	ErrConfig = errors.New("p2p: invalid config")
	// ErrNonLoopback reports a non-loopback address on a loopback-only host.
	ErrNonLoopback = errors.New("p2p: non-loopback address on a loopback-only host")
	// ErrFrameTooLarge reports a length prefix above the frame cap; the
	// stream is reset before anything is allocated.
	ErrFrameTooLarge = errors.New("p2p: frame larger than the cap")
	// ErrBadPrefix reports a length prefix that is not a minimal uvarint.
	ErrBadPrefix = errors.New("p2p: malformed length prefix")
	// ErrTruncated reports a stream that ended inside a frame.
	ErrTruncated = errors.New("p2p: stream ended inside a frame")
	// ErrTimeout reports a stream read, write or request past its deadline.
	ErrTimeout = errors.New("p2p: deadline exceeded")
	// ErrResponseTooLarge reports a response above MaxResponseBytes.
	ErrResponseTooLarge = errors.New("p2p: response larger than the cap")
	// ErrRemote reports an error returned by the remote request handler.
	ErrRemote = errors.New("p2p: remote handler error")
	// ErrBadResponse reports a response frame that does not follow the
	// request/response format.
	ErrBadResponse = errors.New("p2p: malformed response")
	// ErrIgnore, returned by a Validator, drops a gossip message without
	// penalising the peer that forwarded it (e.g. a duplicate or a message
	// that is merely early). Any other validator error rejects the message.
	ErrIgnore = errors.New("p2p: message ignored")
	// ErrTopicJoined reports a second Join of the same topic.
	ErrTopicJoined = errors.New("p2p: topic already joined")
	// ErrNoDHT reports a DHT operation on a host built without the DHT.
	ErrNoDHT = errors.New("p2p: DHT not enabled")
	// ErrClosed reports use of a closed host.
	ErrClosed = errors.New("p2p: host closed")
)
