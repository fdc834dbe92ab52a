package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// receiver is the receiving side of a fast-mode node: one synchronous
// subscription on <prefix>.>, read by one goroutine that takes every
// message already waiting (up to Config.BatchSize) and dispatches them to
// the bus as one batch, under one receive span linking each signal's
// producer.
type receiver struct {
	n         *Node
	sub       *nats.Subscription
	max       int
	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
	batchSize metric.Int64Histogram
	attrs     metric.MeasurementOption
	done      chan struct{}
	// handled counts the messages taken from sub whose handling is done
	// (see catchUp).
	handled atomic.Int64
	// own marks the receiver of the node's own messages (ownDelivery):
	// no subscription of its own, and no loss check (what the node sent
	// is its own subscriptions' only when they want it: its sequence has
	// gaps here by design).
	own bool
	// Reused from one handle call to the next by the one goroutine that
	// makes them; the bus copies each signal into its queues.
	events  []wire.Event
	signals []bus.Signal
	origins []origin     // of each of signals
	decoder wire.Decoder // keeps what repeats from one batch to the next
}

// origin is where a received signal came from, to park it should the bus
// refuse it as invalid: its message and, for an event of a batch, the
// event's own encoding.
type origin struct {
	msg *nats.Msg
	raw []byte // nil: the signal is the whole message
}

func newReceiver(n *Node, meter metric.Meter) (*receiver, error) {
	hist, err := batchSizeHistogram(meter)
	if err != nil {
		return nil, err
	}
	sub, err := n.sigs.SubscribeSync(n.cfg.Prefix + ".>")
	if err != nil {
		return nil, err
	}
	// nats.go drops a slow subscriber's messages past these limits (and
	// its SyncQueueLen: see Start); fast mode is at-most-once, but the
	// losses are counted (Stats.SlowLost, and the gaps they leave).
	if err := sub.SetPendingLimits(receiverQueueLen, pendingBytesLimit); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	n.drops.watch(sub)
	r := &receiver{n: n, sub: sub, max: n.cfg.BatchSize, tracer: n.cfg.TracerProvider.Tracer(ScopeName),
		prop: propagation.TraceContext{}, batchSize: hist, done: make(chan struct{}),
		attrs: metric.WithAttributes(attribute.String("messaging.system", "signalbus"),
			attribute.String("signalbus.node", n.cfg.Name), attribute.String("messaging.operation.type", "receive"))}
	go r.run()
	return r, nil
}

func (r *receiver) run() {
	defer close(r.done)
	msgs := make([]*nats.Msg, 0, r.max)
	for {
		m, err := r.sub.NextMsg(time.Second)
		if err != nil {
			if !r.sub.IsValid() || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
				return
			}
			continue // a timeout, or a slow-consumer notice (counted by natsError)
		}
		msgs = append(msgs[:0], m)
		for len(msgs) < r.max {
			// Only what is already here: NextMsg(0) on an empty queue
			// would wait for a timer before failing, delaying the batch.
			if waiting, _, _ := r.sub.Pending(); waiting == 0 {
				break
			}
			m, err := r.sub.NextMsg(0)
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		r.handle(msgs)
		r.handled.Add(int64(len(msgs)))
		clear(msgs)
	}
}

// handle decodes a batch of messages (each one signal, or a batch of them:
// Config.Encoding), parks what is not a CloudEvent, counts gaps and
// dispatches the rest at once. The events of a batch are not validated
// here: Dispatch validates them anyway, and only when it refuses the
// batch are they checked one by one (see dispatch).
func (r *receiver) handle(msgs []*nats.Msg) {
	n := r.n
	signals, origins := r.signals[:0], r.origins[:0]
	defer func() {
		// The bus has its copies; drop the references.
		clear(signals)
		clear(origins)
		r.signals, r.origins = signals[:0], origins[:0]
	}()
	seen := sequenceRun{n: n, off: r.own}
	behind := 0
	for _, m := range msgs {
		// The loss check must see the numbers in their order of arrival,
		// and unwanted accounts for its messages at once.
		seen.flush()
		batch := wire.IsBatch(m)
		if !r.own && r.unwanted(m, batch) {
			continue
		}
		if !batch {
			sig, err := wire.Decode(m)
			if err != nil {
				n.park(m, err)
				// Parked, not lost in transit: its stamps, if it has
				// any, still count, as an invalid event's of a batch do.
				if from, seq, ok := binaryStampKey(m); ok {
					seen.addKey(from, seq)
				}
				continue
			}
			if seen.add(sig) {
				behind++
				continue
			}
			signals = append(signals, sig)
			origins = append(origins, origin{msg: m})
			continue
		}
		events, err := r.decoder.AppendBatchUnchecked(r.events[:0], m.Data)
		if err != nil {
			n.park(m, err)
			continue
		}
		signals = slices.Grow(signals, len(events))
		origins = slices.Grow(origins, len(events))
		for _, e := range events {
			if e.Err != nil {
				// Parked, not lost in transit: its stamps still count.
				if from, seq, _, ok := eventStampKey(&r.decoder, e.Raw); ok {
					seen.addKey(from, seq)
				}
				n.parkEvent(m, e)
				continue
			}
			if seen.add(e.Signal) {
				behind++
				continue
			}
			signals = append(signals, e.Signal)
			origins = append(origins, origin{msg: m, raw: e.Raw})
		}
		clear(events)
		r.events = events[:0]
	}
	seen.flush()
	if behind > 0 {
		n.logger.Warn("signals behind their publisher's sequence dropped: repeated, or late (counted lost when their gap was seen)",
			"count", behind)
	}
	r.deliver(signals, origins)
}

// deliver dispatches signals that came in together to the bus, under one
// receive span that links each signal's producer, and records the batch's
// size. origins tells where each came from, to park it if need be.
func (r *receiver) deliver(signals []bus.Signal, origins []origin) {
	if len(signals) == 0 {
		return
	}
	n := r.n
	ctx, span := r.tracer.Start(n.ctx, "receive", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "signalbus"),
			attribute.String("messaging.operation.name", "receive"), attribute.String("messaging.operation.type", "receive"),
			attribute.Int("messaging.batch.message_count", len(signals)), attribute.String("signalbus.node", n.cfg.Name))
		addSignalLinks(span, r.prop, signals)
	}
	r.batchSize.Record(ctx, int64(len(signals)), r.attrs)
	r.dispatch(signals, origins)
	span.End()
}

// binaryStampKey reads a binary-mode message's stamps from its headers,
// for a message that may not decode.
func binaryStampKey(m *nats.Msg) (key publisherKey, seq uint64, ok bool) {
	node, _ := wire.BinaryAttribute(m, ExtensionNode)
	inst, _ := wire.BinaryAttribute(m, ExtensionInstance)
	text, _ := wire.BinaryAttribute(m, ExtensionSequence)
	return stampKey(node, inst, text)
}

// eventStampKey reads the stamps of an event of a batch message, which
// may not decode: its publisher, its number and its floor (its number
// when it carries none).
func eventStampKey(d *wire.Decoder, raw []byte) (key publisherKey, seq, floor uint64, ok bool) {
	st := d.EventStamps(raw, ExtensionNode, ExtensionInstance, ExtensionSequence, ExtensionFloor)
	key, seq, ok = stampKey(st.Values[0], st.Values[1], st.Values[2])
	return key, seq, parseFloor(st.Values[3], seq), ok
}

// dispatch hands signals to the bus in one call. The bus refuses a whole
// batch for one signal it finds invalid; then each is checked on its own:
// one that is not a valid signal is parked, as if it had been found so
// when decoded, and the others go one at a time, so that only what the
// bus refuses for its own reasons (its data limit) is refused, and parked
// too.
func (r *receiver) dispatch(signals []bus.Signal, origins []origin) {
	n := r.n
	err := n.bus.Dispatch(n.ctx, signals...)
	if err == nil || errors.Is(err, bus.ErrClosed) {
		return
	}
	if !errors.Is(err, bus.ErrInvalidSignal) {
		n.logger.Error("dispatch failed", "count", len(signals), "type", signals[0].Type, "error", err)
		return
	}
	for i, sig := range signals {
		if err := wire.Check(sig); err != nil {
			origins[i].park(n, err)
			continue
		}
		switch err := n.bus.Dispatch(n.ctx, sig); {
		case err == nil, errors.Is(err, bus.ErrClosed):
		case errors.Is(err, bus.ErrInvalidSignal):
			// A valid CloudEvent this node's bus refuses (over its own
			// data limit, lower than the publisher's): kept, not dropped.
			origins[i].park(n, err)
		default:
			n.logger.Error("dispatch failed", "signal_id", sig.ID, "type", sig.Type, "error", err)
		}
	}
}

// park parks the signal where it came from: its message, or its event of
// a batch message.
func (o origin) park(n *Node, cause error) {
	if o.raw == nil {
		n.park(o.msg, cause)
		return
	}
	n.parkEvent(o.msg, wire.Event{Err: cause, Raw: o.raw})
}

// sequenceRun gathers the sequence numbers a receiver sees into runs of
// one publisher's consecutive numbers, for the node's loss check
// (sequenceSeen, which takes a lock) once per run rather than per signal:
// a batch from a node is one run.
type sequenceRun struct {
	n           *Node
	off         bool // sees nothing: the node's own messages
	from        publisherKey
	first, last uint64
	open        bool
}

// add takes a signal's number, and reports whether the signal is behind
// its publisher's sequence as this node has seen it: a number it saw
// already, or one past which later ones arrived (counted lost when they
// did). Such a signal is not delivered: fast mode never repeats a signal
// nor lets one overtake another.
func (r *sequenceRun) add(sig bus.Signal) (behind bool) {
	if from, seq, ok := orderKey(sig); ok {
		return r.addKey(from, seq)
	}
	return false
}

// addKey is add for a signal's stamps.
func (r *sequenceRun) addKey(from publisherKey, seq uint64) (behind bool) {
	if r.off {
		return false
	}
	if r.open && from == r.from {
		if seq == r.last+1 {
			r.last = seq
			return false
		}
		if seq <= r.last {
			return true
		}
	}
	r.flush()
	if r.n.behind(from, seq) {
		return true
	}
	r.from, r.first, r.last, r.open = from, seq, seq, true
	return false
}

func (r *sequenceRun) flush() {
	if r.open {
		r.n.sequenceSeen(r.from, r.first, r.last)
		r.open = false
	}
}

// unwanted reports whether m (a batch message when batch) can go
// undecoded, and accounts for it if so: a message a node stamped (a
// signal, or a batch of them, of the type its subject names) whose type
// no subscription on this node's bus, nor a group of the node, wants. Its stamps still count for the loss check, read without decoding
// the rest. Such a message is not checked here: if it is not a valid
// CloudEvent, the nodes that want its type park it. Everything else is
// decoded, and parked here when it is not valid.
//
// Fast mode's receiver takes every signal subject other nodes send, so a
// node would otherwise decode every signal of a type that only other
// nodes subscribe to, for nothing. (Its own signals do not come back:
// see ownDelivery.)
func (r *receiver) unwanted(m *nats.Msg, batch bool) bool {
	n := r.n
	typ, ok := strings.CutPrefix(m.Subject, n.cfg.Prefix+".")
	if !ok || n.bus.Wants(typ) || n.fastGroups.wants(typ) {
		return false
	}
	if !batch {
		if t, _ := wire.BinaryAttribute(m, "type"); t != typ {
			return false
		}
		from, seq, ok := binaryStampKey(m)
		if !ok {
			return false
		}
		n.sequenceSeen(from, seq, seq)
		n.undecoded.Add(1)
		return true
	}
	first, last, count, err := r.decoder.BatchStamps(m.Data, ExtensionNode, ExtensionInstance, ExtensionSequence)
	if err != nil || count == 0 || !first.OK || !last.OK || first.Type != typ || last.Type != typ {
		return false
	}
	// A node numbers a batch's signals one after the other, so its ends
	// are all the loss check needs; a batch numbered otherwise is not one
	// a node sent, and is decoded.
	from, firstSeq, ok := stampKey(first.Values[0], first.Values[1], first.Values[2])
	to, lastSeq, lastOK := stampKey(last.Values[0], last.Values[1], last.Values[2])
	if !ok || !lastOK || from != to || lastSeq < firstSeq || lastSeq-firstSeq+1 != uint64(count) {
		return false
	}
	n.sequenceSeen(from, firstSeq, lastSeq)
	n.undecoded.Add(1)
	return true
}

// catchUp returns once the receiver has handled every message that the
// server had sent its connection when catchUp was called, or ctx ends, or
// the receiver does. A flush's answer comes after everything sent before
// it; the messages then waiting, or in hand, are counted, and catchUp
// waits until that many have been handled.
func (r *receiver) catchUp(ctx context.Context) error {
	if err := r.n.sigs.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("receiver: flush: %w", err)
	}
	var target int64
	for {
		// Delivered and Pending are read apart: read Delivered again to
		// know no message moved from one to the other in between.
		before, err := r.sub.Delivered()
		if err != nil {
			return nil // unsubscribed: nothing more will be handled
		}
		waiting, _, err := r.sub.Pending()
		if err != nil {
			return nil
		}
		if after, err := r.sub.Delivered(); err != nil || after == before {
			target = before + int64(waiting)
			break
		}
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for r.handled.Load() < target {
		select {
		case <-r.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("receiver: catch up: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// close drains the subscription within ctx and waits for the batches in
// hand to be dispatched.
func (r *receiver) close(ctx context.Context) error {
	err := r.n.drops.drain(ctx, r.sub)
	select {
	case <-r.done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}
