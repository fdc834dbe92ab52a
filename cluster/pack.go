package cluster

import (
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// stampAttrs are the extension attributes a node writes on a signal it
// sends in a batch message: the node, its instance, the signal's sequence
// number and, in durable mode, the floor (0: none).
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

// packBatches encodes signals as batch messages (Config.Encoding
// ProtobufBatch): one per run of consecutive signals of one type, so that
// each message has its type's subject and the runs keep the publish order;
// a run whose message would pass the server's payload limit is split. It
// hands each message, with the signals it carries, to publish, in order.
// stamp gives signal i's stamps.
func (n *Node) packBatches(signals []bus.Signal, stamp func(i int, dst []wire.Attr) []wire.Attr,
	publish func(msg *nats.Msg, carried []bus.Signal) error) error {
	for from := 0; from < len(signals); {
		to := from + 1
		for to < len(signals) && signals[to].Type == signals[from].Type {
			to++
		}
		if err := n.packRun(signals, from, to, stamp, publish); err != nil {
			return err
		}
		from = to
	}
	return nil
}

// payloadMargin is left under the server's payload limit for the headers.
const payloadMargin = 4 << 10

func (n *Node) packRun(signals []bus.Signal, from, to int, stamp func(i int, dst []wire.Attr) []wire.Attr,
	publish func(msg *nats.Msg, carried []bus.Signal) error) error {
	msg, err := wire.EncodeBatch(signals[from:to], n.cfg.Prefix, func(i int, dst []wire.Attr) []wire.Attr {
		return stamp(from+i, dst)
	})
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if limit := n.nc.MaxPayload() - payloadMargin; int64(len(msg.Data)) > limit && to-from > 1 {
		mid := from + (to-from)/2
		if err := n.packRun(signals, from, mid, stamp, publish); err != nil {
			return err
		}
		return n.packRun(signals, mid, to, stamp, publish)
	}
	return publish(msg, signals[from:to])
}
