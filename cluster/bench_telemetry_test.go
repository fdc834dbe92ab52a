package cluster

import (
	"context"
	"testing"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/telemetry"
)

// benchTelemetryRatio is the sampling a production node would run with:
// what the telemetry=on sub-benchmarks cost is the SDK's instruments, a
// Prometheus exporter and 1 % of publishes traced.
const benchTelemetryRatio = 0.01

// benchTelemetry returns a Config option that gives a benchmark's nodes
// the SDK telemetry.New builds (no OTLP endpoint: sampled spans are
// recorded, not exported), shut down when the benchmark ends.
func benchTelemetry(b *testing.B) func(*Config) {
	b.Helper()
	p, err := telemetry.New(context.Background(), telemetry.Config{InstanceID: "bench",
		SampleRatio: benchTelemetryRatio, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return func(cfg *Config) {
		cfg.MeterProvider, cfg.TracerProvider = p.MeterProvider, p.TracerProvider
		cfg.BusOptions = append(cfg.BusOptions, bus.WithMeterProvider(p.MeterProvider),
			bus.WithTracerProvider(p.TracerProvider), bus.WithPropagator(p.Propagator))
	}
}
