package cluster

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// stamps give signal i of a batch its sequence number and, in durable
// mode, its floor (0: none). encode asks for each signal once, when the
// signal is encoded, so that a signal that cannot be encoded takes no
// number (a number taken and never sent would be a gap receivers wait for).
type stamps func(i int) (seq, floor uint64)

// encode turns signals into messages in the node's encoding, stamped with
// the node, its instance, and each signal's numbers, and hands each message,
// with the signals it carries, to publish, in order:
//
//   - Binary: one binary-mode message per signal, the stamps as ce- headers;
//   - ProtobufBatch: one CloudEvents protobuf batch message per run of
//     consecutive signals of one type (so that each has its type's subject
//     and the runs keep the publish order), a run whose message would pass
//     the server's payload limit split in two; the stamps as attributes.
//
// msgs, when not nil, lends and takes back the batch messages: only for a
// publish that copies the message before it returns.
func (n *Node) encode(signals []bus.Signal, numbers stamps, msgs *msgPool, publish func(msg *nats.Msg, carried []bus.Signal) error) error {
	taken := make([]struct {
		seq, floor uint64
		ok         bool
	}, len(signals))
	stamp := func(i int, dst []wire.Attr) []wire.Attr {
		if !taken[i].ok {
			taken[i].seq, taken[i].floor = numbers(i)
			taken[i].ok = true
		}
		return n.stampAttrs(dst, taken[i].seq, taken[i].floor)
	}
	if n.cfg.Encoding == ProtobufBatch {
		for from := 0; from < len(signals); {
			to := from + 1
			for to < len(signals) && signals[to].Type == signals[from].Type {
				to++
			}
			if err := n.packRun(signals, from, to, stamp, msgs, publish); err != nil {
				return err
			}
			from = to
		}
		return nil
	}
	var attrs []wire.Attr
	for i, s := range signals {
		msg, err := wire.Encode(s, n.cfg.Prefix)
		if err != nil {
			return fmt.Errorf("encode %s: %w", s.ID, err)
		}
		attrs = stamp(i, attrs[:0])
		for _, a := range attrs {
			msg.Header["ce-"+a.Name] = []string{a.Value}
		}
		if err := publish(msg, signals[i:i+1]); err != nil {
			return err
		}
	}
	return nil
}

// stampAttrs appends the extension attributes a node writes on a signal it
// sends: the node, its instance, the signal's sequence number and, in
// durable mode, the floor (0: none).
func (n *Node) stampAttrs(dst []wire.Attr, seq, floor uint64) []wire.Attr {
	dst = append(dst,
		wire.Attr{Name: ExtensionNode, Value: n.cfg.Name},
		wire.Attr{Name: ExtensionInstance, Value: n.instance},
		wire.Attr{Name: ExtensionSequence, Value: strconv.FormatUint(seq, 10)})
	if floor > 0 {
		dst = append(dst, wire.Attr{Name: ExtensionFloor, Value: strconv.FormatUint(floor, 10)})
	}
	return dst
}

// payloadMargin is left under the server's payload limit for the headers.
const payloadMargin = 4 << 10

// streamHeaderMargin is left under a stream's message size limit for the
// headers of a batch message besides the two ids of its Nats-Msg-Id: the
// header line, the content type, the Nats-Msg-Id name and separators.
const streamHeaderMargin = 256

// packLimit is the largest body packRun makes for a batch from the signal
// id first to the signal id last: under the server's max_payload and, in
// durable mode, under the stream's own message size limit (max_msg_size)
// when it has one, which an operator may set lower, less the batch's
// headers (its Nats-Msg-Id is "<first>..<last>").
func (n *Node) packLimit(first, last string) int64 {
	limit := n.signalConn().MaxPayload() - payloadMargin
	if stream := n.streamMaxMsg.Load(); stream > 0 {
		limit = min(limit, stream-int64(streamHeaderMargin+len(first)+len(last)))
	}
	return limit
}

// packRun sends signals[from:to], all of one type, as one batch message, or
// as two halves (recursively) when the message would be too big.
func (n *Node) packRun(signals []bus.Signal, from, to int, stamp func(i int, dst []wire.Attr) []wire.Attr,
	msgs *msgPool, publish func(msg *nats.Msg, carried []bus.Signal) error) error {
	// Every signal a node sends came through its bus's Publish, which
	// validated it.
	lent := msgs.get()
	defer msgs.put(lent)
	msg, err := wire.EncodePublishedInto(lent, signals[from:to], n.cfg.Prefix, func(i int, dst []wire.Attr) []wire.Attr {
		return stamp(from+i, dst)
	})
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if limit := n.packLimit(signals[from].ID, signals[to-1].ID); int64(len(msg.Data)) > limit && to-from > 1 {
		mid := from + (to-from)/2
		if err := n.packRun(signals, from, mid, stamp, msgs, publish); err != nil {
			return err
		}
		return n.packRun(signals, mid, to, stamp, msgs, publish)
	}
	return publish(msg, signals[from:to])
}

// msgPool keeps batch messages for use again once published: their
// bodies (a 64-signal batch body is some 20 KiB, a sixth of all a fast
// node allocated per signal sent) and, at one signal per message, what
// the message and its header cost besides. A nil pool lends nothing
// (EncodePublishedInto then makes a new message) and keeps nothing.
type msgPool struct{ pool sync.Pool }

// maxPooledBody bounds the bodies a pool keeps, so that one big batch
// does not stay allocated for good.
const maxPooledBody = 256 << 10

func (p *msgPool) get() *nats.Msg {
	if p == nil {
		return nil
	}
	if m, ok := p.pool.Get().(*nats.Msg); ok {
		return m
	}
	return &nats.Msg{}
}

func (p *msgPool) put(m *nats.Msg) {
	if p == nil || m == nil || cap(m.Data) > maxPooledBody {
		return
	}
	m.Data = m.Data[:0]
	p.pool.Put(m)
}
