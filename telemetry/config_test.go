package telemetry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
)

func TestConfigRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{SampleRatio: 1.5}, "SampleRatio"},
		{Config{SampleRatio: math.NaN()}, "SampleRatio"},
		{Config{OTLPProtocol: "http/json"}, "OTLPProtocol"},
		{Config{OTLPEndpoint: "ftp://collector:4318"}, "OTLPEndpoint"},
		{Config{OTLPEndpoint: "collector"}, "OTLPEndpoint"},
		{Config{PyroscopeURL: "pyroscope:4040"}, "PyroscopeURL"},
		{Config{PyroscopeURL: "http://"}, "PyroscopeURL"},
	} {
		_, err := New(context.Background(), tc.cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestProtocolFromEnvironmentIsChecked(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	_, err := New(context.Background(), Config{})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "http/json") {
		t.Fatalf("New = %v, want ErrInvalidConfig naming the protocol", err)
	}
}

func TestShutdownTwice(t *testing.T) {
	p, err := New(context.Background(), Config{InstanceID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("first Shutdown: %v", err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestRegistryFilledTwiceIsAnError(t *testing.T) {
	p, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if _, err := New(context.Background(), Config{Registry: p.Registry}); err == nil {
		t.Fatal("New with a registry another Providers fills: nil error")
	}
}

func TestSetupInstallsGlobals(t *testing.T) {
	prevTP, prevMP, prevProp, prevEH := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator(), otel.GetErrorHandler()
	defer func() {
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
		otel.SetTextMapPropagator(prevProp)
		otel.SetErrorHandler(prevEH)
	}()
	var logged strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))
	shutdown, err := Setup(context.Background(), Config{InstanceID: "g", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	_, span := otel.Tracer("test").Start(context.Background(), "x")
	defer span.End()
	if !span.SpanContext().IsValid() {
		t.Error("the global tracer provider is not the SDK's")
	}
	fields := strings.Join(otel.GetTextMapPropagator().Fields(), ",")
	if !strings.Contains(fields, "traceparent") || !strings.Contains(fields, "baggage") {
		t.Errorf("global propagator fields %s, want traceparent and baggage", fields)
	}
	otel.Handle(errors.New("exporter cannot reach collector"))
	mu.Lock()
	out := logged.String()
	mu.Unlock()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "exporter cannot reach collector") {
		t.Errorf("an OpenTelemetry error after Setup logged %q, want a warning on Config.Logger", out)
	}
}

// lockedWriter serialises writes to w, for a log a test reads.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
