package bus

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// measurements are the metric values one subscription's worker gathered
// over a batch of deliveries, waiting to be handed to the meter.
type measurements struct {
	latency  []float64 // signal time → start of its first handler run, in seconds
	process  []float64 // one handler run, in seconds
	consumed int64     // signals taken from the queue and delivered
}

func (m *measurements) reset() {
	m.latency, m.process, m.consumed = m.latency[:0], m.process[:0], 0
}

// recorderBuffers is how many batches of measurements a subscription keeps:
// the worker fills one while the recorder hands the others to the meter.
// When every buffer is waiting, the worker waits too, so a meter slower
// than the handler slows delivery instead of growing memory or losing
// measurements.
const recorderBuffers = 3

// recorder hands a subscription's per-signal measurements to the meter on
// a goroutine of its own, off the delivery path. An SDK histogram
// measurement costs a few hundred nanoseconds (the SDK resolves the
// attribute set on every call); two of them per signal were more than
// half of a subscription's delivery cost with an SDK installed. On a
// second core the recorder overlaps them with the next batch's handler
// runs.
//
// Only the subscription's worker calls its methods. The goroutine starts
// with the first batch measured, so a bus without a metrics SDK never runs
// it, and it ends in stop, which the worker calls as it exits: a
// subscription's Done is closed only once its measurements are recorded.
type recorder struct {
	ins          *instruments
	recordOpts   []metric.RecordOption
	consumedOpts []metric.AddOption

	filled  chan *measurements // waiting to be recorded
	emptied chan *measurements // recorded, free to fill
	stopped chan struct{}
}

// buffer returns an empty batch of measurements to fill, waiting for the
// recorder to free one when all are in use.
func (r *recorder) buffer() *measurements {
	if r.filled == nil {
		r.filled = make(chan *measurements, recorderBuffers)
		r.emptied = make(chan *measurements, recorderBuffers)
		r.stopped = make(chan struct{})
		for range recorderBuffers {
			r.emptied <- new(measurements)
		}
		go r.run()
	}
	return <-r.emptied
}

// submit queues m for recording; m must come from buffer.
func (r *recorder) submit(m *measurements) { r.filled <- m }

// stop waits until every submitted batch is recorded and ends the
// recorder's goroutine.
func (r *recorder) stop() {
	if r.filled == nil {
		return
	}
	close(r.filled)
	<-r.stopped
}

func (r *recorder) run() {
	defer close(r.stopped)
	// Background, not a handler's ctx: the values are recorded after the
	// runs they measure, whose spans have ended.
	ctx := context.Background()
	for m := range r.filled {
		for _, v := range m.latency {
			r.ins.latency.Record(ctx, v, r.recordOpts...)
		}
		for _, v := range m.process {
			r.ins.procDur.Record(ctx, v, r.recordOpts...)
		}
		if m.consumed > 0 {
			r.ins.consumed.Add(ctx, m.consumed, r.consumedOpts...)
		}
		m.reset()
		r.emptied <- m
	}
}
