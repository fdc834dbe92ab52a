package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
)

// The throughput benchmarks carry 128-byte signals from one publisher to one
// subscription and report signals/s and how many arrived out of order (ids
// are increasing per process, so a handler sees order by comparing them).
// "impl=chan" is the baseline: the same Signal values through a plain
// buffered Go channel of the bus's default queue size. It runs first in
// every BenchmarkThroughput run, and each bus sub-benchmark reports its
// rate as a fraction of it ("x-chan"), so the ratio comes from one run on
// this noisy shared machine.

// chanRate is the baseline's signals/s in the current run.
var chanRate float64

var payload = make([]byte, 128)

func template() bus.Signal {
	return bus.Signal{Type: "order.created", Source: "/bench", Data: payload, DataContentType: "application/octet-stream"}
}

func BenchmarkThroughput(b *testing.B) {
	b.Run("impl=chan", benchChannel)
	for _, tc := range []struct {
		name string
		opts func(b *testing.B) []bus.Option
	}{
		{"impl=bus/sdk=none", func(*testing.B) []bus.Option { return nil }},
		{"impl=bus/sdk=ratio1pct", func(b *testing.B) []bus.Option { return sdkOptions(b, sdktrace.TraceIDRatioBased(0.01)) }},
		{"impl=bus/sdk=always", func(b *testing.B) []bus.Option { return sdkOptions(b, sdktrace.AlwaysSample()) }},
	} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", tc.name, batch), func(b *testing.B) {
				benchBus(b, batch, tc.opts(b))
			})
		}
	}
}

// sdkOptions installs a real metrics SDK (a ManualReader, collected once at
// the end so its cost is counted) and a tracing SDK whose spans go through a
// batch processor into an exporter that discards them.
func sdkOptions(b *testing.B, sampler sdktrace.Sampler) []bus.Option {
	tp, mp := sdkProviders(b, sampler)
	return []bus.Option{bus.WithTracerProvider(tp), bus.WithMeterProvider(mp)}
}

func sdkProviders(b *testing.B, sampler sdktrace.Sampler) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sampler)),
		sdktrace.WithBatcher(discardExporter{tracetest.NewNoopExporter()}),
	)
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return tp, mp
}

// BenchmarkSDKFloor makes, in one goroutine and without any bus code, the
// OpenTelemetry SDK calls the bus makes per signal with the SDK at 1 %
// sampling: per Publish call, the send span, the trace context written
// into the signal's extensions, the sent counter and the publish duration;
// per signal, the process span, the delivery latency and process duration
// histograms; the consumed counter once per batch. batch=1 is a signal
// published alone, batch=64 one of a 64-signal Publish (ns/op is per
// signal either way). ns/op is the SDK's own CPU time per signal: the
// floor under BenchmarkThroughput's sdk=ratio1pct rows on this machine. A
// rate of R signals/s on C cores leaves C/R seconds of CPU per signal for
// everything, the SDK included.
func BenchmarkSDKFloor(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchSDKFloor(b, batch) })
	}
}

func benchSDKFloor(b *testing.B, batch int) {
	tp, mp := sdkProviders(b, sdktrace.TraceIDRatioBased(0.01))
	tracer := tp.Tracer(bus.ScopeName)
	meter := mp.Meter(bus.ScopeName)
	sent, _ := meter.Int64Counter("messaging.client.sent.messages")
	consumed, _ := meter.Int64Counter("messaging.client.consumed.messages")
	opDuration, _ := meter.Float64Histogram("messaging.client.operation.duration", metric.WithExplicitBucketBoundaries(bus.LatencyBuckets...))
	latency, _ := meter.Float64Histogram("signalbus.delivery.latency", metric.WithExplicitBucketBoundaries(bus.LatencyBuckets...))
	procDur, _ := meter.Float64Histogram("messaging.process.duration", metric.WithExplicitBucketBoundaries(bus.LatencyBuckets...))
	typeSet := attribute.NewSet(attribute.String("messaging.system", "signalbus"), attribute.String("signalbus.bus", "bench"),
		attribute.String("messaging.destination.name", "order.created"))
	subSet := attribute.NewSet(attribute.String("messaging.system", "signalbus"), attribute.String("signalbus.bus", "bench"),
		attribute.String("messaging.destination.subscription.name", "order.*"))
	prop := propagation.TraceContext{}
	producer := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
	consumer := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	ctx := context.Background()
	var parent context.Context
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%batch == 0 {
			sendCtx, send := tracer.Start(ctx, "send order.created", producer...)
			carrier := make(propagation.MapCarrier, 2)
			prop.Inject(sendCtx, carrier)
			sent.Add(sendCtx, int64(batch), metric.WithAttributeSet(typeSet))
			opDuration.Record(sendCtx, 0.000002, metric.WithAttributeSet(typeSet))
			send.End()
			parent = trace.ContextWithSpanContext(ctx, send.SpanContext())
			consumed.Add(ctx, int64(batch), metric.WithAttributeSet(subSet))
		}
		_, process := tracer.Start(parent, "process order.created", consumer...)
		process.End()
		latency.Record(ctx, 0.00001, metric.WithAttributeSet(subSet))
		procDur.Record(ctx, 0.000001, metric.WithAttributeSet(subSet))
	}
}

type discardExporter struct{ *tracetest.NoopExporter }

func benchChannel(b *testing.B) {
	ch := make(chan bus.Signal, bus.DefaultQueueSize)
	done := make(chan int)
	go func() {
		received := 0
		for s := range ch {
			received += len(s.Data)
		}
		done <- received
	}()
	tmpl := template()
	tmpl.ID, tmpl.Time = bus.NewID(), time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ch <- tmpl
	}
	close(ch)
	received := <-done
	b.StopTimer()
	if received != b.N*len(payload) {
		b.Fatalf("received %d bytes, want %d", received, b.N*len(payload))
	}
	chanRate = float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(chanRate, "signals/s")
}

func benchBus(b *testing.B, batch int, opts []bus.Option) {
	opts = append(opts, bus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	bb, err := bus.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu        sync.Mutex
		received  int
		reordered int
		last      string
	)
	_, err = bb.Subscribe("order.*", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		// The worker is one goroutine, but take the lock so the race
		// detector and the final read agree.
		mu.Lock()
		if s.ID <= last {
			reordered++
		}
		last = s.ID
		received++
		mu.Unlock()
		return nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	signals := make([]bus.Signal, batch)
	tmpl := template()
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for sent < b.N {
		n := min(batch, b.N-sent)
		for i := range n {
			signals[i] = tmpl
		}
		if err := bb.Publish(ctx, signals[:n]...); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	// Close drains: the clock stops once every signal was handled.
	if err := bb.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	if received != b.N {
		b.Fatalf("received %d of %d", received, b.N)
	}
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "signals/s")
	b.ReportMetric(float64(reordered), "reordered")
	if chanRate > 0 {
		b.ReportMetric(rate/chanRate, "x-chan")
	}
}
