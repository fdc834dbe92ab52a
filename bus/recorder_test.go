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

// measuredSubscription is a bus with a metrics SDK and one subscription
// on "r" that reports each signal it handled on handled.
type measuredSubscription struct {
	bus     *Bus
	sub     *Subscription
	handled chan struct{}
	reader  *sdkmetric.ManualReader
}

func newMeasuredSubscription(t *testing.T) *measuredSubscription {
	t.Helper()
	m := &measuredSubscription{reader: sdkmetric.NewManualReader(), handled: make(chan struct{}, 1)}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(m.reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	var err error
	m.bus, err = New(WithMeterProvider(mp), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.bus.Close(context.Background()) })
	m.sub, err = m.bus.Subscribe("r", HandlerFunc(func(context.Context, Signal) error {
		m.handled <- struct{}{}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// publishHandled publishes one signal and waits until it was handled.
func (m *measuredSubscription) publishHandled(t *testing.T) {
	t.Helper()
	if err := m.bus.Publish(context.Background(), Signal{Type: "r", Source: "/r"}); err != nil {
		t.Fatal(err)
	}
	<-m.handled
}

// consumed is the messaging.client.consumed.messages count collected now.
func (m *measuredSubscription) consumed(t *testing.T) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if sum, ok := md.Data.(metricdata.Sum[int64]); ok && md.Name == "messaging.client.consumed.messages" {
				for _, dp := range sum.DataPoints {
					total += dp.Value
				}
			}
		}
	}
	return total
}

// TestRecorderRunsOnlyWhileThereIsWork: a subscription's recorder starts
// with the first measurements handed to it, ends once it has had nothing
// to do for recorderIdle (what it was given recorded), and starts again
// with the next.
func TestRecorderRunsOnlyWhileThereIsWork(t *testing.T) {
	m := newMeasuredSubscription(t)
	running := func() bool { return m.sub.metrics.running.Load() }
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
		m.publishHandled(t)
		waitUntil("the consumed count is recorded", func() bool { return m.consumed(t) == round })
		waitUntil("the idle recorder has ended", func() bool { return !running() })
	}
}

// TestRecorderLosesNothingAroundItsIdleExit hands measurements over while
// the recorder keeps ending for want of work (a 1 ms idle period), so that
// submits race with its exit: every consumed count must still be recorded
// and the worker never stalls.
func TestRecorderLosesNothingAroundItsIdleExit(t *testing.T) {
	m := newMeasuredSubscription(t)
	m.sub.metrics.idle = time.Millisecond // before the first submit, which the queue orders after this
	const rounds = 2000
	for i := range rounds {
		m.publishHandled(t)
		if i%3 == 0 {
			time.Sleep(time.Duration(i%4) * 500 * time.Microsecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.bus.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if consumed := m.consumed(t); consumed != rounds {
		t.Errorf("consumed = %d after Close, want %d", consumed, rounds)
	}
}
