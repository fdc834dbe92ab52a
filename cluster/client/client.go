package client

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// DefaultPrefix is the subject prefix of a node whose Config.Prefix is
// empty: signals travel on "signals.<type>".
const DefaultPrefix = wire.DefaultPrefix

// ErrNotCloudEvent is wrapped by every Decode error: the message is not a
// CloudEvent the bus can carry. Errors for a CloudEvent that is malformed
// also wrap bus.ErrInvalidSignal.
var ErrNotCloudEvent = wire.ErrNotCloudEvent

// The extension attributes a node stamps on every signal it sends to
// restore each publisher's order (the cluster package's ExtensionNode,
// ExtensionInstance, ExtensionSequence and ExtensionFloor). They describe
// one node's numbering: a client that sends a signal again must not carry
// them over (see WithoutStamps).
const (
	ExtensionNode     = wire.ExtensionNode
	ExtensionInstance = wire.ExtensionInstance
	ExtensionSequence = wire.ExtensionSequence
	ExtensionFloor    = wire.ExtensionFloor
)

// Subject returns the NATS subject of signals of type typ under prefix:
// "<prefix>.<typ>"; an empty prefix is DefaultPrefix.
func Subject(prefix, typ string) string { return wire.Subject(prefix, typ) }

// StreamName returns the name of the JetStream stream a durable cluster
// with this subject prefix stores its signals in: "SIGNALBUS_" and the
// prefix with its dots as underscores (stream names cannot hold dots); an
// empty prefix is DefaultPrefix. The stream captures "<prefix>.>".
func StreamName(prefix string) string { return wire.StreamName(prefix) }

// SubjectFilters maps a subscription pattern (bus pattern syntax) to the
// NATS subject filters under prefix that select at least the types it
// matches, and reports whether they select exactly those. "*" stays "*";
// a trailing "**" becomes ">" plus the bare prefix ("order.**" matches
// "order" itself, which "order.>" does not); a "**" anywhere else widens
// the filter to ">" from there, and the caller filters the rest with
// bus.ParsePattern, as a node does. The error, for an invalid pattern,
// wraps bus.ErrInvalidPattern.
func SubjectFilters(prefix, pattern string) (filters []string, exact bool, err error) {
	if err := bus.ValidatePattern(pattern); err != nil {
		return nil, false, err
	}
	filters, exact = wire.SubjectFilters(prefix, pattern)
	return filters, exact, nil
}

// Encode returns s as a NATS message in the CloudEvents NATS binding's
// binary mode on Subject(prefix, s.Type), with Nats-Msg-Id set to s.ID so
// that a durable stream drops a re-published id. s must be valid (see
// bus.Signal.Validate) and have an ID; the error otherwise wraps
// bus.ErrInvalidSignal and names the attribute. The message's Data is
// s.Data, not a copy.
func Encode(s bus.Signal, prefix string) (*nats.Msg, error) {
	return wire.Encode(s, prefix)
}

// Decode returns the signals a message carries: the one of a binary or
// structured mode message, or each event of a CloudEvents protobuf batch
// (what a node of the ProtobufBatch encoding sends). The data is aliased,
// not copied. A message that is not a CloudEvent gives no signal and an
// error wrapping ErrNotCloudEvent; the events of a batch that are not
// valid signals are left out, the others returned, and the error joins
// one error per event left out. Decode does not apply a bus's data limit
// and never panics.
func Decode(m *nats.Msg) ([]bus.Signal, error) {
	events, err := wire.DecodeAll(m)
	if err != nil {
		return nil, err
	}
	signals := make([]bus.Signal, 0, len(events))
	var errs []error
	for i, e := range events {
		if e.Err != nil {
			errs = append(errs, fmt.Errorf("event %d of the batch: %w", i+1, e.Err))
			continue
		}
		signals = append(signals, e.Signal)
	}
	return signals, errors.Join(errs...)
}

// WithoutStamps returns s without the extensions a node stamps on the
// signals it sends (ExtensionNode and the others). Extensions is a copy
// when one was removed; s is returned as it is otherwise.
func WithoutStamps(s bus.Signal) bus.Signal {
	has := false
	for _, name := range wire.StampNames {
		if _, ok := s.Extensions[name]; ok {
			has = true
			break
		}
	}
	if !has {
		return s
	}
	ext := make(map[string]any, len(s.Extensions))
	for k, v := range s.Extensions {
		if !slices.Contains(wire.StampNames, k) {
			ext[k] = v
		}
	}
	if len(ext) == 0 {
		ext = nil
	}
	s.Extensions = ext
	return s
}
