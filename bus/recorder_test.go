package bus

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestRecorderRunsOnlyWhileThereIsWork: a subscription's recorder starts
// with the first measurements handed to it, ends once it has had nothing
// to do for recorderIdle (what it was given recorded), and starts again
// with the next.
func TestRecorderRunsOnlyWhileThereIsWork(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	b, err := New(WithMeterProvider(mp), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	handled := make(chan struct{}, 1)
	sub, err := b.Subscribe("r", HandlerFunc(func(context.Context, Signal) error {
		handled <- struct{}{}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	running := func() bool { return sub.metrics.running.Load() }
	consumed := func() int64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "messaging.client.consumed.messages" {
					for _, dp := range sum.DataPoints {
						total += dp.Value
					}
				}
			}
		}
		return total
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10*time.Second + 2*recorderIdle)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if running() {
		t.Error("the recorder runs before anything was measured")
	}
	for round := int64(1); round <= 2; round++ {
		if err := b.Publish(context.Background(), Signal{Type: "r", Source: "/r"}); err != nil {
			t.Fatal(err)
		}
		<-handled
		waitUntil("the consumed count is recorded", func() bool { return consumed() == round })
		waitUntil("the idle recorder has ended", func() bool { return !running() })
	}
}

// TestRecorderLosesNothingAroundItsIdleExit hands measurements over while
// the recorder keeps ending for want of work (a 1 ms idle period), so that
// submits race with its exit: every consumed count must still be recorded
// and the worker never stalls.
func TestRecorderLosesNothingAroundItsIdleExit(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	b, err := New(WithMeterProvider(mp), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 1)
	sub, err := b.Subscribe("r", HandlerFunc(func(context.Context, Signal) error {
		handled <- struct{}{}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	sub.metrics.idle = time.Millisecond // before the first submit, which the queue orders after this
	const rounds = 2000
	for i := range rounds {
		if err := b.Publish(context.Background(), Signal{Type: "r", Source: "/r"}); err != nil {
			t.Fatal(err)
		}
		<-handled
		if i%3 == 0 {
			time.Sleep(time.Duration(i%4) * 500 * time.Microsecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var consumed int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "messaging.client.consumed.messages" {
				for _, dp := range sum.DataPoints {
					consumed += dp.Value
				}
			}
		}
	}
	if consumed != rounds {
		t.Errorf("consumed = %d after Close, want %d", consumed, rounds)
	}
}
