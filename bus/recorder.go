package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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
// The worker fills buffers and submits them; the goroutine runs while
// there is work: submit starts it, and it ends after one to two
// recorderIdle periods without any, so an idle subscription (or one on a
// bus without a metrics SDK, which never submits) costs no goroutine. stop, which the worker calls as
// it exits, waits until every submitted batch is recorded: a
// subscription's Done is closed only then. Only the worker calls buffer,
// submit and stop.
type recorder struct {
	ins          *instruments
	recordOpts   []metric.RecordOption
	consumedOpts []metric.AddOption

	filled  chan *measurements // waiting to be recorded; as many slots as buffers, so a send never blocks
	emptied chan *measurements // recorded, free to fill

	// running is true while a goroutine records. Whoever turns it from
	// false to true runs (submit starts a goroutine; an idle goroutine
	// that finds work after giving up keeps going), so exactly one runs
	// whenever filled holds a buffer. No lock on the hot path: a submit
	// is a channel send and, mostly, a failed compare-and-swap.
	running atomic.Bool
	runners sync.WaitGroup
	idle    time.Duration // recorderIdle, unless a test shortens it
}

// recorderIdle is how long the recorder's goroutine goes without work
// (one to two periods) before it ends.
const recorderIdle = time.Second

// buffer returns an empty batch of measurements to fill, waiting for the
// recorder to free one when all are in use.
func (r *recorder) buffer() *measurements {
	if r.filled == nil {
		r.filled = make(chan *measurements, recorderBuffers)
		r.emptied = make(chan *measurements, recorderBuffers)
		for range recorderBuffers {
			r.emptied <- new(measurements)
		}
	}
	return <-r.emptied
}

// submit queues m for recording, starting the goroutine if none runs; m
// must come from buffer.
func (r *recorder) submit(m *measurements) {
	r.filled <- m
	if r.running.CompareAndSwap(false, true) {
		r.runners.Add(1)
		go r.run()
	}
}

// stop waits until every submitted batch is recorded and the goroutine
// has ended. The worker submits nothing after it.
func (r *recorder) stop() {
	if r.filled == nil {
		return
	}
	close(r.filled) // a running goroutine records what is left, then sees it closed
	r.runners.Wait()
}

func (r *recorder) run() {
	defer r.runners.Done()
	// Background, not a handler's ctx: the values are recorded after the
	// runs they measure, whose spans have ended.
	ctx := context.Background()
	period := r.idle
	if period <= 0 {
		period = recorderIdle
	}
	idle := time.NewTicker(period)
	defer idle.Stop()
	worked := true
	for {
		select {
		case m, ok := <-r.filled:
			if !ok {
				return
			}
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
			worked = true
		case <-idle.C:
			if worked {
				worked = false
				continue
			}
			r.running.Store(false)
			// A submit between the last receive and the Store saw running
			// and started nothing: take its work back, unless a submit
			// after the Store started a goroutine for it.
			if len(r.filled) > 0 && r.running.CompareAndSwap(false, true) {
				continue
			}
			return
		}
	}
}
