package globaltest

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// installed records that the test has set the global providers.
var installed bool

// TestZeroConfigurationUsesTheGlobalProviders makes a bus with no telemetry
// options before any SDK is installed, as an application that builds its
// bus in an init would, then installs an SDK: the same bus must produce
// spans and metrics from then on.
func TestZeroConfigurationUsesTheGlobalProviders(t *testing.T) {
	if installed {
		// OpenTelemetry's global providers delegate to the first SDK set,
		// once per process: a second run (-count=2) cannot start afresh.
		t.Skip("the global providers were installed by an earlier run in this process; this test runs once per process")
	}
	installed = true
	b, err := bus.New(bus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 8)
	if _, err := b.Subscribe("g.*", bus.HandlerFunc(func(context.Context, bus.Signal) error {
		done <- struct{}{}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		if err := b.Publish(context.Background(), bus.Signal{Type: "g.x", Source: "/g"}); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	publish() // no SDK yet: nothing to record, nothing should break

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})

	publish()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"process g.x", "send g.x"}) {
		t.Errorf("spans after installing the SDK: %v, want send g.x and process g.x", names)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var sent int64 = -1
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "messaging.client.sent.messages" {
				sent = 0
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					sent += dp.Value
				}
			}
		}
	}
	if sent != 1 {
		t.Errorf("messaging.client.sent.messages = %d after the SDK was installed, want 1", sent)
	}
}
