package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Bus routes published signals to the subscriptions whose patterns match
// their type. It is safe for concurrent use. The zero value is not usable;
// make one with New and end it with Close.
type Bus struct {
	cfg    config
	logger *slog.Logger
	tracer trace.Tracer
	// globalTracer: the tracer comes from the default global provider;
	// noopTracer: from a provider known to record nothing.
	globalTracer, noopTracer bool
	prop                     propagation.TextMapPropagator
	ins                      *instruments
	types                    *typeInfoCache
	router                   router
	history                  *history
	publish                  PublishFunc // publish middleware chain ending in route; nil without middleware

	gaugeReg       metric.Registration
	unregisterOnce sync.Once

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	groups map[string]*subGroup
	closed atomic.Bool

	// stopCtx is the ctx of every handler run. It is cancelled when Close
	// gives up waiting (its ctx ended) or has finished.
	stopCtx context.Context
	stop    context.CancelFunc
}

// New makes a Bus. Options: WithName, WithTracerProvider, WithMeterProvider,
// WithPropagator, WithMiddleware, WithPublishMiddleware, WithHistory,
// WithLogger, WithMaxDataSize. An invalid option gives an error wrapping
// ErrInvalidOption.
func New(opts ...Option) (*Bus, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	meter := cfg.meterProvider.Meter(ScopeName)
	ins, err := newInstruments(meter)
	if err != nil {
		return nil, err
	}
	b := &Bus{
		cfg:          cfg,
		logger:       cfg.logger.With("bus", cfg.name),
		tracer:       cfg.tracerProvider.Tracer(ScopeName),
		globalTracer: cfg.tracerProvider == defaultTracerProvider,
		prop:         cfg.propagator,
		ins:          ins,
		types:        newTypeInfoCache(cfg.name),
		subs:         make(map[*Subscription]struct{}),
	}
	if _, ok := cfg.tracerProvider.(noop.TracerProvider); ok {
		b.noopTracer = true
	}
	if cfg.history > 0 {
		b.history = newHistory(cfg.history)
	}
	if len(cfg.publishMW) > 0 {
		next := PublishFunc(b.route)
		for i := len(cfg.publishMW) - 1; i >= 0; i-- {
			next = cfg.publishMW[i](next)
		}
		b.publish = next
	}
	b.stopCtx, b.stop = context.WithCancel(context.Background())
	b.gaugeReg, err = meter.RegisterCallback(b.observeQueues, ins.queueDepth)
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("bus: register queue depth callback: %w", err)
	}
	return b, nil
}

// Name returns the bus's name (WithName).
func (b *Bus) Name() string { return b.cfg.name }

// Publish validates the signals, fills what a hand-built signal lacks (ID,
// Time, SpecVersion), and queues each one for every subscription whose
// pattern matches its type, in the order given.
//
// The batch is checked as a whole first: if any signal is invalid, Publish
// returns an error wrapping ErrInvalidSignal that names the signal's index
// and field, and none of the batch is delivered. Once routing starts, a
// subscription with the Block policy makes Publish wait for room until ctx
// ends; one with the Reject policy makes Publish report ErrQueueFull for the
// signals it refused (the others are delivered). After Close, Publish
// returns ErrClosed.
//
// Publish runs inside a "send <type>" producer span, a child of ctx's span;
// its trace context is written into each signal as the traceparent and
// tracestate extensions.
func (b *Bus) Publish(ctx context.Context, signals ...Signal) error {
	if len(signals) == 0 {
		return nil
	}
	if b.closed.Load() {
		return ErrClosed
	}
	if b.publish == nil {
		return b.route(ctx, signals)
	}
	// Middleware may modify the batch: give it the bus's own copy, filled,
	// so the caller's slice is never written to.
	own := make([]Signal, len(signals))
	now := time.Now()
	ids := newIDRange(now, signals)
	for i, s := range signals {
		fill(&s, &ids)
		own[i] = s
	}
	return b.publish(ctx, own)
}

var producerSpanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}

// fill gives s what a hand-built signal may lack: an id from ids, the
// time the ids were reserved for, and the spec version. It also caps the
// data at its length: every subscription shares the slice, and a handler
// that appends to it (as Go code does to a slice it only reads) must get
// a copy, not write into spare capacity that another handler, or the
// publisher, appends into too.
func fill(s *Signal, ids *idRange) {
	s.Data = s.Data[:len(s.Data):len(s.Data)]
	if s.ID == "" {
		s.ID = ids.id()
	}
	if s.Time.IsZero() {
		s.Time = ids.now
	}
	if s.SpecVersion == "" {
		s.SpecVersion = SpecVersion
	}
}

// route is the end of the publish path: validate, trace, queue.
func (b *Bus) route(ctx context.Context, signals []Signal) error {
	if len(signals) == 0 {
		return nil
	}
	start := time.Now() // fills Time: taken even when no metric needs it
	v := validator{maxData: b.cfg.maxDataSize}
	for i := range signals {
		if err := v.check(&signals[i]); err != nil {
			if len(signals) > 1 {
				err = fmt.Errorf("signal %d of %d: %w", i, len(signals), err)
			}
			b.failedPublishSpan(ctx, err)
			return fmt.Errorf("publish: %w", err)
		}
	}

	info := b.types.get(signals[0].Type)
	uniform := true
	for i := 1; i < len(signals); i++ {
		if signals[i].Type != signals[0].Type {
			uniform = false
			break
		}
	}
	spanName := info.sendName
	if !uniform {
		spanName = "send"
	}
	// Without a tracing SDK the producer context is the caller's own, as
	// a no-op tracer would leave it: trace context still propagates.
	producer := trace.SpanContextFromContext(ctx)
	if len(signals) == 1 && !producer.IsValid() {
		if _, ok := signals[0].Extensions[extensionTraceParent]; ok {
			// A signal that arrives carrying trace context (forwarded from
			// another bus or process) continues that trace.
			ctx = b.prop.Extract(ctx, extensionCarrier(signals[0].Extensions))
			producer = trace.SpanContextFromContext(ctx)
		}
	}
	var span trace.Span
	if b.tracingOn() {
		ctx, span = b.tracer.Start(ctx, spanName, producerSpanOpts...)
		if span.IsRecording() {
			b.setSendAttributes(span, signals, uniform)
		}
		producer = trace.SpanContextFromContext(ctx)
	}
	var traceExt map[string]any
	if producer.IsValid() {
		traceExt = make(map[string]any, 2)
		b.prop.Inject(ctx, extensionCarrier(traceExt))
	}
	measure := b.ins.opDuration.Enabled(ctx)

	if b.cfg.transport != nil {
		return b.send(ctx, span, signals, start, info, uniform, traceExt, measure)
	}

	// sent counts the signals routing reached (the metric: a signal that
	// reached some subscriptions before ctx ended was sent); routed those
	// it went past (all but the one it stopped at, if it stopped: a
	// subscription's refusal does not stop it). A signal published alone
	// (the common case) gets a one-envelope run: it does not pay for
	// zeroing maxRun of them.
	p := publishing{signals: signals, info: info, uniform: uniform, producer: producer, traceExt: traceExt,
		ids: newIDRange(start, signals)}
	var sent, routed int
	var errs []error
	if len(signals) == 1 {
		// Built in place: no copy, no write barriers.
		var one [1]envelope
		one[0] = p.envelope(0, info)
		var stopped bool
		sent, stopped, errs = b.enqueueRun(ctx, one[:])
		if routed = sent; stopped {
			routed--
		}
	} else {
		var many [maxRun]envelope
		sent, routed, errs = b.routeRuns(ctx, &p, many[:])
	}
	if uniform {
		b.ins.sent.Add(ctx, int64(sent), info.sentOpts...)
	}
	if measure {
		b.ins.opDuration.Record(ctx, time.Since(start).Seconds(), info.opOpts...)
	}
	var err error
	if len(errs) > 0 {
		err = errors.Join(errs...)
		if routed < len(signals) {
			err = fmt.Errorf("publish: %d of %d signals routed: %w", routed, len(signals), err)
		} else {
			err = fmt.Errorf("publish: %w", err)
		}
	}
	if span != nil {
		if err != nil {
			recordError(span, err)
		}
		span.End()
	}
	return err
}

// withTraceExtensions returns the signal's extensions with the trace
// context added. A signal without extensions of its own shares traceExt
// with the rest of its batch (extensions are read-only once published).
func withTraceExtensions(own, traceExt map[string]any) map[string]any {
	if len(own) == 0 {
		return traceExt
	}
	merged := make(map[string]any, len(own)+len(traceExt))
	for k, v := range own {
		merged[k] = v
	}
	for k, v := range traceExt {
		merged[k] = v
	}
	return merged
}

// send hands a validated batch to the transport instead of routing it:
// the transport brings it back, to this process too, through Dispatch.
func (b *Bus) send(ctx context.Context, span trace.Span, signals []Signal, start time.Time,
	info *typeInfo, uniform bool, traceExt map[string]any, measure bool) error {
	out := make([]Signal, len(signals))
	ids := newIDRange(start, signals)
	for i, s := range signals {
		fill(&s, &ids)
		if traceExt != nil {
			s.Extensions = withTraceExtensions(s.Extensions, traceExt)
		}
		out[i] = s
	}
	err := b.cfg.transport.Send(ctx, out)
	if err == nil {
		if uniform {
			b.ins.sent.Add(ctx, int64(len(out)), info.sentOpts...)
		} else {
			for _, s := range out {
				b.ins.sent.Add(ctx, 1, b.types.get(s.Type).sentOpts...)
			}
		}
	}
	if measure {
		b.ins.opDuration.Record(ctx, time.Since(start).Seconds(), info.opOpts...)
	}
	if err != nil {
		err = fmt.Errorf("publish: %w", err)
	}
	if span != nil {
		if err != nil {
			recordError(span, err)
		}
		span.End()
	}
	return err
}

// Wants reports whether a signal of type typ dispatched now would reach
// anything on this bus: a subscription or group whose pattern matches the
// type, or the history. A transport asks before decoding what it
// received, to let go of what no one here wants without paying for it.
// The answer holds for the moment of the call: a subscription made after
// it receives only later signals, as it would anyway.
func (b *Bus) Wants(typ string) bool {
	if b.history != nil {
		return true
	}
	// A transport asks about whatever subjects it sees, junk included:
	// only types already cached lend their route cache, and none is added,
	// or junk would use up the bounded set of metric series (see
	// typeInfoCache).
	var cached *atomic.Pointer[routeEntry]
	if ti := b.types.lookup(typ); ti != nil {
		cached = ti.routes
	}
	route := b.router.route(cached, typ)
	return len(route.subs) > 0 || len(route.groups) > 0
}

// Dispatch queues signals that a Transport received, published elsewhere
// (or by this bus, through its transport), for this bus's subscriptions.
// It is the receiving half of a transport: no publish middleware runs, no
// send span is started, and the producer's trace context is read from
// each signal's traceparent and tracestate extensions, so the process
// spans join the publisher's trace. Each signal is validated (errors wrap
// ErrInvalidSignal and name the signal's index); a full Block queue makes
// Dispatch wait until ctx ends. After Close it returns ErrClosed.
func (b *Bus) Dispatch(ctx context.Context, signals ...Signal) error {
	if b.closed.Load() {
		return ErrClosed
	}
	v := validator{maxData: b.cfg.maxDataSize}
	for i := range signals {
		if err := v.check(&signals[i]); err != nil {
			return fmt.Errorf("dispatch: signal %d of %d: %w", i, len(signals), err)
		}
	}
	now := time.Now()
	var errs []error
	if len(signals) == 1 {
		var one [1]envelope
		one[0] = b.received(signals[0], now)
		_, _, errs = b.enqueueRun(ctx, one[:])
	} else {
		var many [maxRun]envelope
		errs = b.dispatchRuns(ctx, signals, now, many[:])
	}
	if len(errs) > 0 {
		return fmt.Errorf("dispatch: %w", errors.Join(errs...))
	}
	return nil
}

// received makes the envelope of a signal that came from a transport:
// filled, with its producer's span context read from its extensions.
func (b *Bus) received(s Signal, now time.Time) envelope {
	e := envelope{sig: s, info: b.types.get(s.Type)}
	ids := idRange{now: now} // a transport's signals have ids: none is reserved
	fill(&e.sig, &ids)
	if _, ok := s.Extensions[extensionTraceParent]; ok {
		e.producer = trace.SpanContextFromContext(
			b.prop.Extract(context.Background(), extensionCarrier(s.Extensions)))
	}
	return e
}

// offer queues e for route's subscriptions and for one member of each of
// route's groups.
func (b *Bus) offer(ctx context.Context, route *routeEntry, e *envelope) error {
	var errs []error
	// failed records a subscription's or group's error and tells whether
	// routing must stop: the bus closed, or ctx ended.
	failed := func(err error) bool {
		if errors.Is(err, ErrClosed) {
			errs = []error{err}
			return true
		}
		errs = append(errs, err)
		return ctx.Err() != nil
	}
	for _, s := range route.subs {
		// A subscription closed while the signal was being routed takes
		// nothing: it had unsubscribed, so the signal was not for it.
		if _, err := s.offer(ctx, e); err != nil && failed(err) {
			return errors.Join(errs...)
		}
	}
	for _, members := range route.groups {
		if err := b.offerToGroup(ctx, members, e); err != nil && failed(err) {
			return errors.Join(errs...)
		}
	}
	return errors.Join(errs...)
}

// maxRun is how many envelopes of one type route and Dispatch queue at
// once: each subscription then takes them under one lock. They are built
// on the stack, so the run is short.
const maxRun = 16

// publishing is what route knows of a batch it queues.
type publishing struct {
	signals  []Signal
	info     *typeInfo // of signals[0]
	uniform  bool      // all of signals[0]'s type
	producer trace.SpanContext
	traceExt map[string]any
	ids      idRange
}

// envelope makes the envelope of signal i, filled, with the batch's
// trace context.
func (p *publishing) envelope(i int, info *typeInfo) envelope {
	var e envelope
	p.fillEnvelope(&e, i, info)
	return e
}

// fillEnvelope is envelope writing into e, which saves a copy of the
// envelope per signal of a run.
func (p *publishing) fillEnvelope(e *envelope, i int, info *typeInfo) {
	e.sig, e.producer, e.info = p.signals[i], p.producer, info
	fill(&e.sig, &p.ids)
	if p.traceExt != nil {
		e.sig.Extensions = withTraceExtensions(e.sig.Extensions, p.traceExt)
	}
}

// routeRuns queues p's signals in runs of one type built in space. It
// returns how many signals routing reached, how many of those it did not
// stop at (all, or all but the last), and the errors; it stops where
// routing stopped.
func (b *Bus) routeRuns(ctx context.Context, p *publishing, space []envelope) (sent, routed int, errs []error) {
	for from := 0; from < len(p.signals); {
		info := p.info
		if !p.uniform {
			info = b.types.get(p.signals[from].Type)
		}
		n := 0
		for ; n < len(space) && from+n < len(p.signals); n++ {
			if n > 0 && !p.uniform && p.signals[from+n].Type != p.signals[from].Type {
				break
			}
			p.fillEnvelope(&space[n], from+n, info)
		}
		reached, stopped, runErrs := b.enqueueRun(ctx, space[:n])
		clear(space[:n])
		sent += reached
		routed += reached
		errs = append(errs, runErrs...)
		if !p.uniform {
			b.ins.sent.Add(ctx, int64(reached), info.sentOpts...)
		}
		if stopped {
			routed-- // the signal routing stopped at
			break
		}
		from += n
	}
	return sent, routed, errs
}

// dispatchRuns is routeRuns for Dispatch: runs of one type built in
// space from signals a transport received.
func (b *Bus) dispatchRuns(ctx context.Context, signals []Signal, now time.Time, space []envelope) []error {
	var errs []error
	for from := 0; from < len(signals); {
		n := 0
		for ; n < len(space) && from+n < len(signals); n++ {
			if n > 0 && signals[from+n].Type != signals[from].Type {
				break
			}
			space[n] = b.received(signals[from+n], now)
		}
		_, stopped, runErrs := b.enqueueRun(ctx, space[:n])
		clear(space[:n])
		errs = append(errs, runErrs...)
		if stopped {
			break
		}
		from += n
	}
	return errs
}

// enqueueRun records a run of envelopes of one type in the history and
// queues each, in order, for every subscription the type routes to and
// for one member of each group, with the outcome of doing so one signal
// after another. When every subscription has room for the whole run (and
// there is no group), the run goes to all of them at once, with one route
// lookup, under their locks held together (see pushRunToAll); otherwise
// one signal at a time, the route looked up for each, so the overflow
// policies wait, drop or refuse per signal, and routing that stops (ctx
// ended, bus closed) stops at one signal for every subscription. It
// reports how many envelopes routing reached, whether it stopped at the
// last of them, and their errors.
func (b *Bus) enqueueRun(ctx context.Context, envs []envelope) (reached int, stopped bool, errs []error) {
	if len(envs) == 0 {
		return 0, false, nil
	}
	route := b.router.route(envs[0].info.routes, envs[0].sig.Type)
	if pushRunToAll(route.runQueues, envs, b.history) {
		return len(envs), false, nil
	}
	for i := range envs {
		if i > 0 {
			// Looked up again (a cache hit, mostly): the previous signal
			// may have waited for room while subscriptions came or went,
			// and those must count for this one as they would alone.
			route = b.router.route(envs[i].info.routes, envs[i].sig.Type)
		}
		if b.history != nil {
			b.history.add(envs[i].sig)
		}
		reached++
		if err := b.offer(ctx, route, &envs[i]); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return reached, true, errs
			}
		}
	}
	return reached, false, errs
}

func (b *Bus) setSendAttributes(span trace.Span, signals []Signal, uniform bool) {
	span.SetAttributes(
		attrMessagingSystem.String(messagingSystem),
		attrOperationName.String("send"),
		attrOperationType.String("send"),
		attrBusName.String(b.cfg.name),
	)
	if uniform {
		span.SetAttributes(attrDestinationName.String(signals[0].Type))
	}
	if len(signals) > 1 {
		span.SetAttributes(attrBatchCount.Int(len(signals)))
		return
	}
	s := signals[0]
	attrs := []attribute.KeyValue{
		attrCloudEventSource.String(s.Source),
		attrCloudEventType.String(s.Type),
	}
	if s.ID != "" {
		attrs = append(attrs, attrMessageID.String(s.ID), attrCloudEventID.String(s.ID))
	}
	if s.Subject != "" {
		attrs = append(attrs, attrCloudEventSubject.String(s.Subject))
	}
	span.SetAttributes(attrs...)
}

func (b *Bus) failedPublishSpan(ctx context.Context, err error) {
	if !b.tracingOn() {
		return
	}
	_, span := b.tracer.Start(ctx, "send", trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(attrMessagingSystem.String(messagingSystem),
			attrOperationName.String("send"), attrOperationType.String("send"),
			attrBusName.String(b.cfg.name))
	}
	recordError(span, err)
	span.End()
}

// Subscribe registers h for every signal whose type matches pattern (see
// ValidatePattern for the grammar). The subscription gets its own queue and
// worker; options: WithQueueSize, WithRetry, WithDeadLetter,
// WithSubscriptionName, WithOverflow. Errors wrap ErrInvalidPattern,
// ErrInvalidOption or ErrClosed.
func (b *Bus) Subscribe(pattern string, h Handler, opts ...SubscribeOption) (*Subscription, error) {
	if h == nil {
		return nil, fmt.Errorf("subscribe %q: %w: nil handler", pattern, ErrInvalidOption)
	}
	segs, err := parsePattern(pattern)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	cfg := subConfig{name: pattern, queueSize: DefaultQueueSize, retry: DefaultRetryPolicy, overflow: Block}
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("subscribe %q: %w", pattern, err)
		}
	}
	for i := len(b.cfg.middleware) - 1; i >= 0; i-- {
		h = b.cfg.middleware[i](h)
	}
	base := []attribute.KeyValue{
		attrMessagingSystem.String(messagingSystem),
		attrBusName.String(b.cfg.name),
		attrSubscriptionName.String(cfg.name),
	}
	set := attribute.NewSet(base...)
	s := &Subscription{
		bus:          b,
		pattern:      pattern,
		segments:     segs,
		cfg:          cfg,
		handler:      h,
		queue:        newQueue(cfg.queueSize),
		consumedOpts: []metric.AddOption{metric.WithAttributeSet(set)},
		metrics: recorder{
			ins:          b.ins,
			recordOpts:   []metric.RecordOption{metric.WithAttributeSet(set)},
			consumedOpts: []metric.AddOption{metric.WithAttributeSet(set)},
		},
		attrs: append(base,
			attrOperationName.String("process"),
			attrOperationType.String("process")),
		done: make(chan struct{}),
	}
	s.baseCtx = context.WithValue(b.stopCtx, deliveryKey{},
		&subscriptionDelivery{name: cfg.name, maxAttempts: cfg.retry.MaxAttempts})
	if b.closed.Load() {
		return nil, fmt.Errorf("subscribe %q: %w", pattern, ErrClosed)
	}
	if st, ok := b.cfg.transport.(SubscriptionTransport); ok {
		info := SubscriptionInfo{Pattern: pattern, Name: cfg.name, Named: cfg.named, Group: cfg.group}
		detach, err := st.Attach(info, s.feed)
		if err != nil {
			return nil, fmt.Errorf("subscribe %q: %w", pattern, err)
		}
		s.detach = detach
	}
	go s.run()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		err := s.detachFeed(context.Background())
		s.queue.close()
		<-s.done
		return nil, errors.Join(fmt.Errorf("subscribe %q: %w", pattern, ErrClosed), err)
	}
	b.subs[s] = struct{}{}
	if s.detach == nil {
		if cfg.group != "" {
			s.group = b.joinGroup(cfg.group)
		}
		b.router.add(segs, s)
	}
	b.mu.Unlock()
	return s, nil
}

func (b *Bus) unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	if s.detach == nil {
		b.router.remove(s.segments, s)
		if s.group != nil {
			b.leaveGroup(s.group)
		}
	}
}

func (b *Bus) observeQueues(_ context.Context, o metric.Observer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		o.ObserveInt64(b.ins.queueDepth, int64(s.queue.depth()), metric.WithAttributes(
			attrMessagingSystem.String(messagingSystem), attrBusName.String(b.cfg.name),
			attrSubscriptionName.String(s.cfg.name)))
	}
	return nil
}

// Close stops the bus the way http.Server.Shutdown stops a server: Publish
// and Subscribe return ErrClosed from now on, every subscription's queue is
// drained (retries included), and Close returns nil once every handler has
// finished. If ctx ends first, Close cancels the handlers' ctx, abandons
// what is still queued (counted as dropped, reason "shutdown", and logged)
// and returns ctx.Err() at once, without waiting for the handlers still
// running: each worker ends when its handler returns (Subscription.Done
// tells when). Close may be called more than once.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closed.Store(true)
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	// Fed subscriptions first stop being fed, so that what their
	// transport hands over in the meantime is still drained.
	var detachErrs []error
	for _, s := range subs {
		if err := s.detachFeed(ctx); err != nil {
			detachErrs = append(detachErrs, err)
		}
	}
	for _, s := range subs {
		s.queue.close()
	}
	for _, s := range subs {
		select {
		case <-s.done:
		case <-ctx.Done():
			b.release()
			return errors.Join(append(detachErrs, fmt.Errorf("bus close: %w", ctx.Err()))...)
		}
	}
	return errors.Join(append(detachErrs, b.release())...)
}

// release cancels the handlers' ctx and unregisters the metrics callback.
func (b *Bus) release() error {
	b.stop()
	var err error
	b.unregisterOnce.Do(func() {
		if uerr := b.gaugeReg.Unregister(); uerr != nil {
			err = fmt.Errorf("bus close: unregister metrics callback: %w", uerr)
		}
	})
	return err
}
