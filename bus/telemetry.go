package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the bus's tracer and meter.
const ScopeName = "github.com/signalbus/signalbus/bus"

// Attribute keys, from the OpenTelemetry messaging and CloudEvents
// conventions, plus the bus's own.
const (
	attrMessagingSystem      = attribute.Key("messaging.system")
	attrOperationName        = attribute.Key("messaging.operation.name")
	attrOperationType        = attribute.Key("messaging.operation.type")
	attrDestinationName      = attribute.Key("messaging.destination.name")
	attrSubscriptionName     = attribute.Key("messaging.destination.subscription.name")
	attrMessageID            = attribute.Key("messaging.message.id")
	attrBatchCount           = attribute.Key("messaging.batch.message_count")
	attrErrorType            = attribute.Key("error.type")
	attrCloudEventID         = attribute.Key("cloudevents.event_id")
	attrCloudEventSource     = attribute.Key("cloudevents.event_source")
	attrCloudEventType       = attribute.Key("cloudevents.event_type")
	attrCloudEventSubject    = attribute.Key("cloudevents.event_subject")
	attrBusName              = attribute.Key("signalbus.bus")
	attrAttempt              = attribute.Key("signalbus.attempt")
	attrReason               = attribute.Key("reason")
	messagingSystem          = "signalbus"
	otherType                = "_OTHER"
	maxTypeAttributeSets     = 1000
	extensionTraceParent     = "traceparent"
	extensionTraceState      = "tracestate"
	dropReasonQueueFull      = "queue_full"
	dropReasonShutdown       = "shutdown"
	deadLetterNoHandlerLabel = "none"
)

// LatencyBuckets are the explicit histogram boundaries, in seconds, of every
// duration the bus records. They resolve from 5 µs to 10 s: in-process
// delivery takes microseconds, and the SDK's default boundaries (0, 5, 10,
// 25 … 10000, shaped for milliseconds) would put all of it in one bucket.
var LatencyBuckets = []float64{
	0.000005, 0.00001, 0.000025, 0.00005,
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// instruments holds the bus's metric instruments, created once per bus.
type instruments struct {
	sent        metric.Int64Counter
	consumed    metric.Int64Counter
	opDuration  metric.Float64Histogram
	procDur     metric.Float64Histogram
	latency     metric.Float64Histogram
	retries     metric.Int64Counter
	deadLetters metric.Int64Counter
	dropped     metric.Int64Counter
	queueDepth  metric.Int64ObservableGauge
}

func newInstruments(m metric.Meter) (*instruments, error) {
	var ins instruments
	var err error
	errs := make([]error, 0, 9)
	ins.sent, err = m.Int64Counter("messaging.client.sent.messages",
		metric.WithUnit("{message}"), metric.WithDescription("Signals accepted by Publish and routed to subscriptions."))
	errs = append(errs, err)
	ins.consumed, err = m.Int64Counter("messaging.client.consumed.messages",
		metric.WithUnit("{message}"), metric.WithDescription("Signals taken from a subscription queue for delivery to its handler."))
	errs = append(errs, err)
	ins.opDuration, err = m.Float64Histogram("messaging.client.operation.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of Publish calls, validation and routing included."),
		metric.WithExplicitBucketBoundaries(LatencyBuckets...))
	errs = append(errs, err)
	ins.procDur, err = m.Float64Histogram("messaging.process.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of one handler run (one attempt)."),
		metric.WithExplicitBucketBoundaries(LatencyBuckets...))
	errs = append(errs, err)
	ins.latency, err = m.Float64Histogram("signalbus.delivery.latency",
		metric.WithUnit("s"), metric.WithDescription("Time from the signal's time attribute to the start of its first handler run."),
		metric.WithExplicitBucketBoundaries(LatencyBuckets...))
	errs = append(errs, err)
	ins.retries, err = m.Int64Counter("signalbus.dispatch.retries",
		metric.WithUnit("{attempt}"), metric.WithDescription("Handler attempts made after a failed one."))
	errs = append(errs, err)
	ins.deadLetters, err = m.Int64Counter("signalbus.deadletter.messages",
		metric.WithUnit("{message}"), metric.WithDescription("Signals whose handler failed every attempt, handed to the dead-letter handler."))
	errs = append(errs, err)
	ins.dropped, err = m.Int64Counter("signalbus.dispatch.dropped",
		metric.WithUnit("{message}"), metric.WithDescription("Signals not delivered to a subscription, by reason."))
	errs = append(errs, err)
	ins.queueDepth, err = m.Int64ObservableGauge("signalbus.subscription.queue.depth",
		metric.WithUnit("{message}"), metric.WithDescription("Signals waiting in a subscription's queue."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bus: create instruments: %w", err)
	}
	return &ins, nil
}

// typeInfo caches what Publish derives from a signal type: span names, the
// attribute set of its metrics and its route, so the hot path builds no
// strings and makes one map lookup per type.
type typeInfo struct {
	typ         string // "" for the shared "_OTHER" entry
	sendName    string
	processName string
	sentOpts    []metric.AddOption
	opOpts      []metric.RecordOption
	// routes caches the subscriptions of this type; nil for the shared
	// "_OTHER" entry, whose types differ.
	routes *atomic.Pointer[routeEntry]
}

type typeInfoCache struct {
	// last is the entry get returned last: a publisher usually publishes
	// one type again and again, and comparing one string is cheaper than
	// hashing it for the map.
	last  atomic.Pointer[typeInfo]
	m     sync.Map // type → *typeInfo
	n     atomic.Int64
	bus   attribute.KeyValue
	other *typeInfo
}

func newTypeInfoCache(busName string) *typeInfoCache {
	c := &typeInfoCache{bus: attrBusName.String(busName)}
	c.other = c.build(otherType)
	return c
}

// lookup returns the cached entry of typ, or nil: unlike get it adds none,
// for callers that see types no signal may ever have.
func (c *typeInfoCache) lookup(typ string) *typeInfo {
	if v, ok := c.m.Load(typ); ok {
		return v.(*typeInfo)
	}
	return nil
}

func (c *typeInfoCache) get(typ string) *typeInfo {
	if last := c.last.Load(); last != nil && last.typ == typ {
		return last
	}
	if v, ok := c.m.Load(typ); ok {
		ti := v.(*typeInfo)
		c.last.Store(ti)
		return ti
	}
	if c.n.Load() >= maxTypeAttributeSets {
		// Metric attributes must stay bounded, and so must this cache; types
		// beyond the limit share the "_OTHER" series, generic span names
		// and no route cache.
		return c.other
	}
	ti := c.build(typ)
	ti.routes = new(atomic.Pointer[routeEntry])
	if v, loaded := c.m.LoadOrStore(typ, ti); loaded {
		return v.(*typeInfo)
	}
	c.n.Add(1)
	return ti
}

func (c *typeInfoCache) build(typ string) *typeInfo {
	set := attribute.NewSet(attrMessagingSystem.String(messagingSystem), c.bus, attrDestinationName.String(typ))
	if typ == otherType {
		return &typeInfo{
			sendName:    "send",
			processName: "process",
			sentOpts:    []metric.AddOption{metric.WithAttributeSet(set)},
			opOpts:      []metric.RecordOption{metric.WithAttributeSet(set)},
		}
	}
	return &typeInfo{
		typ:         typ,
		sendName:    "send " + typ,
		processName: "process " + typ,
		sentOpts:    []metric.AddOption{metric.WithAttributeSet(set)},
		opOpts:      []metric.RecordOption{metric.WithAttributeSet(set)},
	}
}

// defaultTracerProvider is the global tracer provider as it is before any
// SDK is installed: it delegates to nothing, and every span it starts is a
// no-op that still costs two allocations. The bus skips starting spans
// while it would be given that provider (see tracingOn).
var defaultTracerProvider = otel.GetTracerProvider()

// tracingOn reports whether starting a span can record anything. The
// global provider is checked on every call, because the application may
// install its SDK after making the bus, and the global delegates to it
// from then on.
func (b *Bus) tracingOn() bool {
	switch {
	case b.noopTracer:
		return false
	case b.globalTracer:
		return otel.GetTracerProvider() != defaultTracerProvider
	}
	return true
}

// errorType is the bounded error.type value of err.
func errorType(err error) string {
	switch {
	case errors.Is(err, ErrHandlerPanic):
		return "panic"
	case errors.Is(err, ErrHandlerTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrQueueFull):
		return "queue_full"
	case errors.Is(err, ErrInvalidSignal):
		return "invalid_signal"
	case errors.Is(err, ErrClosed):
		return "closed"
	}
	return fmt.Sprintf("%T", innermostTyped(err))
}

// innermostTyped strips the wrappers that say nothing of the failure — the
// Permanent marker and fmt.Errorf's %w wrappers — so that error.type names
// the error that happened, not how it was wrapped.
func innermostTyped(err error) error {
	for {
		var next error
		switch e := err.(type) {
		case *permanentError:
			next = e.err
		default:
			if t := fmt.Sprintf("%T", err); t == "*fmt.wrapError" {
				next = errors.Unwrap(err)
			}
		}
		if next == nil {
			return err
		}
		err = next
	}
}

func recordError(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(attrErrorType.String(errorType(err)))
	span.RecordError(err)
}

// extensionCarrier adapts signal extensions to a propagation carrier.
type extensionCarrier map[string]any

var _ propagation.TextMapCarrier = extensionCarrier(nil)

func (c extensionCarrier) Get(key string) string {
	v, _ := c[key].(string)
	return v
}

func (c extensionCarrier) Set(key string, value string) { c[key] = value }

func (c extensionCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
