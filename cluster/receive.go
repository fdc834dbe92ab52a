package cluster

import (
	"context"
	"errors"
	"slices"
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
}

func newReceiver(n *Node, meter metric.Meter) (*receiver, error) {
	hist, err := batchSizeHistogram(meter)
	if err != nil {
		return nil, err
	}
	sub, err := n.nc.SubscribeSync(n.cfg.Prefix + ".>")
	if err != nil {
		return nil, err
	}
	// Core NATS drops a slow subscriber's messages past these limits;
	// fast mode is at-most-once, but the losses are counted (natsError).
	if err := sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
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
		clear(msgs)
	}
}

// handle decodes a batch of messages (each one signal, or a batch of them:
// Config.Encoding), parks what is not a CloudEvent, counts gaps and
// dispatches the rest at once.
func (r *receiver) handle(msgs []*nats.Msg) {
	n := r.n
	signals := make([]bus.Signal, 0, len(msgs))
	for _, m := range msgs {
		if !wire.IsBatch(m) {
			sig, err := wire.Decode(m)
			if err != nil {
				n.park(m, err)
				continue
			}
			n.checkSequence(sig)
			signals = append(signals, sig)
			continue
		}
		events, err := wire.DecodeBatch(m.Data)
		if err != nil {
			n.park(m, err)
			continue
		}
		signals = slices.Grow(signals, len(events))
		for _, e := range events {
			if e.Err != nil {
				n.parkEvent(m, e)
				continue
			}
			n.checkSequence(e.Signal)
			signals = append(signals, e.Signal)
		}
	}
	if len(signals) == 0 {
		return
	}
	ctx, span := r.tracer.Start(n.ctx, "receive", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "signalbus"),
			attribute.String("messaging.operation.name", "receive"), attribute.String("messaging.operation.type", "receive"),
			attribute.Int("messaging.batch.message_count", len(signals)), attribute.String("signalbus.node", n.cfg.Name))
		addSignalLinks(span, r.prop, signals)
	}
	r.batchSize.Record(ctx, int64(len(signals)), r.attrs)
	n.dispatchBatch(signals)
	span.End()
}

// dispatchBatch hands signals to the bus in one call. The bus refuses a
// whole batch for one signal it finds invalid (over its data limit, say),
// so then each goes on its own and only the bad one is refused.
func (n *Node) dispatchBatch(signals []bus.Signal) {
	err := n.bus.Dispatch(n.ctx, signals...)
	if err == nil || errors.Is(err, bus.ErrClosed) {
		return
	}
	if !errors.Is(err, bus.ErrInvalidSignal) || len(signals) == 1 {
		n.logger.Error("dispatch failed", "count", len(signals), "error", err)
		return
	}
	for _, sig := range signals {
		if err := n.bus.Dispatch(n.ctx, sig); err != nil && !errors.Is(err, bus.ErrClosed) {
			n.logger.Error("dispatch failed", "signal_id", sig.ID, "type", sig.Type, "error", err)
		}
	}
}

// close drains the subscription within ctx and waits for the batches in
// hand to be dispatched.
func (r *receiver) close(ctx context.Context) error {
	err := drainSubscription(ctx, r.sub)
	select {
	case <-r.done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}
