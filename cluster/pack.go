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
// bodies, when not nil, lends and takes back the batch bodies: only for a
// publish that copies the message before it returns.
func (n *Node) encode(signals []bus.Signal, numbers stamps, bodies *bodyPool, publish func(msg *nats.Msg, carried []bus.Signal) error) error {
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
			if err := n.packRun(signals, from, to, stamp, bodies, publish); err != nil {
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
		for _, a := range stamp(i, attrs[:0]) {
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

// packRun sends signals[from:to], all of one type, as one batch message, or
// as two halves (recursively) when the message would be too big.
func (n *Node) packRun(signals []bus.Signal, from, to int, stamp func(i int, dst []wire.Attr) []wire.Attr,
	bodies *bodyPool, publish func(msg *nats.Msg, carried []bus.Signal) error) error {
	// Every signal a node sends came through its bus's Publish, which
	// validated it.
	msg, err := wire.EncodePublishedInto(bodies.get(), signals[from:to], n.cfg.Prefix, func(i int, dst []wire.Attr) []wire.Attr {
		return stamp(from+i, dst)
	})
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	defer bodies.put(msg.Data)
	if limit := n.signalConn().MaxPayload() - payloadMargin; int64(len(msg.Data)) > limit && to-from > 1 {
		mid := from + (to-from)/2
		if err := n.packRun(signals, from, mid, stamp, bodies, publish); err != nil {
			return err
		}
		return n.packRun(signals, mid, to, stamp, bodies, publish)
	}
	return publish(msg, signals[from:to])
}

// bodyPool keeps batch bodies for use again once their message is
// published: a 64-signal batch body is some 20 KiB, a sixth of all a fast
// node allocated per signal sent. A nil pool lends nothing and keeps
// nothing.
type bodyPool struct{ pool sync.Pool }

// maxPooledBody bounds the bodies a pool keeps, so that one big batch
// does not stay allocated for good.
const maxPooledBody = 256 << 10

func (p *bodyPool) get() []byte {
	if p == nil {
		return nil
	}
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return nil
}

func (p *bodyPool) put(b []byte) {
	if p == nil || cap(b) > maxPooledBody {
		return
	}
	b = b[:0]
	p.pool.Put(&b)
}
