package cluster

import (
	"context"
	"fmt"
	"math"
	"net/url"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// Send is the node's transport: it refuses a call with a signal that could
// never be sent (too big, or with a datacontenttype the wire cannot
// carry), then hands the signals to the outbox.
func (t nodeTransport) Send(ctx context.Context, signals []bus.Signal) error {
	if err := t.n.checkFits(signals); err != nil {
		return err
	}
	return t.outbox.Send(ctx, signals)
}

// checkFits refuses, with an error wrapping bus.ErrInvalidSignal, a batch
// holding a signal whose message, that signal alone in it, could never be
// sent: over the server's max_payload (the bus takes up to 1 MiB of data,
// NATS's default max_payload, which must also hold the attributes), or,
// in durable mode, with headers over the 64 KiB a JetStream stream takes
// (the binary encoding writes every attribute as a header). Such a
// signal's publish would fail every time, the outbox retrying it for ever
// at the head of its queue. The check comes before the signals take
// sequence numbers, so a refused call leaves no gap, and refuses the whole
// call, as Publish does an invalid batch. A cheap bound settles nearly
// every signal; only one near a limit is encoded to measure it. (A server
// of the cluster with a smaller max_payload than the one this node is
// connected to, or a stream's own size limit, can still refuse later.)
func (n *Node) checkFits(signals []bus.Signal) error {
	limit := n.signalConn().MaxPayload()
	durable := n.cfg.Mode == Durable
	for i, s := range signals {
		if err := wire.CheckDataContentType(s.DataContentType); err != nil {
			return fmt.Errorf("signal %d of %d (id %q): %w", i+1, len(signals), shortID(s.ID), err)
		}
		rough := n.roughSize(s)
		if rough <= limit && (!durable || n.roughHeaderSize(s, rough) <= maxStoredHeader) {
			continue
		}
		size, header, err := n.messageSize(s)
		if err != nil {
			continue // the encoder refuses it, with its reason, when it is sent
		}
		var problem string
		switch {
		case size > limit:
			problem = fmt.Sprintf("its message would be %d bytes, over the NATS server's max_payload of %d", size, limit)
		case durable && header > maxStoredHeader:
			problem = fmt.Sprintf("its message's headers would be %d bytes, over the %d a JetStream stream stores (the %s encoding writes attributes as headers)",
				header, maxStoredHeader, n.cfg.Encoding)
		default:
			continue
		}
		return fmt.Errorf("signal %d of %d (id %q): %w: %s", i+1, len(signals), shortID(s.ID), bus.ErrInvalidSignal, problem)
	}
	return nil
}

// shortID is id cut to 64 bytes for an error message: a signal's id may be
// long, and the message must stay one readable line.
func shortID(id string) string {
	if len(id) > 64 {
		return id[:64] + "…"
	}
	return id
}

// maxStoredHeader is the largest header block a JetStream stream stores:
// nats-server refuses a bigger one (error 10097).
const maxStoredHeader = math.MaxUint16

// roughSize is at least the size of s's message alone, in either encoding
// and mode: its data; each attribute's text three times (percent-encoding
// at worst), twice that for those written twice (the id, also as
// Nats-Msg-Id or in a batch's; the content type, also as content-type;
// traceparent and tracestate, also as plain headers); and room for the
// names, the framing and the node's stamps.
func (n *Node) roughSize(s bus.Signal) int64 {
	text := 2*len(s.ID) + len(s.Source) + len(s.Type) + len(s.Subject) + len(s.DataSchema) + 2*len(s.DataContentType) + 64
	for name, v := range s.Extensions {
		text += len(name) + 16
		switch x := v.(type) {
		case string:
			text += len(x)
			if name == "traceparent" || name == "tracestate" {
				text += len(x)
			}
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
	// The stamps: the node's name and run, two numbers of up to 20
	// digits, their names and framing.
	stamps := 256 + len(n.cfg.Name) + len(n.instance)
	return int64(len(s.Data)) + 3*int64(text) + 1024 + int64(stamps)
}

// roughHeaderSize is at least the size of the headers of s's message
// alone, rough being roughSize(s): the data is never in the headers, and
// the batch encoding's carry only its content type and, in durable mode,
// the batch's Nats-Msg-Id, "<first id>..<last id>".
func (n *Node) roughHeaderSize(s bus.Signal, rough int64) int64 {
	if n.cfg.Encoding == ProtobufBatch {
		return 2*int64(len(s.ID)) + 256
	}
	return rough - int64(len(s.Data))
}

// messageSize is the size NATS counts against max_payload (headers and
// data) of s's message alone, as the node would send it, its stamps with
// the largest numbers, and the size of its headers; encoding it takes no
// sequence number.
func (n *Node) messageSize(s bus.Signal) (size, header int64, err error) {
	err = n.encode([]bus.Signal{s}, func(int) (uint64, uint64) {
		floor := uint64(0)
		if n.cfg.Mode == Durable {
			floor = math.MaxUint64
		}
		return math.MaxUint64, floor
	}, nil, func(msg *nats.Msg, carried []bus.Signal) error {
		header = headerSize(msg.Header)
		if _, named := msg.Header[nats.MsgIdHdr]; !named && n.cfg.Mode == Durable {
			// durable.Send names a batch "<first id>..<last id>".
			header += int64(len(nats.MsgIdHdr) + len(": ") + 2*len(carried[0].ID) + len("..") + len("\r\n"))
		}
		size = int64(len(msg.Data)) + header
		return nil
	})
	return size, header, err
}

// headerSize is the length of h as nats.go writes it before a message's
// data.
func headerSize(h nats.Header) int64 {
	if len(h) == 0 {
		return 0
	}
	size := int64(len("NATS/1.0\r\n\r\n"))
	for k, vs := range h {
		for _, v := range vs {
			size += int64(len(k) + len(": ") + len(v) + len("\r\n"))
		}
	}
	return size
}
