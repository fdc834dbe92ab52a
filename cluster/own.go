package cluster

import (
	"context"
	"maps"
	"strconv"
	"sync"

	"github.com/signalbus/signalbus/bus"
)

// Limits of what a fast-mode node holds for a subscriber that falls
// behind, in messages (or signals) and bytes: its NATS subscriptions'
// pending limits, and its own signals waiting for its own subscriptions.
const (
	pendingLimit      = 1 << 20
	pendingBytesLimit = 256 << 20
)

// ownDelivery hands the signals a fast-mode node sends to its own
// subscriptions. The node's signal connection does not echo its publishes
// back (nats.NoEcho): sending every batch back to its sender cost the
// server a copy and a write, and the node a read and, mostly, a look at a
// type no subscription of its own wanted; together some 15 % of a sending
// node's and its server's CPU. So the node delivers its own signals itself,
// stamped as other nodes see them.
//
// It does so on a goroutine of its own, from a queue, never in Publish:
// a handler that publishes a type its own full subscription (Block)
// matches would otherwise wait for itself. The queue is bounded as the
// NATS subscription that carried the echo was (pendingLimit signals,
// pendingBytesLimit bytes of data); past that, signals are dropped and
// counted (Stats.LocalLost), as NATS dropped and counted a slow consumer's
// messages.
type ownDelivery struct {
	n    *Node
	recv *receiver // delivers, as it does other nodes' signals

	mu       sync.Mutex
	pending  []ownBatch // in the order they were sent
	count    int        // signals queued or being dispatched
	bytes    int        // their data
	dropping bool       // the last batch was dropped: logged once per run of drops
	closed   bool       // close began: the run goroutine ends once pending is empty
	limit    int        // pendingLimit, unless a test lowers it

	wake chan struct{} // one slot: pending has something, or close began
	done chan struct{}
}

type ownBatch struct {
	signals []bus.Signal
	bytes   int
}

func newOwnDelivery(n *Node, recv *receiver) *ownDelivery {
	o := &ownDelivery{n: n, recv: recv, limit: pendingLimit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go o.run()
	return o
}

// add queues copies of the signals the node just sent, numbered from
// seqs, for those of its own subscriptions that want them. It never waits.
func (o *ownDelivery) add(signals []bus.Signal, seqs []uint64) {
	n := o.n
	var local []bus.Signal
	want := false
	size := 0
	for i, s := range signals {
		if i == 0 || s.Type != signals[i-1].Type {
			want = n.bus.Wants(s.Type)
		}
		if !want {
			continue
		}
		if local == nil {
			local = make([]bus.Signal, 0, len(signals)-i)
		}
		s.Extensions = n.stampedExtensions(s.Extensions, seqs[i])
		size += len(s.Data)
		local = append(local, s)
	}
	if len(local) == 0 {
		return
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	if o.count+len(local) > o.limit || o.bytes+size > pendingBytesLimit {
		first := !o.dropping
		o.dropping = true
		o.mu.Unlock()
		n.localLost.Add(int64(len(local)))
		if first {
			n.logger.Error("own subscriptions too far behind: signals this node published are not delivered to them (Stats.LocalLost)",
				"count", len(local), "type", local[0].Type)
		}
		return
	}
	o.pending = append(o.pending, ownBatch{signals: local, bytes: size})
	o.count += len(local)
	o.bytes += size
	o.dropping = false
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// stampedExtensions is a copy of ext with the node's stamps for sequence
// number seq, as a receiving node decodes them (all three strings).
func (n *Node) stampedExtensions(ext map[string]any, seq uint64) map[string]any {
	out := make(map[string]any, len(ext)+3)
	maps.Copy(out, ext)
	out[ExtensionNode] = n.cfg.Name
	out[ExtensionInstance] = n.instance
	out[ExtensionSequence] = strconv.FormatUint(seq, 10)
	return out
}

// run delivers what add queued, in order, as the receiver delivers other
// nodes' signals: under a receive span, waiting for a full Block queue
// until the node closes.
func (o *ownDelivery) run() {
	defer close(o.done)
	n := o.n
	for {
		o.mu.Lock()
		batches := o.pending
		o.pending = nil
		closed := o.closed
		o.mu.Unlock()
		for _, batch := range batches {
			o.recv.deliver(batch.signals, nil)
			o.mu.Lock()
			o.count -= len(batch.signals)
			o.bytes -= batch.bytes
			o.mu.Unlock()
		}
		if len(batches) > 0 {
			continue
		}
		if closed {
			return
		}
		select {
		case <-o.wake:
		case <-n.ctx.Done():
			return
		}
	}
}

// close lets the goroutine deliver what is queued and waits, within ctx,
// until it has ended. Nothing added after close is delivered (nor counted
// lost: the node is closing).
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
