package wire

import (
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// TraceCarrier adapts a message's headers to an OpenTelemetry propagator,
// so the node can inject and extract trace context per hop:
//
//	otel.GetTextMapPropagator().Inject(ctx, wire.TraceCarrier(msg.Header))
//
// Set writes the key lower-cased (W3C trace context names its headers in
// lower case, and nats.Header is case-sensitive) and removes the key in any
// other case, so a message never carries two versions of one header. Get
// matches the key in any case, since other clients may send "Traceparent".
// Keys lists the header names lower-cased. Set needs a non-nil header
// (nats.NewMsg and Encode make one); Get and Keys accept nil.
func TraceCarrier(h nats.Header) propagation.TextMapCarrier { return headerCarrier(h) }

type headerCarrier nats.Header

var _ propagation.TextMapCarrier = headerCarrier(nil)

func (c headerCarrier) Get(key string) string {
	if vs := c[asciiLower(key)]; len(vs) > 0 {
		return vs[0]
	}
	for k, vs := range c {
		if len(vs) > 0 && asciiEqualFold(k, key) {
			return vs[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) {
	lk := asciiLower(key)
	for k := range c {
		if k != lk && asciiEqualFold(k, key) {
			delete(c, k)
		}
	}
	c[lk] = []string{value}
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	seen := make(map[string]bool, len(c))
	for k := range c {
		lk := asciiLower(k)
		if !seen[lk] {
			seen[lk] = true
			keys = append(keys, lk)
		}
	}
	return keys
}
