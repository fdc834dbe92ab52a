package bus

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Subscription is a pattern bound to a handler, with its own bounded queue
// and its own worker goroutine: a slow handler delays only its own
// subscription.
type Subscription struct {
	bus      *Bus
	pattern  string
	segments []patternSegment
	cfg      subConfig
	handler  Handler // with the bus's dispatch middleware applied
	queue    *queue
	group    *subGroup // WithGroup on a bus that routes the group itself
	detach   Detach    // set when a SubscriptionTransport feeds s

	// baseCtx is the ctx of every handler run: the bus's stop ctx carrying
	// the subscription's Delivery details.
	baseCtx context.Context

	consumedOpts []metric.AddOption
	metrics      recorder             // per-signal measurements, recorded off the delivery path
	attrs        []attribute.KeyValue // span attributes common to every run

	closeOnce sync.Once
	done      chan struct{}
	// dropLog limits "dropped" log lines to one per second per subscription.
	dropLog rateLimiter
}

// Pattern returns the pattern the subscription was made with.
func (s *Subscription) Pattern() string { return s.pattern }

// Name returns the subscription's name (its pattern unless named).
func (s *Subscription) Name() string { return s.cfg.name }

// Done is closed once the subscription's worker has finished: after Close,
// or after the bus closed, once its queue is drained and the measurements
// of its deliveries are recorded.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Close unsubscribes: no further signal is routed to the subscription. The
// signals already in its queue are still handled; Close returns once they
// are (or, if the bus is being closed, when the bus gives up). Close is
// idempotent and safe to call from any goroutine except the subscription's
// own handler, which would wait for itself.
func (s *Subscription) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.bus.unsubscribe(s)
		err = s.detachFeed(context.Background())
		s.queue.close()
	})
	<-s.done
	return err
}

// detachFeed stops the transport feeding s, if it does.
func (s *Subscription) detachFeed(ctx context.Context) error {
	if s.detach == nil {
		return nil
	}
	if err := s.detach(ctx); err != nil {
		return fmt.Errorf("subscription %q: detach from transport: %w", s.cfg.name, err)
	}
	return nil
}

// offer queues e under the subscription's overflow policy. It returns
// false when the subscription had closed (nothing queued; an error only if
// the bus closed), and an error wrapping ErrQueueFull when the policy
// refused e or ctx ended while Block waited.
func (s *Subscription) offer(ctx context.Context, e *envelope) (bool, error) {
	res, dropped, err := s.queue.push(ctx, e, s.cfg.overflow)
	switch res {
	case pushedDropped:
		s.countDropped(1, dropReasonQueueFull)
		s.logDropped(slog.LevelWarn, "subscription queue full; dropped its oldest signal",
			"subscription", s.cfg.name, "policy", DropOldest.String())
		dropped.finish(fmt.Errorf("%w: dropped as the oldest (policy %s)", ErrQueueFull, DropOldest))
	case pushFull:
		if err == nil {
			s.countDropped(1, dropReasonQueueFull)
			err = ErrQueueFull
		}
		return false, fmt.Errorf("signal %s to subscription %q: %w", e.sig.ID, s.cfg.name, err)
	case pushClosed:
		if s.bus.closed.Load() {
			return false, fmt.Errorf("signal %s: %w", e.sig.ID, ErrClosed)
		}
		return false, nil
	}
	return true, nil
}

// feed is the Feed a SubscriptionTransport delivers to s through.
func (s *Subscription) feed(ctx context.Context, sig Signal, done func(error)) error {
	b := s.bus
	if b.closed.Load() {
		return fmt.Errorf("feed subscription %q: %w", s.cfg.name, ErrClosed)
	}
	v := validator{maxData: b.cfg.maxDataSize}
	if err := v.check(&sig); err != nil {
		return fmt.Errorf("feed subscription %q: %w", s.cfg.name, err)
	}
	e := b.received(sig, time.Now())
	e.done = done
	taken, err := s.offer(ctx, &e)
	if err != nil {
		return fmt.Errorf("feed: %w", err)
	}
	if !taken {
		return fmt.Errorf("feed subscription %q: signal %s: %w", s.cfg.name, sig.ID, ErrClosed)
	}
	return nil
}

// deadLetterKey carries DeadLetter details to the dead-letter handler.
type deadLetterKey struct{}

// deliveryKey carries a *subscriptionDelivery; attemptKey the attempt
// number when it is above 1 (first attempts, the common case, allocate
// nothing).
type (
	deliveryKey struct{}
	attemptKey  struct{}
)

type subscriptionDelivery struct {
	name        string
	maxAttempts int
}

// Delivery describes the handler run a ctx was given to.
type Delivery struct {
	Subscription string // the subscription's name
	Attempt      int    // 1 for the first run, 2 for the first retry, …
	MaxAttempts  int    // the subscription's RetryPolicy.MaxAttempts
}

// Final reports whether a failure of this run would end the retries.
func (d Delivery) Final() bool { return d.Attempt >= d.MaxAttempts }

// DeliveryFromContext returns the subscription and attempt of the handler
// run that ctx was given to, for handlers and middleware that log or
// decide by them.
func DeliveryFromContext(ctx context.Context) (Delivery, bool) {
	sd, ok := ctx.Value(deliveryKey{}).(*subscriptionDelivery)
	if !ok {
		return Delivery{}, false
	}
	d := Delivery{Subscription: sd.name, Attempt: 1, MaxAttempts: sd.maxAttempts}
	if a, ok := ctx.Value(attemptKey{}).(int); ok {
		d.Attempt = a
	}
	return d, true
}

// DeadLetter describes why a signal reached a dead-letter handler.
type DeadLetter struct {
	Subscription string // name of the subscription whose handler failed
	Attempts     int    // handler runs made
	Err          error  // the last run's error
}

// DeadLetterFromContext returns the details of the failure that sent the
// signal to the dead-letter handler running with ctx.
func DeadLetterFromContext(ctx context.Context) (DeadLetter, bool) {
	dl, ok := ctx.Value(deadLetterKey{}).(DeadLetter)
	return dl, ok
}

// ProfileLabel is the pprof label naming the subscription whose worker
// goroutine a profile sample comes from: a CPU profile then tells the
// handlers apart. Handler ctxs carry it too, so goroutines a handler
// starts and spans' profile labels keep it.
const ProfileLabel = "subscription"

// run is the subscription's worker: it takes queued signals in order and
// delivers each before the next, retries included, which is what keeps
// per-publisher FIFO through retries.
func (s *Subscription) run() {
	// Labelled once per worker, not per signal. baseCtx is read only by
	// this goroutine from here on.
	s.baseCtx = pprof.WithLabels(s.baseCtx, pprof.Labels(ProfileLabel, s.cfg.name))
	pprof.SetGoroutineLabels(s.baseCtx)
	var w worker
	defer func() {
		w.submit(s)
		s.metrics.stop()
		close(s.done)
	}()
	var batch []envelope
	for {
		var ok bool
		batch, ok = s.queue.take(batch[:0])
		if !ok {
			return
		}
		w.begin(s)
		for i := range batch {
			if s.bus.stopCtx.Err() != nil {
				s.abandon(batch[i:])
				return
			}
			batch[i].finish(s.deliver(&w, &batch[i]))
			batch[i] = envelope{}
			if w.m != nil {
				w.m.consumed++
				if w.now.Sub(w.since) >= maxMeasurementHold {
					w.handOver(s)
				}
			}
		}
		w.parent, w.parentCtx = trace.SpanContext{}, nil
		w.submit(s)
	}
}

// worker is the state one subscription's worker keeps across the signals
// of a batch, to spare the hot path clock reads and allocations.
type worker struct {
	// m gathers the batch's measurements for the recorder; nil when no
	// metric of the batch is enabled.
	m       *measurements
	since   time.Time // when m was taken
	tracing bool      // spans can record
	now     time.Time // end of the previous handler run, the start of the next
	// parentCtx holds the producer's span context for the current run of
	// signals from one Publish call, which share it.
	parent    trace.SpanContext
	parentCtx context.Context
}

func (w *worker) begin(s *Subscription) {
	b := s.bus
	w.tracing = b.tracingOn()
	if b.ins.procDur.Enabled(b.stopCtx) || b.ins.latency.Enabled(b.stopCtx) || b.ins.consumed.Enabled(b.stopCtx) {
		w.now = time.Now()
		w.measure(s)
	}
}

// maxMeasurementHold bounds how long a worker keeps measurements before
// handing them over, so that slow handlers or retry waits in a long batch
// do not hold its metrics back. It is checked between handler runs and
// before a retry wait: a run in progress adds its own duration.
const maxMeasurementHold = 100 * time.Millisecond

// measure takes an empty buffer of measurements.
func (w *worker) measure(s *Subscription) {
	w.m = s.metrics.buffer()
	w.since = w.now
}

// handOver submits the measurements so far, in the middle of a batch,
// and goes on with an empty buffer.
func (w *worker) handOver(s *Subscription) {
	w.submit(s)
	w.measure(s)
}

// submit hands the batch's measurements to the recorder.
func (w *worker) submit(s *Subscription) {
	if w.m != nil {
		s.metrics.submit(w.m)
		w.m = nil
	}
}

// handlerCtx returns the ctx for a handler run of a signal produced under
// producer: the subscription's base ctx carrying the producer span context.
func (w *worker) handlerCtx(base context.Context, producer trace.SpanContext) context.Context {
	if !producer.IsValid() {
		return base
	}
	if w.parentCtx == nil || !producer.Equal(w.parent) {
		w.parent = producer
		w.parentCtx = trace.ContextWithSpanContext(base, producer)
	}
	return w.parentCtx
}

// abandon counts and logs signals given up when Close's deadline passed.
func (s *Subscription) abandon(inHand []envelope) {
	for i := range inHand {
		inHand[i].finish(errShutdown)
	}
	n := len(inHand) + s.queue.discard(errShutdown)
	if n == 0 {
		return
	}
	s.countDropped(n, dropReasonShutdown)
	s.bus.logger.Error("bus closed before the subscription drained; signals not delivered",
		"subscription", s.cfg.name, "count", n)
}

// errShutdown tells a feeder that the bus closed before the signal was
// handled.
var errShutdown = fmt.Errorf("%w before the signal was handled", ErrClosed)

// deliver runs the handler for e until it succeeds or the retries are
// spent. It returns nil once the signal is done with (handled, or given to
// the dead-letter handler) and errShutdown when Close gave up on it.
func (s *Subscription) deliver(w *worker, e *envelope) error {
	b := s.bus
	if w.m != nil && !e.sig.Time.IsZero() {
		w.m.latency = append(w.m.latency, w.now.Sub(e.sig.Time).Seconds())
	}
	var bo *backoff.ExponentialBackOff
	policy := s.cfg.retry
	for attempt := 1; ; attempt++ {
		err := s.attempt(w, e, attempt)
		if err == nil {
			return nil
		}
		if b.stopCtx.Err() != nil {
			// Close gave up waiting: no more attempts, and the dead-letter
			// handler would only see a cancelled ctx.
			s.dropInRetry(e, attempt, err)
			return errShutdown
		}
		if attempt >= policy.MaxAttempts || IsPermanent(err) {
			s.deadLetter(e, attempt, err)
			return nil
		}
		if bo == nil {
			bo = &backoff.ExponentialBackOff{
				InitialInterval:     policy.InitialBackoff,
				RandomizationFactor: policy.Jitter,
				Multiplier:          policy.Multiplier,
				MaxInterval:         policy.MaxBackoff,
			}
			bo.Reset()
		}
		wait := bo.NextBackOff()
		if w.m != nil && (wait >= maxMeasurementHold || w.now.Sub(w.since) >= maxMeasurementHold) {
			w.handOver(s)
		}
		b.ins.retries.Add(context.Background(), 1, s.consumedOpts...)
		b.logger.Debug("handler failed; retrying", "subscription", s.cfg.name, "signal_id", e.sig.ID,
			"type", e.sig.Type, "attempt", attempt, "wait", wait, "error", err)
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-b.stopCtx.Done():
				t.Stop()
			}
		}
		if b.stopCtx.Err() != nil {
			// Close gave up during the wait: do not run the handler again
			// with a cancelled ctx.
			s.dropInRetry(e, attempt, err)
			return errShutdown
		}
		if w.m != nil {
			w.now = time.Now()
		}
	}
}

// dropInRetry counts and logs a signal given up between attempts because
// Close's deadline passed.
func (s *Subscription) dropInRetry(e *envelope, attempts int, lastErr error) {
	s.countDropped(1, dropReasonShutdown)
	s.bus.logger.Error("bus closed during retries; signal not delivered", "subscription", s.cfg.name,
		"signal_id", e.sig.ID, "type", e.sig.Type, "attempts", attempts, "error", lastErr)
}

var consumerSpanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

// attempt runs the handler once inside a process span, recovering a panic.
func (s *Subscription) attempt(w *worker, e *envelope, attempt int) (err error) {
	b := s.bus
	ctx := w.handlerCtx(s.baseCtx, e.producer)
	if attempt > 1 {
		ctx = context.WithValue(ctx, attemptKey{}, attempt)
	}
	var span trace.Span
	if w.tracing {
		ctx, span = b.tracer.Start(ctx, e.info.processName, consumerSpanOpts...)
		if span.IsRecording() {
			s.setProcessAttributes(span, e, attempt)
		}
	}
	err = callHandler(ctx, s.handler, e.sig)
	if w.m != nil {
		start := w.now
		w.now = time.Now()
		w.m.process = append(w.m.process, w.now.Sub(start).Seconds())
	}
	if err != nil {
		if span != nil {
			recordError(span, err)
		}
		if perr, ok := panicOf(err); ok {
			b.logger.Error("handler panicked", "subscription", s.cfg.name, "signal_id", e.sig.ID,
				"type", e.sig.Type, "attempt", attempt, "panic", perr.value, "stack", string(perr.stack))
		}
	}
	if span != nil {
		span.End()
	}
	return err
}

func (s *Subscription) setProcessAttributes(span trace.Span, e *envelope, attempt int) {
	span.SetAttributes(s.attrs...)
	span.SetAttributes(
		attrDestinationName.String(e.sig.Type),
		attrMessageID.String(e.sig.ID),
		attrCloudEventID.String(e.sig.ID),
		attrCloudEventSource.String(e.sig.Source),
		attrCloudEventType.String(e.sig.Type),
		attrAttempt.Int(attempt),
	)
	if e.sig.Subject != "" {
		span.SetAttributes(attrCloudEventSubject.String(e.sig.Subject))
	}
}

// panicError is the error a recovered panic becomes.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("%v: %v", ErrHandlerPanic, p.value) }
func (p *panicError) Unwrap() error { return ErrHandlerPanic }

func panicOf(err error) (*panicError, bool) {
	p, ok := err.(*panicError)
	return p, ok
}

// callHandler calls h, turning a panic into a *panicError that wraps
// ErrHandlerPanic and keeps the stack.
func callHandler(ctx context.Context, h Handler, sig Signal) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return h.Handle(ctx, sig)
}

func (s *Subscription) deadLetter(e *envelope, attempts int, lastErr error) {
	b := s.bus
	b.ins.deadLetters.Add(context.Background(), 1, s.consumedOpts...)
	if s.cfg.deadLetter == nil {
		b.logger.Error("handler failed; signal dead-lettered (no dead-letter handler)",
			"subscription", s.cfg.name, "signal_id", e.sig.ID, "type", e.sig.Type,
			"attempts", attempts, "error", lastErr)
		return
	}
	dl := DeadLetter{Subscription: s.cfg.name, Attempts: attempts, Err: lastErr}
	ctx := context.WithValue(s.baseCtx, deadLetterKey{}, dl)
	if e.producer.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, e.producer)
	}
	if err := callHandler(ctx, s.cfg.deadLetter, e.sig); err != nil {
		b.logger.Error("dead-letter handler failed; signal not delivered",
			"subscription", s.cfg.name, "signal_id", e.sig.ID, "type", e.sig.Type,
			"attempts", attempts, "error", lastErr, "dead_letter_error", err)
		return
	}
	b.logger.Warn("handler failed; signal dead-lettered", "subscription", s.cfg.name,
		"signal_id", e.sig.ID, "type", e.sig.Type, "attempts", attempts, "error", lastErr)
}

func (s *Subscription) countDropped(n int, reason string) {
	s.bus.ins.dropped.Add(context.Background(), int64(n), metric.WithAttributes(
		attrMessagingSystem.String(messagingSystem), attrBusName.String(s.bus.cfg.name),
		attrSubscriptionName.String(s.cfg.name), attrReason.String(reason)))
}

// rateLimiter lets one event through per interval.
type rateLimiter struct {
	mu   sync.Mutex
	last time.Time
}

func (r *rateLimiter) allow(every time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.last) < every {
		return false
	}
	r.last = now
	return true
}

func (s *Subscription) logDropped(level slog.Level, msg string, args ...any) {
	if s.dropLog.allow(time.Second) {
		s.bus.logger.Log(context.Background(), level, msg, args...)
	}
}
