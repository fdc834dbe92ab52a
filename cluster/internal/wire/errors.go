package wire

import (
	"errors"

	"github.com/signalbus/signalbus/bus"
)

// ErrNotCloudEvent is wrapped by every Decode error: the message cannot be
// delivered as a signal and belongs in the dead-letter subject. Errors for
// a message that is a CloudEvent but a malformed one (a missing ce-id, a bad
// ce-time, a type outside the bus's grammar, a bad percent-encoding…) also
// wrap bus.ErrInvalidSignal; Reason tells them apart.
var ErrNotCloudEvent = errors.New("not a valid CloudEvent message")

// The reasons Reason returns: a bounded set, fit for a metric attribute or a
// dead-letter subject token.
const (
	ReasonNotCloudEvent      = "not_cloudevent"      // no ce- headers, no structured content type, no JSON event body
	ReasonUnsupportedFormat  = "unsupported_format"  // structured mode in a format other than JSON, or batch mode
	ReasonMissingSpecVersion = "missing_specversion" // binary mode without ce-specversion
	ReasonBadSpecVersion     = "bad_specversion"     // specversion other than "1.0"
	ReasonMissingID          = "missing_id"          // ce-id absent or empty
	ReasonMissingSource      = "missing_source"      // ce-source absent or empty
	ReasonMissingType        = "missing_type"        // ce-type absent or empty
	ReasonBadType            = "bad_type"            // type outside the bus's grammar
	ReasonBadTime            = "bad_time"            // ce-time not an RFC 3339 timestamp
	ReasonBadExtension       = "bad_extension"       // an extension name that is not lower-case [a-z0-9], or reserved
	ReasonBadEncoding        = "bad_encoding"        // malformed percent-encoding or quoting, or not UTF-8
	ReasonDuplicateHeader    = "duplicate_header"    // one attribute given twice with different values
	ReasonBadStructured      = "bad_structured"      // a structured-mode body that is not a valid JSON event
	ReasonInvalidSignal      = "invalid_signal"      // any other violation of bus.Signal.Validate
	ReasonOther              = "other"               // an error that did not come from this package
)

// Reason maps an error of Decode (or Encode) to one of the Reason…
// constants, for the dead-letter subject and the metrics; "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var de *decodeError
	if errors.As(err, &de) {
		return de.reason
	}
	switch {
	case errors.Is(err, ErrNotCloudEvent):
		return ReasonNotCloudEvent
	case errors.Is(err, bus.ErrInvalidSignal):
		return ReasonInvalidSignal
	}
	return ReasonOther
}

// decodeError is what Decode returns: it matches ErrNotCloudEvent, and
// bus.ErrInvalidSignal when invalid is set, carries the reason for Reason,
// and wraps the bus's validation error when that is the cause.
type decodeError struct {
	reason  string
	invalid bool
	msg     string
	cause   error
}

func (e *decodeError) Error() string {
	s := ErrNotCloudEvent.Error()
	if e.invalid && !errors.Is(e.cause, bus.ErrInvalidSignal) {
		s += ": " + bus.ErrInvalidSignal.Error()
	}
	s += ": " + e.msg
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *decodeError) Is(target error) bool {
	return target == ErrNotCloudEvent || (e.invalid && target == bus.ErrInvalidSignal)
}

func (e *decodeError) Unwrap() error { return e.cause }

// notCloudEvent is the error for a message that is no CloudEvent at all.
func notCloudEvent(reason, msg string) error {
	return &decodeError{reason: reason, msg: msg}
}

// invalid is the error for a CloudEvent that is malformed.
func invalid(reason, msg string, cause error) error {
	return &decodeError{reason: reason, invalid: true, msg: msg, cause: cause}
}
