package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	otelpyroscope "github.com/grafana/otel-profiling-go"
	"github.com/grafana/pyroscope-go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func (p *Providers) startTraces(ctx context.Context, cfg Config, res *resource.Resource) error {
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	}
	exp, err := newSpanExporter(ctx, cfg)
	if err != nil {
		return err
	}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	p.tp = sdktrace.NewTracerProvider(opts...)
	p.TracerProvider = p.tp
	return nil
}

// newSpanExporter returns the OTLP exporter cfg asks for, or nil when no
// endpoint is configured. With no OTLPEndpoint the exporters read the
// standard OTEL_EXPORTER_OTLP_* variables themselves (headers, TLS,
// timeout included).
func newSpanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	endpoint := cfg.OTLPEndpoint
	if endpoint == "" && firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return nil, nil
	}
	isURL := strings.Contains(endpoint, "://")
	var exp sdktrace.SpanExporter
	var err error
	switch cfg.OTLPProtocol {
	case ProtocolGRPC:
		var o []otlptracegrpc.Option
		switch {
		case isURL:
			o = append(o, otlptracegrpc.WithEndpointURL(endpoint))
		case endpoint != "":
			o = append(o, otlptracegrpc.WithEndpoint(endpoint))
		}
		if cfg.OTLPInsecure {
			o = append(o, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, o...)
	case ProtocolHTTP:
		var o []otlptracehttp.Option
		switch {
		case isURL:
			// A bare base URL means the standard path, as it does in
			// OTEL_EXPORTER_OTLP_ENDPOINT.
			if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
				u.Path = "/v1/traces"
				endpoint = u.String()
			}
			o = append(o, otlptracehttp.WithEndpointURL(endpoint))
		case endpoint != "":
			o = append(o, otlptracehttp.WithEndpoint(endpoint))
		}
		if cfg.OTLPInsecure {
			o = append(o, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, o...)
	default:
		// Validate lets only these two through, but an environment
		// variable may name another.
		return nil, fmt.Errorf("%w: OTLP protocol %q (from the environment): want %q or %q",
			ErrInvalidConfig, cfg.OTLPProtocol, ProtocolHTTP, ProtocolGRPC)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP %s exporter: %w", cfg.OTLPProtocol, err)
	}
	return exp, nil
}

func (p *Providers) startProfiling(cfg Config) error {
	pc := pyroscope.Config{
		ApplicationName: cfg.ServiceName,
		ServerAddress:   cfg.PyroscopeURL,
		Tags:            map[string]string{"service_instance_id": cfg.InstanceID, "service_version": cfg.ServiceVersion},
		Logger:          pyroscopeLogger{cfg.Logger},
		ProfileTypes: []pyroscope.ProfileType{pyroscope.ProfileCPU, pyroscope.ProfileAllocObjects,
			pyroscope.ProfileAllocSpace, pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace,
			pyroscope.ProfileGoroutines},
		UploadRate: cfg.profileUploadRate,
	}
	prof, err := pyroscope.Start(pc)
	if err != nil {
		return fmt.Errorf("telemetry: pyroscope %s: %w", cfg.PyroscopeURL, err)
	}
	p.profiler = prof
	p.TracerProvider = otelpyroscope.NewTracerProvider(p.tp)
	return nil
}

// pyroscopeLogger adapts slog to pyroscope-go's logger; its debug and
// info chatter goes to debug.
type pyroscopeLogger struct{ l *slog.Logger }

func (l pyroscopeLogger) Infof(format string, args ...any) {
	l.l.Debug(fmt.Sprintf(format, args...), "component", "pyroscope")
}
func (l pyroscopeLogger) Debugf(format string, args ...any) {
	l.l.Debug(fmt.Sprintf(format, args...), "component", "pyroscope")
}
func (l pyroscopeLogger) Errorf(format string, args ...any) {
	l.l.Error(fmt.Sprintf(format, args...), "component", "pyroscope")
}

// Shutdown flushes the spans still queued, stops profiling (sending the
// last profile) and the meter provider. It is safe to call more than
// once: later calls return the first call's result.
func (p *Providers) Shutdown(ctx context.Context) error {
	p.once.Do(func() {
		var errs []error
		if p.tp != nil {
			if err := p.tp.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("tracer provider: %w", err))
			}
		}
		if p.profiler != nil {
			if err := p.profiler.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("pyroscope: %w", err))
			}
		}
		if p.mp != nil {
			if err := p.mp.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("meter provider: %w", err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			p.err = fmt.Errorf("telemetry: shutdown: %w", err)
		}
	})
	return p.err
}
