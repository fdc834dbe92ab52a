package bus

import "errors"

// Sentinel errors. Match them with errors.Is: the errors the bus returns wrap
// them with the detail of what failed (the field, the pattern, the subscription).
var (
	// ErrInvalidSignal is wrapped by every validation error of a Signal; the
	// wrapping error names the offending field.
	ErrInvalidSignal = errors.New("invalid signal")
	// ErrInvalidPattern is wrapped by Subscribe and Replay when a pattern does
	// not parse; the wrapping error says where and why.
	ErrInvalidPattern = errors.New("invalid pattern")
	// ErrInvalidOption is wrapped when an option of New, Subscribe or
	// NewSignal is given a value it cannot work with.
	ErrInvalidOption = errors.New("invalid option")
	// ErrClosed is returned by Publish, Subscribe and Replay once Close has
	// begun, and by Publish for a subscription closed while the signal was
	// being routed to it.
	ErrClosed = errors.New("bus closed")
	// ErrQueueFull is returned by Publish when a subscription with the Reject
	// overflow policy has no room for a signal.
	ErrQueueFull = errors.New("subscription queue full")
	// ErrHandlerPanic wraps the value of a recovered handler panic. The
	// subscription treats it as a failed attempt.
	ErrHandlerPanic = errors.New("handler panicked")
	// ErrHandlerTimeout is returned by the Timeout middleware when the handler
	// failed after its deadline passed.
	ErrHandlerTimeout = errors.New("handler timed out")
	// ErrNoHistory is returned by Replay when the bus keeps no history
	// (WithHistory was not given).
	ErrNoHistory = errors.New("bus keeps no history")
)

// permanentError marks a handler error that no retry can fix.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent wraps err so that the subscription skips the remaining retries
// and hands the signal to its dead-letter handler at once. Use it for
// failures that cannot succeed on a later attempt, such as a payload the
// handler cannot decode or an HTTP 400 from a webhook. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
