package cluster

import (
	"bytes"
	"context"
	"maps"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
)

// Limits of what a fast-mode node holds for a subscriber that falls
// behind, in messages (or signals) and bytes: its NATS subscriptions'
// pending limits, and its own signals waiting for its own subscriptions.
const (
	pendingLimit      = 1 << 20
	pendingBytesLimit = 256 << 20
)

// ownDelivery hands the messages a fast-mode node sends to its own
// subscriptions. The node's signal connection does not echo its publishes
// back (nats.NoEcho): sending every batch back to its sender cost the
// server a copy and a write, and the node a read and, mostly, a look at a
// type no subscription of its own wanted; together some 13 % of the
// cross-node rate. So the node keeps a copy of each message whose type
// one of its own subscriptions (or its history) wants, and decodes and
// delivers it as its receiver does another node's: its subscriptions see
// the same signal on every node (extension values as the wire carries
// them, the time in UTC) and none of the publisher's buffers.
//
// It does so on a goroutine of its own, from a queue, never in Publish:
// a handler that publishes a type its own full subscription (Block)
// matches would otherwise wait for itself. The queue is bounded as the
// NATS subscription that carried the echo was (pendingLimit signals,
// pendingBytesLimit bytes); past that, and once the node is closing,
// signals are dropped and counted (Stats.LocalLost), as NATS drops and
// counts a slow consumer's messages.
type ownDelivery struct {
	n    *Node
	recv *receiver // decodes and delivers, as the receiver does, without the loss check

	mu       sync.Mutex
	pending  []ownMsg // in the order they were sent
	count    int      // signals queued or being delivered
	bytes    int      // their messages' bodies
	dropping bool     // the last message was dropped: logged once per run of drops
	closed   bool     // close began: the goroutine ends once pending is empty
	limit    int      // pendingLimit, unless a test lowers it

	wake chan struct{} // one slot: pending has something, or close began
	done chan struct{}
}

type ownMsg struct {
	msg     *nats.Msg
	signals int
}

func newOwnDelivery(n *Node, r *receiver) *ownDelivery {
	own := &receiver{n: n, own: true, max: r.max, tracer: r.tracer, prop: r.prop, batchSize: r.batchSize, attrs: r.attrs}
	o := &ownDelivery{n: n, recv: own, limit: pendingLimit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go o.run()
	return o
}

// add queues a copy of msg, just published, for the node's own
// subscriptions if any wants its signals (carried: all of one type, as
// encode makes a message). It never waits.
func (o *ownDelivery) add(msg *nats.Msg, carried []bus.Signal) {
	n := o.n
	if len(carried) == 0 || !n.bus.Wants(carried[0].Type) {
		return
	}
	// The body may be a pooled buffer, or a binary message's data the
	// caller's own: the copy is the node's, as a received message is.
	cp := &nats.Msg{Subject: msg.Subject, Header: maps.Clone(msg.Header), Data: bytes.Clone(msg.Data)}
	o.mu.Lock()
	if o.closed || o.count+len(carried) > o.limit || o.bytes+len(cp.Data) > pendingBytesLimit {
		first := !o.dropping
		o.dropping = true
		o.mu.Unlock()
		n.localLost.Add(int64(len(carried)))
		if first {
			n.logger.Error("signals this node published are not delivered to its own subscriptions (Stats.LocalLost): "+
				"they are too far behind, or the node is closing", "count", len(carried), "type", carried[0].Type)
		}
		return
	}
	o.pending = append(o.pending, ownMsg{msg: cp, signals: len(carried)})
	o.count += len(carried)
	o.bytes += len(cp.Data)
	o.dropping = false
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run delivers what add queued, in order, as the receiver delivers other
// nodes' messages (up to Config.BatchSize at once, under one receive
// span), waiting for a full Block queue until the node closes.
func (o *ownDelivery) run() {
	defer close(o.done)
	n := o.n
	var msgs []*nats.Msg
	for {
		o.mu.Lock()
		taken := o.pending
		o.pending = nil
		closed := o.closed
		o.mu.Unlock()
		for len(taken) > 0 {
			k := min(len(taken), max(o.recv.max, 1))
			signals, size := 0, 0
			for _, m := range taken[:k] {
				msgs = append(msgs, m.msg)
				signals += m.signals
				size += len(m.msg.Data)
			}
			o.recv.handle(msgs)
			clear(msgs)
			msgs = msgs[:0]
			clear(taken[:k])
			taken = taken[k:]
			o.mu.Lock()
			o.count -= signals
			o.bytes -= size
			o.mu.Unlock()
		}
		if closed {
			o.mu.Lock()
			empty := len(o.pending) == 0
			o.mu.Unlock()
			if empty {
				return
			}
			continue
		}
		select {
		case <-o.wake:
		case <-n.ctx.Done():
			return
		}
	}
}

// close lets the goroutine deliver what is queued and waits, within ctx,
// until it has ended. What is published after close began is counted
// lost (Stats.LocalLost), not delivered here.
func (o *ownDelivery) close(ctx context.Context) error {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	select {
	case <-o.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
