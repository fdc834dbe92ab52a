package cluster

import (
	"context"
	"fmt"
	"net/url"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// Send is the node's transport: it refuses a call with a signal that could
// never be sent, then hands the signals to the outbox.
func (t nodeTransport) Send(ctx context.Context, signals []bus.Signal) error {
	if err := t.n.checkFits(signals); err != nil {
		return err
	}
	return t.outbox.Send(ctx, signals)
}

// stampAllowance bounds what the node's stamps (sbnode, sbinst, sbseq,
// sbfloor) add to a signal's message, headers or attributes: a node name
// is a NATS-safe token well under it.
const stampAllowance = 512

// checkFits refuses, with an error wrapping bus.ErrInvalidSignal, a batch
// holding a signal whose message, that signal alone in it, is over the
// server's max_payload: the bus takes up to 1 MiB of data (NATS's default
// max_payload, which must also hold the attributes), and such a signal's
// publish would fail every time, the outbox retrying it for ever at the
// head of its queue. The check comes before the signals take sequence
// numbers, so a refused call leaves no gap, and refuses the whole call, as
// Publish does an invalid batch. A cheap bound settles nearly every
// signal; only one near the limit is encoded to measure it. (A server of
// the cluster with a smaller max_payload than the one this node is
// connected to, or a stream's own size limit, can still refuse later.)
func (n *Node) checkFits(signals []bus.Signal) error {
	limit := n.signalConn().MaxPayload()
	for i, s := range signals {
		if roughSize(s) <= limit {
			continue
		}
		size, err := n.messageSize(s)
		if err != nil {
			continue // the encoder refuses it, with its reason, when it is sent
		}
		if size > limit {
			return fmt.Errorf("signal %d of %d (%s): %w: its message would be %d bytes, over the NATS server's max_payload of %d",
				i, len(signals), s.ID, bus.ErrInvalidSignal, size, limit)
		}
	}
	return nil
}

// roughSize is at least the size of s's message alone, in either encoding:
// its data, every attribute's text counted three times (percent-encoding
// at worst; trace context twice), and room for the names, the framing
// and the stamps.
func roughSize(s bus.Signal) int64 {
	text := len(s.ID) + len(s.Source) + len(s.Type) + len(s.Subject) + len(s.DataSchema) + len(s.DataContentType) + 64
	for name, v := range s.Extensions {
		text += len(name) + 16
		switch x := v.(type) {
		case string:
			text += len(x)
		case []byte:
			text += 2 * len(x) // base64 in a header
		case *url.URL:
			if x != nil {
				text += len(x.String())
			}
		default:
			text += 64
		}
	}
	return int64(len(s.Data)) + 3*int64(text) + 1024 + stampAllowance
}

// messageSize is the size of s's message alone in the node's encoding,
// as NATS counts it against max_payload (headers and data), with room for
// the node's stamps.
func (n *Node) messageSize(s bus.Signal) (int64, error) {
	var msg *nats.Msg
	var err error
	if n.cfg.Encoding == ProtobufBatch {
		msg, err = wire.EncodePublished([]bus.Signal{s}, n.cfg.Prefix, nil)
	} else {
		msg, err = wire.Encode(s, n.cfg.Prefix)
	}
	if err != nil {
		return 0, err
	}
	size := int64(len(msg.Data)) + stampAllowance
	if len(msg.Header) > 0 {
		size += int64(len("NATS/1.0\r\n\r\n"))
		for k, vs := range msg.Header {
			for _, v := range vs {
				size += int64(len(k) + len(": ") + len(v) + len("\r\n"))
			}
		}
	}
	return size, nil
}
