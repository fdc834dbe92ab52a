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
	// receiverQueueLen is the fast receiver's bound in messages: its
	// synchronous subscription's channel (nats.SyncQueueLen), an array
	// of that many pointers, 2 MiB, resident once the ring has gone round
	// and scanned by every GC cycle; a million would cost 8 MiB so.
	receiverQueueLen = 1 << 18
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
	// A receiver of its own (its buffers and decoder are not shared with
	// r's goroutine), without a NATS subscription: only handle is for it.
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
	o.mu.Lock()
	if o.closed || o.count+len(carried) > o.limit || o.bytes+len(msg.Data) > pendingBytesLimit {
		first, closed := !o.dropping, o.closed
		o.dropping = true
		o.mu.Unlock()
		n.localLost.Add(int64(len(carried)))
		switch {
		case first && closed:
			n.logger.Warn("signals published while the node closes are not delivered to its own subscriptions (Stats.LocalLost)",
				"count", len(carried), "type", carried[0].Type)
		case first:
			n.logger.Error("the node's own subscriptions are too far behind: signals it published are not delivered to them (Stats.LocalLost)",
				"count", len(carried), "type", carried[0].Type)
		}
		return
	}
	// The body may be a pooled buffer, or a binary message's data the
	// caller's own: the copy is the node's, as a received message is.
	// (Under the lock: add is called in publish order, and the queue must
	// keep it.)
	cp := &nats.Msg{Subject: msg.Subject, Header: maps.Clone(msg.Header), Data: bytes.Clone(msg.Data)}
	o.pending = append(o.pending, ownMsg{msg: cp, signals: len(carried)})
	o.count += len(carried)
	o.bytes += len(cp.Data)
	o.dropping = false
	o.mu.Unlock()
	nudge(o.wake)
}

// run delivers what add queued, in order, as the receiver delivers other
// nodes' messages (up to Config.BatchSize messages at once, under one
// receive span), waiting for a full Block queue until the node closes.
// When the node stops first (its Close ran out of time), what is still
// queued is counted lost, the messages in hand included, though Dispatch
// may have queued some of their signals before it stopped.
func (o *ownDelivery) run() {
	defer close(o.done)
	n := o.n
	defer func() {
		o.mu.Lock()
		undelivered := o.count
		o.closed = true
		o.pending, o.count, o.bytes = nil, 0, 0
		o.mu.Unlock()
		if undelivered > 0 {
			n.localLost.Add(int64(undelivered))
			n.logger.Warn("the node stopped before its own subscriptions took all it had published (Stats.LocalLost)",
				"count", undelivered)
		}
	}()
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
			if n.ctx.Err() != nil {
				return
			}
			o.recv.handle(msgs)
			if n.ctx.Err() != nil {
				return // the messages in hand count as undelivered
			}
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
	nudge(o.wake)
	select {
	case <-o.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nudge wakes the goroutine waiting on wake (a channel of one slot) if it
// is not already due to wake.
func nudge(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}
