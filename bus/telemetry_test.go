package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
)

// telemetry wires a bus to an in-memory span recorder and a manual metric
// reader: the SDK only in tests, never the globals.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	opts   []bus.Option
}

func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		_ = tel.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tel.opts = []bus.Option{bus.WithTracerProvider(tel.tp), bus.WithMeterProvider(mp), bus.WithName("tel")}
	return tel
}

func (tel *telemetry) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func (tel *telemetry) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != bus.ScopeName {
			t.Errorf("instrumentation scope %q, want %q", sm.Scope.Name, bus.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func attrsOf(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

func wantAttrs(t *testing.T, what string, got []attribute.KeyValue, want map[string]string) {
	t.Helper()
	have := attrsOf(got)
	for k, v := range want {
		if have[k] != v {
			t.Errorf("%s: attribute %s = %q, want %q", what, k, have[k], v)
		}
	}
}

func TestSpansFollowTheMessagingConventions(t *testing.T) {
	tel := newTelemetry(t)
	b := newBus(t, tel.opts...)
	var r recorder
	sub := mustSubscribe(t, b, "order.*", &r, bus.WithSubscriptionName("billing"))

	ctx, caller := tel.tp.Tracer("test").Start(context.Background(), "caller")
	sig := mustSignal(t, "order.created", nil, bus.WithSubject("o-1"))
	if err := b.Publish(ctx, sig); err != nil {
		t.Fatal(err)
	}
	caller.End()
	_ = sub.Close()

	sends := tel.ended("send order.created")
	procs := tel.ended("process order.created")
	if len(sends) != 1 || len(procs) != 1 {
		t.Fatalf("got %d send and %d process spans, want 1 each; all: %v", len(sends), len(procs), spanNames(tel.spans.Ended()))
	}
	send, proc := sends[0], procs[0]
	if send.SpanKind() != trace.SpanKindProducer || proc.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kinds: send %v, process %v; want producer, consumer", send.SpanKind(), proc.SpanKind())
	}
	if send.Parent().SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("send span's parent is %v, want the caller's span", send.Parent().SpanID())
	}
	if proc.Parent().SpanID() != send.SpanContext().SpanID() || proc.SpanContext().TraceID() != caller.SpanContext().TraceID() {
		t.Errorf("process span is not a child of the send span in the caller's trace")
	}
	wantAttrs(t, "send", send.Attributes(), map[string]string{
		"messaging.system": "signalbus", "messaging.operation.name": "send", "messaging.operation.type": "send",
		"messaging.destination.name": "order.created", "messaging.message.id": sig.ID,
		"cloudevents.event_id": sig.ID, "cloudevents.event_source": "/test", "cloudevents.event_type": "order.created",
		"cloudevents.event_subject": "o-1",
	})
	wantAttrs(t, "process", proc.Attributes(), map[string]string{
		"messaging.system": "signalbus", "messaging.operation.name": "process", "messaging.operation.type": "process",
		"messaging.destination.name": "order.created", "messaging.destination.subscription.name": "billing",
		"messaging.message.id": sig.ID, "cloudevents.event_id": sig.ID, "cloudevents.event_type": "order.created",
		"signalbus.attempt": "1",
	})
	// The producer context travels in the signal, so it survives a hop.
	got := r.signals[0].Extensions["traceparent"]
	want := "00-" + send.SpanContext().TraceID().String() + "-" + send.SpanContext().SpanID().String() + "-01"
	if got != want {
		t.Errorf("traceparent extension = %v, want %s", got, want)
	}
}

func TestBatchSpanAndFailures(t *testing.T) {
	tel := newTelemetry(t)
	b := newBus(t, tel.opts...)
	sub := mustSubscribe(t, b, "job.*", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		switch s.Type {
		case "job.fail":
			return errors.New("nope")
		case "job.permanent":
			return bus.Permanent(fmt.Errorf("decode: %w", &json.SyntaxError{}))
		case "job.panic":
			panic("oops")
		}
		return nil
	}), bus.WithRetry(bus.NoRetry))
	batch := []bus.Signal{mustSignal(t, "job.ok", nil), mustSignal(t, "job.ok", nil), mustSignal(t, "job.ok", nil)}
	if err := b.Publish(context.Background(), batch...); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), mustSignal(t, "job.fail", nil), mustSignal(t, "job.panic", nil), mustSignal(t, "job.permanent", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()

	uniform := tel.ended("send job.ok")
	if len(uniform) != 1 {
		t.Fatalf("got %d 'send job.ok' spans, want 1 for the batch; all: %v", len(uniform), spanNames(tel.spans.Ended()))
	}
	wantAttrs(t, "batch send", uniform[0].Attributes(), map[string]string{"messaging.batch.message_count": "3"})
	if mixed := tel.ended("send"); len(mixed) != 1 {
		t.Errorf("a mixed-type batch made %d 'send' spans, want 1", len(mixed))
	}
	for _, p := range tel.ended("process job.ok") {
		if p.Parent().SpanID() != uniform[0].SpanContext().SpanID() {
			t.Error("a process span of the batch is not parented to its send span")
		}
	}
	for typ, errType := range map[string]string{"job.fail": "*errors.errorString", "job.panic": "panic",
		"job.permanent": "*json.SyntaxError"} {
		spans := tel.ended("process " + typ)
		if len(spans) != 1 {
			t.Fatalf("got %d process %s spans, want 1", len(spans), typ)
		}
		if spans[0].Status().Code != codes.Error {
			t.Errorf("process %s status %v, want Error", typ, spans[0].Status())
		}
		wantAttrs(t, "process "+typ, spans[0].Attributes(), map[string]string{"error.type": errType})
	}
}

func TestTraceContextSurvivesAHop(t *testing.T) {
	tel := newTelemetry(t)
	first := newBus(t, tel.opts...)
	second := newBus(t, tel.opts...)
	var r recorder
	sub := mustSubscribe(t, second, "hop", &r)
	// Forward by hand with a fresh ctx, as a process boundary would: only
	// the signal's extensions carry the trace.
	fwd := mustSubscribe(t, first, "hop", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		return second.Publish(context.Background(), s)
	}))
	ctx, root := tel.tp.Tracer("test").Start(context.Background(), "root")
	if err := first.Publish(ctx, mustSignal(t, "hop", nil)); err != nil {
		t.Fatal(err)
	}
	root.End()
	_ = fwd.Close()
	_ = sub.Close()
	sends := tel.ended("send hop")
	if len(sends) != 2 {
		t.Fatalf("got %d send spans, want 2", len(sends))
	}
	for _, s := range sends {
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("send span in trace %v, want the root's %v", s.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
	}
	// The spans end in either order (the forwarder may finish its publish
	// before the first Publish ends its span): tell them by their parents.
	firstSend, secondSend := sends[0], sends[1]
	if secondSend.Parent().SpanID() == root.SpanContext().SpanID() {
		firstSend, secondSend = secondSend, firstSend
	}
	if firstSend.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Fatalf("neither send span is a child of the root: parents %v and %v",
			sends[0].Parent().SpanID(), sends[1].Parent().SpanID())
	}
	if secondSend.Parent().SpanID() != firstSend.SpanContext().SpanID() {
		t.Errorf("second send's parent is %v, want the first send %v (from the traceparent extension)",
			secondSend.Parent().SpanID(), firstSend.SpanContext().SpanID())
	}
}

func TestMetricsCountWhatHappened(t *testing.T) {
	tel := newTelemetry(t)
	b := newBus(t, tel.opts...)
	attempts := map[string]int{}
	release := make(chan struct{})
	inHandler := make(chan struct{}, 3)
	reject := mustSubscribe(t, b, "m.full", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		inHandler <- struct{}{}
		<-release
		return nil
	}), bus.WithQueueSize(1), bus.WithOverflow(bus.Reject), bus.WithSubscriptionName("rejecting"))
	sub := mustSubscribe(t, b, "m.*", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		attempts[s.ID]++
		if s.Type == "m.flaky" && attempts[s.ID] == 1 || s.Type == "m.dead" {
			return errors.New("fail")
		}
		return nil
	}), bus.WithSubscriptionName("main"), bus.WithRetry(bus.RetryPolicy{MaxAttempts: 2, Multiplier: 1}))
	ctx := context.Background()
	for _, typ := range []string{"m.ok", "m.ok", "m.flaky", "m.dead"} {
		if err := b.Publish(ctx, mustSignal(t, typ, nil)); err != nil {
			t.Fatal(err)
		}
	}
	// m.full: the first is taken by the worker (blocked), the second
	// queued, the third rejected.
	var rejected int
	for i := range 3 {
		if err := b.Publish(ctx, mustSignal(t, "m.full", nil)); errors.Is(err, bus.ErrQueueFull) {
			rejected++
		}
		if i == 0 {
			<-inHandler
		}
	}
	_ = sub.Close()
	m := tel.collect(t)
	depth := gaugeBy(t, m, "signalbus.subscription.queue.depth", "messaging.destination.subscription.name")
	if _, ok := depth["rejecting"]; !ok {
		t.Errorf("queue depth gauge has no series for the live subscription: %v", depth)
	}
	close(release)
	_ = reject.Close()
	m = tel.collect(t)

	sent := sumBy(t, m, "messaging.client.sent.messages", "messaging.destination.name")
	if sent["m.ok"] != 2 || sent["m.flaky"] != 1 || sent["m.dead"] != 1 || sent["m.full"] != 3 {
		t.Errorf("sent by type = %v", sent)
	}
	consumed := sumBy(t, m, "messaging.client.consumed.messages", "messaging.destination.subscription.name")
	if consumed["main"] != 7 || consumed["rejecting"] != 3-int64(rejected) {
		t.Errorf("consumed by subscription = %v, want main 7, rejecting %d", consumed, 3-rejected)
	}
	if got := sumBy(t, m, "signalbus.dispatch.retries", "messaging.destination.subscription.name")["main"]; got != 2 {
		t.Errorf("retries = %d, want 2 (m.flaky once, m.dead once)", got)
	}
	if got := sumBy(t, m, "signalbus.deadletter.messages", "messaging.destination.subscription.name")["main"]; got != 1 {
		t.Errorf("dead letters = %d, want 1", got)
	}
	if rejected != 1 {
		t.Errorf("%d publishes rejected, want 1", rejected)
	}
	if got := sumBy(t, m, "signalbus.dispatch.dropped", "reason")["queue_full"]; got != int64(rejected) {
		t.Errorf("dropped queue_full = %d, want %d", got, rejected)
	}
	for name, count := range map[string]uint64{
		"messaging.process.duration":          11, // main: 7 signals + 2 retries; rejecting: 2
		"signalbus.delivery.latency":          9,  // main 7, rejecting 2
		"messaging.client.operation.duration": 7,
	} {
		if total := histogramCount(t, m, name); total != count {
			t.Errorf("%s recorded %d, want %d", name, total, count)
		}
	}
	for name, md := range m {
		if md.Description == "" {
			t.Errorf("%s has no description", name)
		}
		if md.Unit == "1" {
			t.Errorf("%s has unit \"1\", which the Prometheus exporter turns into _ratio", name)
		}
		if strings.HasSuffix(name, "duration") || strings.HasSuffix(name, "latency") {
			if md.Unit != "s" {
				t.Errorf("%s unit %q, want s", name, md.Unit)
			}
		}
	}
}

func sumBy(t *testing.T, m map[string]metricdata.Metrics, name, key string) map[string]int64 {
	t.Helper()
	sum, ok := m[name].Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, want an int64 sum", name, m[name].Data)
	}
	out := map[string]int64{}
	for _, dp := range sum.DataPoints {
		v, _ := dp.Attributes.Value(attribute.Key(key))
		out[v.Emit()] += dp.Value
	}
	return out
}

// histogramCount is the number of values a latency histogram recorded
// over all its series, whose bounds must be LatencyBuckets.
func histogramCount(t *testing.T, m map[string]metricdata.Metrics, name string) uint64 {
	t.Helper()
	h, ok := m[name].Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is %T, want a float64 histogram", name, m[name].Data)
	}
	var total uint64
	for _, dp := range h.DataPoints {
		total += dp.Count
		if !slices.Equal(dp.Bounds, bus.LatencyBuckets) {
			t.Errorf("%s bounds %v, want LatencyBuckets", name, dp.Bounds)
		}
	}
	return total
}

// The worker hands its measurements to the recorder per batch, but a slow
// handler or a retry wait inside a batch does not hold back the metrics of
// the runs before it.
func TestSlowBatchDoesNotHoldItsMetricsBack(t *testing.T) {
	processed := func(tel *telemetry, runs uint64) func() bool {
		return func() bool {
			m := tel.collect(t)
			_, ok := m["messaging.process.duration"]
			return ok && histogramCount(t, m, "messaging.process.duration") == runs
		}
	}
	t.Run("retry wait", func(t *testing.T) {
		tel := newTelemetry(t)
		b := newBus(t, tel.opts...)
		var runs atomic.Int32
		mustSubscribe(t, b, "retried", bus.HandlerFunc(func(context.Context, bus.Signal) error {
			if runs.Add(1) == 1 {
				return errors.New("first run fails")
			}
			return nil
		}), bus.WithRetry(bus.RetryPolicy{MaxAttempts: 2, InitialBackoff: 3 * time.Second, MaxBackoff: 3 * time.Second, Multiplier: 1}))
		if err := b.Publish(context.Background(), mustSignal(t, "retried", nil)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the failed run's duration", processed(tel, 1))
		if n := runs.Load(); n != 1 {
			t.Errorf("the failed run's duration was recorded only after %d runs, want during the retry wait", n)
		}
	})
	t.Run("slow handler", func(t *testing.T) {
		tel := newTelemetry(t)
		b := newBus(t, tel.opts...)
		gate, inGate := make(chan struct{}), make(chan struct{})
		release, blocked := make(chan struct{}), make(chan struct{})
		defer close(release)
		mustSubscribe(t, b, "slow", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
			switch s.Subject {
			case "gate":
				close(inGate)
				<-gate
			case "block":
				close(blocked)
				<-release
			default:
				// Longer than the worker holds measurements back.
				time.Sleep(150 * time.Millisecond)
			}
			return nil
		}))
		ctx := context.Background()
		if err := b.Publish(ctx, mustSignal(t, "slow", nil, bus.WithSubject("gate"))); err != nil {
			t.Fatal(err)
		}
		<-inGate
		// Both queue behind the gate, so that the worker takes them as one
		// batch once it opens.
		if err := b.Publish(ctx,
			mustSignal(t, "slow", nil, bus.WithSubject("sleep")),
			mustSignal(t, "slow", nil, bus.WithSubject("block"))); err != nil {
			t.Fatal(err)
		}
		close(gate)
		<-blocked
		waitFor(t, "the gate's and the sleeping run's durations while the third run blocks", processed(tel, 2))
	})
}

func gaugeBy(t *testing.T, m map[string]metricdata.Metrics, name, key string) map[string]int64 {
	t.Helper()
	g, ok := m[name].Data.(metricdata.Gauge[int64])
	if !ok {
		t.Fatalf("%s is %T, want an int64 gauge", name, m[name].Data)
	}
	out := map[string]int64{}
	for _, dp := range g.DataPoints {
		v, _ := dp.Attributes.Value(attribute.Key(key))
		out[v.Emit()] = dp.Value
	}
	return out
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}

// TestNoSDKStillPropagates: without a tracing SDK no span is started, but a
// trace context the caller already has still reaches the signal.
func TestNoSDKStillPropagates(t *testing.T) {
	b := newBus(t) // global providers, no SDK installed in this test binary
	var r recorder
	sub := mustSubscribe(t, b, "p", &r)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	if err := b.Publish(ctx, mustSignal(t, "p", nil), mustSignal(t, "p", nil)); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), mustSignal(t, "p", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	for i, s := range r.signals[:2] {
		if s.Extensions["traceparent"] != want {
			t.Errorf("signal %d traceparent = %v, want the caller's %s", i, s.Extensions["traceparent"], want)
		}
	}
	if _, ok := r.signals[2].Extensions["traceparent"]; ok {
		t.Errorf("a signal published without trace context got a traceparent: %v", r.signals[2].Extensions)
	}
}

// TestWantsLeavesTheTypeSeriesAlone: a transport asks Wants about every
// subject it sees, junk included; that must not use up the bounded set of
// per-type metric series, so a type published afterwards still gets its
// own series rather than _OTHER.
func TestWantsLeavesTheTypeSeriesAlone(t *testing.T) {
	tel := newTelemetry(t)
	b := newBus(t, tel.opts...)
	for i := range 1500 {
		if b.Wants(fmt.Sprintf("junk.%d", i)) {
			t.Fatalf("Wants(junk.%d) with no subscription", i)
		}
	}
	if err := b.Publish(context.Background(), mustSignal(t, "real.type", nil)); err != nil {
		t.Fatal(err)
	}
	sent := sumBy(t, tel.collect(t), "messaging.client.sent.messages", "messaging.destination.name")
	if sent["real.type"] != 1 {
		t.Errorf("sent by type = %v, want real.type 1 in a series of its own", sent)
	}
}
