package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
)

// ErrOutboxFull is returned by PublishAsync when the outbox has no room for
// the batch; none of the batch was taken.
var ErrOutboxFull = errors.New("cluster outbox full")

type asyncKey struct{}

// PublishAsync publishes like Bus().Publish, except that it does not wait
// for the cluster: the signals are validated, filled and traced, then
// queued in the node's bounded outbox, which sends them in order as soon
// as the cluster is reachable (stored by the stream in durable mode),
// retrying for as long as it takes. It returns ErrOutboxFull, taking none
// of the batch, when the outbox (Config.OutboxSize) has no room. A
// synchronous Publish on the node queues behind what PublishAsync queued,
// so one publisher's order holds across both. The outbox lives in memory:
// Close drains it within its ctx and reports what it could not send.
func (n *Node) PublishAsync(ctx context.Context, signals ...bus.Signal) error {
	return n.bus.Publish(context.WithValue(ctx, asyncKey{}, true), signals...)
}

// outbox is the publishing pipeline of a node. Every publish, synchronous
// or not, joins one queue; a single goroutine sends from its head in
// batches of up to Config.BatchSize signals, waiting up to
// Config.BatchLinger for a batch to fill, so concurrent publishers share
// round trips and one publisher's order is the queue's. A synchronous
// publish waits for its signals' outcome; an asynchronous one (PublishAsync)
// returns at once and is retried until sent.
type outbox struct {
	n      *Node
	send   func(context.Context, []bus.Signal) error
	giveUp func([]bus.Signal) // told what settle gives up for good (durable: their sequence numbers); may be nil
	limit  int                // async signals held at most
	size   int                // batch size
	linger time.Duration

	mu       sync.Mutex
	entries  []*outboxEntry
	async    int           // async signals queued, against limit
	empty    chan struct{} // closed while the queue is empty
	wake     chan struct{}
	draining bool // Close has begun: no more lingering
	sending  bool // a batch taken from entries is in flight
	direct   bool // fast mode: a synchronous publish may send itself when nothing is queued
	acked    bool // durable mode: a send waits for the stream's acknowledgements (sendTimeout)

	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
	batchSize metric.Int64Histogram
	sendAttrs metric.MeasurementOption
	gaugeReg  metric.Registration
	stop      chan struct{}
	done      chan struct{}
}

// outboxEntry is one publish's signals not yet sent.
type outboxEntry struct {
	signals []bus.Signal // not yet sent
	handed  int          // signals the publish handed over
	sync    bool
	ctx     context.Context // sync: the publisher's, while it waits
	result  chan error      // sync: buffered, receives the outcome once
	taken   bool            // sync: part of a batch in flight
	gone    bool            // sync: the caller's ctx ended before it was taken
}

func newOutbox(n *Node, send func(context.Context, []bus.Signal) error, giveUp func([]bus.Signal), meter metric.Meter) (*outbox, error) {
	o := &outbox{n: n, send: send, giveUp: giveUp, limit: n.cfg.OutboxSize, size: n.cfg.BatchSize, linger: n.cfg.BatchLinger,
		empty: make(chan struct{}), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		tracer: n.cfg.TracerProvider.Tracer(ScopeName), prop: propagation.TraceContext{}, direct: n.cfg.Mode == Fast,
		acked: n.cfg.Mode == Durable}
	close(o.empty)
	depth, err := meter.Int64ObservableGauge("signalbus.outbox.depth", metric.WithUnit("{message}"),
		metric.WithDescription("Signals accepted by PublishAsync and not yet sent to the cluster."))
	if err != nil {
		return nil, err
	}
	if o.batchSize, err = batchSizeHistogram(meter); err != nil {
		return nil, err
	}
	o.sendAttrs = metric.WithAttributes(attribute.String("messaging.system", "signalbus"),
		attribute.String("signalbus.node", n.cfg.Name), attribute.String("messaging.operation.type", "send"))
	node := metric.WithAttributes(attribute.String("signalbus.node", n.cfg.Name))
	o.gaugeReg, err = meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		obs.ObserveInt64(depth, int64(o.depth()), node)
		return nil
	}, depth)
	if err != nil {
		return nil, err
	}
	go o.run()
	return o, nil
}

// batchSizeHistogram is signalbus.batch.size: signals per batch sent or
// received, told apart by messaging.operation.type.
func batchSizeHistogram(meter metric.Meter) (metric.Int64Histogram, error) {
	return meter.Int64Histogram("signalbus.batch.size", metric.WithUnit("{message}"),
		metric.WithDescription("Signals per batch a node sent (messaging.operation.type=send) or received (receive)."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
}

// Send is the node's transport: an asynchronous publish is queued and
// returns; a synchronous one is queued and waits for its outcome, or for
// its ctx (then ErrUnavailable).
func (o *outbox) Send(ctx context.Context, signals []bus.Signal) error {
	if async, _ := ctx.Value(asyncKey{}).(bool); async {
		return o.put(signals)
	}
	e := &outboxEntry{signals: signals, handed: len(signals), sync: true, ctx: ctx, result: make(chan error, 1)}
	if o.direct {
		switch outcome, err := o.sendDirect(e); outcome {
		case sentDirect:
			return err
		case queuedDirect:
			nudge(o.wake)
			return o.await(ctx, e)
		}
	}
	if err := o.enqueue(e); err != nil {
		return err
	}
	return o.await(ctx, e)
}

// Outcomes of sendDirect.
const (
	notDirect    = iota // something is queued or in flight: queue e behind it
	sentDirect          // sent, or failed for good: the error says
	queuedDirect        // the cluster is unreachable: what was not sent is queued, to wait for
)

// sendDirect sends a synchronous entry from the caller's goroutine when
// nothing is queued or in flight to overtake, sparing it two hand-offs.
// Only in fast mode, where a send only buffers: holding the lock through a
// round trip would serialise the publishers a batch could have carried
// together. When the cluster is unreachable, what was not sent goes into
// the queue, at its head (the lock is held throughout, so nothing is ahead
// of it), to be retried like any queued publish; what was sent is not sent
// again.
func (o *outbox) sendDirect(e *outboxEntry) (outcome int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock() // deferred: a panicking tracer must not leave the outbox locked
	if len(o.entries) > 0 || o.sending {
		return notDirect, nil
	}
	err = o.sendBatch(e.signals)
	if err == nil || !errors.Is(err, ErrUnavailable) {
		return sentDirect, err
	}
	e.signals = e.signals[sentBefore(err):]
	if err := o.enqueueLocked(e); err != nil {
		return sentDirect, err
	}
	o.n.logger.Debug("outbox: cluster unreachable; queued what a publish could not send", "queued", len(e.signals), "error", err)
	return queuedDirect, nil
}

// await waits for the outcome of a queued synchronous entry, or for its
// ctx (then ErrUnavailable).
func (o *outbox) await(ctx context.Context, e *outboxEntry) error {
	select {
	case err := <-e.result:
		return err
	case <-ctx.Done():
		o.abandon(e)
		// The outcome may have arrived meanwhile; a success is a success.
		select {
		case err := <-e.result:
			return err
		default:
		}
		return fmt.Errorf("%w: not acknowledged before the ctx ended: %w", ErrUnavailable, ctx.Err())
	}
}

func (o *outbox) put(signals []bus.Signal) error {
	o.mu.Lock()
	if o.async+len(signals) > o.limit {
		defer o.mu.Unlock()
		return fmt.Errorf("%w: %d queued, %d more do not fit in %d", ErrOutboxFull, o.async, len(signals), o.limit)
	}
	o.async += len(signals)
	o.mu.Unlock()
	return o.enqueue(&outboxEntry{signals: signals})
}

func (o *outbox) enqueue(e *outboxEntry) error {
	o.mu.Lock()
	err := o.enqueueLocked(e)
	o.mu.Unlock()
	if err == nil {
		nudge(o.wake)
	}
	return err
}

// enqueueLocked appends e to the queue; the caller holds mu and wakes the
// goroutine.
func (o *outbox) enqueueLocked(e *outboxEntry) error {
	select {
	case <-o.stop:
		return fmt.Errorf("%w: the node is closing", bus.ErrClosed)
	default:
	}
	if len(o.entries) == 0 {
		o.empty = make(chan struct{})
	}
	o.entries = append(o.entries, e)
	return nil
}

// abandon drops a synchronous entry whose caller stopped waiting, unless
// it is already in flight.
func (o *outbox) abandon(e *outboxEntry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.taken {
		return
	}
	e.gone = true
	if i := slices.Index(o.entries, e); i >= 0 {
		o.entries = slices.Delete(o.entries, i, i+1)
		o.markEmptyLocked()
	}
}

func (o *outbox) markEmptyLocked() {
	if len(o.entries) == 0 {
		o.entries = nil
		select {
		case <-o.empty:
		default:
			close(o.empty)
		}
	}
}

// depth is the number of signals PublishAsync queued and not yet sent.
func (o *outbox) depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.async
}

func (o *outbox) waitEmpty(ctx context.Context) error {
	o.mu.Lock()
	empty := o.empty
	o.mu.Unlock()
	return waitClosed(ctx, empty)
}

// part is the share of one entry in a batch.
type part struct {
	e     *outboxEntry
	count int
	sent  int // of count, by settle
}

// run sends the head of the queue until it is sent, then the next.
func (o *outbox) run() {
	defer close(o.done)
	wait := 50 * time.Millisecond
	// size is the batch sent at once: pipelined while sends succeed, one
	// signal at a time after a failure, until one succeeds, so that
	// nothing is stored out of order while the cluster comes back.
	size := o.size
	var (
		batch []bus.Signal
		parts []part
	)
	for {
		if !o.waitForBatch(size) {
			return
		}
		batch, parts = o.take(size, batch[:0], parts[:0])
		if len(batch) == 0 {
			continue
		}
		err := o.sendBatch(batch)
		gaveUp := o.settle(parts, err)
		clear(batch)
		if err == nil {
			wait, size = 50*time.Millisecond, o.size
			continue
		}
		if gaveUp {
			continue // a signal that can never be sent, not an unreachable cluster: no wait
		}
		o.n.logger.Debug("outbox: cluster unreachable; will retry", "queued", o.depth(), "error", err, "wait", wait)
		select {
		case <-o.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
		size = 1
	}
}

// waitForBatch waits for something to send, and while the queue holds
// less than size, for up to the linger time. It returns false once stopped.
func (o *outbox) waitForBatch(size int) bool {
	var linger <-chan time.Time
	for {
		o.mu.Lock()
		queued, draining := 0, o.draining
		for _, e := range o.entries {
			queued += len(e.signals)
			if queued >= size {
				break
			}
		}
		o.mu.Unlock()
		switch {
		case queued >= size, queued > 0 && (o.linger <= 0 || draining):
			return true
		case queued > 0 && linger == nil:
			linger = time.After(o.linger)
		}
		select {
		case <-o.stop:
			return false
		case <-o.wake:
		case <-linger:
			return true
		}
	}
}

// take moves up to size signals from the head of the queue into batch.
func (o *outbox) take(size int, batch []bus.Signal, parts []part) ([]bus.Signal, []part) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.entries {
		if len(batch) >= size {
			break
		}
		k := min(len(e.signals), size-len(batch))
		batch = append(batch, e.signals[:k]...)
		parts = append(parts, part{e: e, count: k})
		e.taken = true
	}
	o.sending = len(batch) > 0
	return batch, parts
}

// settle records a batch's outcome. Sent signals leave the queue, and
// their synchronous publishers hear nil. After a failure, what can be
// retried (ErrUnavailable: the cluster is unreachable) stays queued, for
// as long as a synchronous publisher waits and for ever for PublishAsync;
// what cannot (a signal the wire cannot encode, or the stream refuses for
// good) is given up only when it was the one signal left to send (run
// retries one signal at a time after a failure, so such a signal ends up
// failing alone): its synchronous publisher hears the error; of an
// asynchronous publish that signal is dropped and logged, the others sent
// as usual. settle reports whether it gave a signal up.
//
// The parts are the head of the queue, in order: take took them from
// there, and nothing else removes a taken entry (abandon skips them), so
// settling costs the batch, not the queue behind it.
func (o *outbox) settle(parts []part, err error) (gaveUp bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sending = false
	// The first sent signals of the batch went out whatever the outcome:
	// they leave the queue, never to be sent twice.
	sent := sentBefore(err)
	if err == nil {
		sent = math.MaxInt
	}
	unsent := -sent
	for _, p := range parts {
		unsent += p.count
	}
	// A failure for good is the signal's only when it was the one left to
	// send; with more, which one failed is not known: they are retried,
	// one at a time (run), until it fails alone.
	retry := errors.Is(err, ErrUnavailable) || unsent > 1
	failing := -1 // the part holding the first signal not sent, when that failed for good
	for i := range parts {
		parts[i].sent = min(parts[i].count, sent)
		sent -= parts[i].sent
		if failing < 0 && err != nil && !retry && parts[i].sent < parts[i].count {
			failing = i
		}
	}
	gaveUp = failing >= 0
	done := func(i int) bool {
		p := parts[i]
		e := p.e
		e.taken = false
		ok := p.sent
		e.signals = e.signals[ok:]
		if !e.sync {
			o.async -= ok
		}
		switch {
		case ok == p.count:
			if len(e.signals) > 0 {
				return false
			}
			if e.sync {
				e.result <- nil
			}
			return true
		case i == failing && e.sync:
			o.gaveUp(e.signals)
			e.result <- entryError(err, e.handed-len(e.signals))
			return true
		case e.sync && e.ctx.Err() != nil:
			e.result <- entryError(err, e.handed-len(e.signals))
			return true
		case i == failing:
			// The first signal not sent is dropped (run retries one at a
			// time after a failure: the signal that cannot be sent ends
			// up failing alone); the others are sent as usual.
			o.gaveUp(e.signals[:1])
			e.signals = e.signals[1:]
			o.async--
			o.n.logger.Error("outbox: a signal cannot be sent; dropped", "error", err)
			return len(e.signals) == 0
		}
		return false
	}
	// Keep the unfinished entries of the head, in order, at its end, and
	// let the queue start at the first of them.
	head := o.entries[:len(parts)]
	at := len(head)
	for i := len(parts) - 1; i >= 0; i-- {
		if !done(i) {
			at--
			head[at] = parts[i].e
		}
	}
	if at > 0 {
		clear(head[:at])
		o.entries = o.entries[at:]
		o.markEmptyLocked()
	}
	return gaveUp
}

// gaveUp tells the transport of signals settle gives up for good.
func (o *outbox) gaveUp(signals []bus.Signal) {
	if o.giveUp != nil {
		o.giveUp(signals)
	}
}

// sendError is a send that failed after its first sent signals had gone
// out: the outbox does not send those again.
type sendError struct {
	sent int
	err  error
}

func (e *sendError) Error() string {
	return fmt.Sprintf("%v (the first %d signals were sent)", e.err, e.sent)
}

func (e *sendError) Unwrap() error { return e.err }

// partlySent returns err as a send failure after sent signals; err as it
// is when none were.
func partlySent(sent int, err error) error {
	if sent == 0 || err == nil {
		return err
	}
	return &sendError{sent: sent, err: err}
}

// entryError is a failed send's error as one publisher hears it, sent of
// whose signals went out (in this batch or before): the count in a
// sendError is the batch's, which other publishers' signals may share.
func entryError(err error, sent int) error {
	if se, ok := errors.AsType[*sendError](err); ok {
		err = se.err
	}
	return partlySent(sent, err)
}

// sentBefore is how many signals a failed send sent before failing.
func sentBefore(err error) int {
	if se, ok := errors.AsType[*sendError](err); ok {
		return se.sent
	}
	return 0
}

// sendTimeout bounds how long a durable send waits for the stream's
// acknowledgements; a batch not acknowledged by then is retried.
const sendTimeout = 5 * time.Second

// sendBatch sends one batch inside a send span that links the publish
// span of every signal in it.
func (o *outbox) sendBatch(batch []bus.Signal) error {
	ctx := context.Background()
	if o.acked {
		// Only a send that waits for acknowledgements needs a deadline
		// (a core NATS publish never waits): no timer per fast send.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, sendTimeout)
		defer cancel()
	}
	ctx, span := o.tracer.Start(ctx, "send", trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "signalbus"),
			attribute.String("messaging.operation.name", "send"), attribute.String("messaging.operation.type", "send"),
			attribute.Int("messaging.batch.message_count", len(batch)), attribute.String("signalbus.node", o.n.cfg.Name))
		addSignalLinks(span, o.prop, batch)
	}
	err := o.send(ctx, batch)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		o.batchSize.Record(ctx, int64(len(batch)), o.sendAttrs)
	}
	span.End()
	return err
}

// addSignalLinks links span to the producer span of each signal, once per
// distinct producer.
func addSignalLinks(span trace.Span, prop propagation.TextMapPropagator, signals []bus.Signal) {
	var last trace.SpanContext
	for _, s := range signals {
		sc := signalSpanContext(prop, s)
		if !sc.IsValid() || sc.Equal(last) {
			continue
		}
		last = sc
		span.AddLink(trace.Link{SpanContext: sc})
	}
}

// signalSpanContext reads the producer span context from a signal's
// traceparent extension.
func signalSpanContext(prop propagation.TextMapPropagator, s bus.Signal) trace.SpanContext {
	tp, _ := s.Extensions["traceparent"].(string)
	if tp == "" {
		return trace.SpanContext{}
	}
	carrier := propagation.MapCarrier{"traceparent": tp}
	if ts, _ := s.Extensions["tracestate"].(string); ts != "" {
		carrier["tracestate"] = ts
	}
	return trace.SpanContextFromContext(prop.Extract(context.Background(), carrier))
}

// close sends what is queued, within ctx, without lingering, then stops
// the goroutine; what could not be sent is reported in the error.
func (o *outbox) close(ctx context.Context) error {
	o.mu.Lock()
	o.draining = true
	o.mu.Unlock()
	nudge(o.wake)
	err := o.waitEmpty(ctx)
	o.mu.Lock()
	close(o.stop)
	o.mu.Unlock()
	<-o.done
	_ = o.gaugeReg.Unregister()
	o.mu.Lock()
	left := 0
	for _, e := range o.entries {
		left += len(e.signals)
		if e.sync {
			e.result <- fmt.Errorf("%w: the node closed before the signals were sent", ErrUnavailable)
		}
	}
	o.entries = nil
	o.mu.Unlock()
	if left > 0 {
		// err is nil when a direct send queued what it could not send
		// after the queue was seen empty.
		o.n.logger.Error("closing with signals still in the outbox; they were not sent", "count", left)
		if err == nil {
			err = ErrUnavailable
		}
		return fmt.Errorf("outbox: %d signals not sent: %w", left, err)
	}
	return nil
}
