package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/grafana/pyroscope-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
)

// DefaultServiceName is Config.ServiceName's default.
const DefaultServiceName = "signalbus"

// OTLP protocols of Config.OTLPProtocol.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// ErrInvalidConfig is wrapped by every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("telemetry: invalid config")

// SecondsBuckets are the explicit boundaries, in seconds, of every
// histogram whose unit is "s": the SDK's defaults are shaped for
// milliseconds and would put a whole bus in one bucket. They are the
// bus's own LatencyBuckets (5 µs to 10 s), so that a view and the
// instruments' advice agree.
var SecondsBuckets = bus.LatencyBuckets

// Config configures New. Every field is optional.
type Config struct {
	// ServiceName is the resource's service.name. Default "signalbus".
	ServiceName string
	// ServiceVersion is service.version. Default: the main module's
	// version from the build info, "(devel)" when there is none.
	ServiceVersion string
	// InstanceID is service.instance.id: the node name. Default: the
	// host name.
	InstanceID string
	// Registry receives the Prometheus exporter and the Go and process
	// collectors; it must not hold them already (one registry per
	// Providers). Nil: a new registry, returned in Providers.Registry.
	// Never the default registerer, which a library must not fill.
	Registry *prometheus.Registry
	// OTLPEndpoint is where spans go: a URL (http://host:4318, to which
	// HTTP adds /v1/traces when it has no path) or host:port. Empty: the standard
	// OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// variables decide; with neither set, spans are sampled but not
	// exported.
	OTLPEndpoint string
	// OTLPProtocol is "http/protobuf" (the default) or "grpc". Empty:
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL.
	OTLPProtocol string
	// OTLPInsecure sends spans without TLS to a host:port endpoint (a URL
	// says so by its scheme).
	OTLPInsecure bool
	// SampleRatio is the share of new traces sampled; a span with a parent
	// follows its parent's decision. 0 means 1 (sample everything), a
	// negative value never samples a new trace; above 1 is an error.
	SampleRatio float64
	// PyroscopeURL is the Pyroscope server profiles are sent to
	// (http://host:4040); empty turns profiling off. CPU profiling is
	// process-wide: only one Providers at a time may profile.
	PyroscopeURL string
	// Logger receives Pyroscope's messages and the HTTP server's errors;
	// Setup also makes it OpenTelemetry's global error handler, which is
	// where the exporters' failures go (OpenTelemetry has no per-provider
	// one). Default slog.Default().
	Logger *slog.Logger

	// profileUploadRate is how often profiles go to Pyroscope; 0 is
	// pyroscope-go's default (15 s). Tests shorten it.
	profileUploadRate time.Duration
}

// Providers is what New built: the providers a node is given when it
// cannot use the globals (several nodes in one process).
type Providers struct {
	// TracerProvider is the SDK tracer provider, wrapped so that CPU
	// samples carry span_id and span_name labels when Pyroscope is on.
	TracerProvider trace.TracerProvider
	// MeterProvider is the SDK meter provider, read by the Prometheus
	// exporter.
	MeterProvider metric.MeterProvider
	// Registry holds the exporter and the Go and process collectors:
	// what /metrics serves.
	Registry *prometheus.Registry
	// Propagator is W3C TraceContext + Baggage.
	Propagator propagation.TextMapPropagator

	tp       *sdktrace.TracerProvider
	mp       *sdkmetric.MeterProvider
	profiler *pyroscope.Profiler

	once sync.Once
	err  error
}

// Validate reports the first thing wrong with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	if math.IsNaN(c.SampleRatio) || c.SampleRatio > 1 {
		return fmt.Errorf("%w: SampleRatio %v: want at most 1 (0: the default 1; negative: never sample)", ErrInvalidConfig, c.SampleRatio)
	}
	switch c.OTLPProtocol {
	case "", ProtocolHTTP, ProtocolGRPC:
	default:
		return fmt.Errorf("%w: OTLPProtocol %q: want %q or %q", ErrInvalidConfig, c.OTLPProtocol, ProtocolHTTP, ProtocolGRPC)
	}
	if c.OTLPEndpoint != "" {
		if err := checkEndpoint(c.OTLPEndpoint); err != nil {
			return fmt.Errorf("%w: OTLPEndpoint %q: %w", ErrInvalidConfig, c.OTLPEndpoint, err)
		}
	}
	if c.PyroscopeURL != "" {
		u, err := url.Parse(c.PyroscopeURL)
		if err != nil {
			return fmt.Errorf("%w: PyroscopeURL %q: %w", ErrInvalidConfig, c.PyroscopeURL, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: PyroscopeURL %q: want http://host:port or https://host:port", ErrInvalidConfig, c.PyroscopeURL)
		}
	}
	return nil
}

func checkEndpoint(e string) error {
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return err
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("want http(s)://host:port[/path] or host:port")
		}
		return nil
	}
	if strings.ContainsAny(e, "/ ") || !strings.Contains(e, ":") {
		return errors.New("want http(s)://host:port[/path] or host:port")
	}
	return nil
}

// New builds the providers cfg describes, without installing them as
// globals. The caller must Shutdown them.
func New(ctx context.Context, cfg Config) (*Providers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", cfg.ServiceVersion),
		attribute.String("service.instance.id", cfg.InstanceID)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	p := &Providers{
		Registry:   cfg.Registry,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if p.Registry == nil {
		p.Registry = prometheus.NewRegistry()
	}
	ok := false
	defer func() {
		if !ok {
			_ = p.Shutdown(context.Background())
		}
	}()
	if err := p.startMetrics(res); err != nil {
		return nil, err
	}
	if err := p.startTraces(ctx, cfg, res); err != nil {
		return nil, err
	}
	if cfg.PyroscopeURL != "" {
		if err := p.startProfiling(cfg); err != nil {
			return nil, err
		}
	}
	ok = true
	return p, nil
}

// Setup is New, then installs the tracer and meter providers and the
// propagator as the OpenTelemetry globals, which the bus and the cluster
// use by default, and an error handler that logs OpenTelemetry's errors
// (an exporter that cannot reach its collector) to cfg.Logger as
// warnings. Call it before starting nodes: a bus takes its providers when
// it is made. shutdown flushes and stops them (after the nodes are
// closed, so their last spans are in).
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	p, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	logger := cfg.withDefaults().Logger
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("OpenTelemetry error", "error", err)
	}))
	otel.SetTracerProvider(p.TracerProvider)
	otel.SetMeterProvider(p.MeterProvider)
	otel.SetTextMapPropagator(p.Propagator)
	return p.Shutdown, nil
}

func (c Config) withDefaults() Config {
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
	if c.ServiceVersion == "" {
		c.ServiceVersion = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			c.ServiceVersion = bi.Main.Version
		}
	}
	if c.InstanceID == "" {
		c.InstanceID, _ = os.Hostname()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.SampleRatio == 0:
		c.SampleRatio = 1
	case c.SampleRatio < 0:
		c.SampleRatio = 0
	}
	if c.OTLPProtocol == "" {
		c.OTLPProtocol = firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
		if c.OTLPProtocol == "" {
			c.OTLPProtocol = ProtocolHTTP
		}
	}
	return c
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// goRuntimeMetrics are the Go collector's runtime/metrics series, left
// out: the OTel runtime instrumentation exports the same quantities.
var goRuntimeMetrics = regexp.MustCompile(`.*`)

func (p *Providers) startMetrics(res *resource.Resource) error {
	exp, err := otelprom.New(otelprom.WithRegisterer(p.Registry), otelprom.WithoutScopeInfo(),
		otelprom.WithProducer(runtime.NewProducer()))
	if err != nil {
		return fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	seconds := sdkmetric.NewView(
		sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: SecondsBuckets}})
	p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp), sdkmetric.WithView(seconds))
	p.MeterProvider = p.mp
	if err := runtime.Start(runtime.WithMeterProvider(p.mp)); err != nil {
		return fmt.Errorf("telemetry: runtime metrics: %w", err)
	}
	for _, c := range []prometheus.Collector{
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(collectors.WithGoCollectorMemStatsMetricsDisabled(),
			collectors.WithoutGoCollectorRuntimeMetrics(goRuntimeMetrics)),
	} {
		if err := p.Registry.Register(c); err != nil {
			return fmt.Errorf("telemetry: register collector: %w (the Registry must be one this Providers alone fills)", err)
		}
	}
	return nil
}
