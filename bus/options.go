package bus

import (
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Option configures a Bus in New.
type Option func(*config) error

type config struct {
	name           string
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	middleware     []Middleware
	publishMW      []PublishMiddleware
	history        int
	logger         *slog.Logger
	maxDataSize    int
	transport      Transport
}

func defaultConfig() config {
	return config{
		name:           "default",
		tracerProvider: otel.GetTracerProvider(),
		meterProvider:  otel.GetMeterProvider(),
		// The W3C propagator, not the global one: the global default is a
		// no-op until the application sets one, and the traceparent and
		// tracestate extensions are W3C trace context by definition
		// (CloudEvents distributed tracing extension).
		propagator:  propagation.TraceContext{},
		logger:      slog.Default(),
		maxDataSize: DefaultMaxDataSize,
	}
}

// WithName names the bus in logs and in the signalbus.bus attribute of its
// metrics, to tell apart several buses in one process. Default "default".
func WithName(name string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("%w: WithName: empty name", ErrInvalidOption)
		}
		c.name = name
		return nil
	}
}

// WithTracerProvider sets where spans go. Default: the global provider
// (otel.GetTracerProvider), so an application that installs an SDK gets
// traces with no bus configuration. A nil provider is ignored.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp != nil {
			c.tracerProvider = tp
		}
		return nil
	}
}

// WithMeterProvider sets where metrics go. Default: the global provider
// (otel.GetMeterProvider). A nil provider is ignored.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp != nil {
			c.meterProvider = mp
		}
		return nil
	}
}

// WithPropagator sets how the producer's trace context is written into the
// signal's extensions. Default: W3C trace context (traceparent, tracestate).
// A nil propagator is ignored.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		if p != nil {
			c.propagator = p
		}
		return nil
	}
}

// WithMiddleware adds dispatch-side middleware, wrapped around every
// handler of every subscription. The first one given is the outermost.
func WithMiddleware(mw ...Middleware) Option {
	return func(c *config) error {
		for i, m := range mw {
			if m == nil {
				return fmt.Errorf("%w: WithMiddleware: middleware %d is nil", ErrInvalidOption, i)
			}
		}
		c.middleware = append(c.middleware, mw...)
		return nil
	}
}

// WithPublishMiddleware adds publish-side middleware, run on every batch
// before it is routed. The first one given is the outermost.
func WithPublishMiddleware(mw ...PublishMiddleware) Option {
	return func(c *config) error {
		for i, m := range mw {
			if m == nil {
				return fmt.Errorf("%w: WithPublishMiddleware: middleware %d is nil", ErrInvalidOption, i)
			}
		}
		c.publishMW = append(c.publishMW, mw...)
		return nil
	}
}

// WithHistory keeps the last n published signals in memory for Replay.
// Default 0: no history.
func WithHistory(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: WithHistory: negative size %d", ErrInvalidOption, n)
		}
		c.history = n
		return nil
	}
}

// WithLogger sets the logger of the bus. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithMaxDataSize sets the largest Data, in bytes, that Publish accepts.
// Default DefaultMaxDataSize (1 MiB).
func WithMaxDataSize(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMaxDataSize: %d is not positive", ErrInvalidOption, n)
		}
		c.maxDataSize = n
		return nil
	}
}

// Overflow says what Publish does when a subscription's queue is full.
type Overflow int

const (
	// Block makes Publish wait for room, until its ctx ends (the default).
	// Back-pressure reaches the publisher; nothing is lost.
	Block Overflow = iota
	// DropOldest discards the oldest queued signal to make room. Each drop
	// is counted (signalbus.dispatch.dropped, reason queue_full) and logged.
	DropOldest
	// Reject makes Publish return an error wrapping ErrQueueFull for that
	// subscription; the signal is not queued for it.
	Reject
)

func (o Overflow) String() string {
	switch o {
	case Block:
		return "block"
	case DropOldest:
		return "drop_oldest"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("Overflow(%d)", int(o))
}

// RetryPolicy says how often, and how far apart, a failed handler is tried
// again before the signal goes to the dead-letter handler. The wait before
// attempt k+1 is InitialBackoff·Multiplier^(k-1), capped at MaxBackoff, then
// spread by ±Jitter (a fraction: 0.2 means ±20 %).
type RetryPolicy struct {
	MaxAttempts    int // attempts in all, the first included; 1 means no retry
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	Jitter         float64
}

// DefaultRetryPolicy is used by subscriptions without WithRetry: three
// attempts, 10 ms then 20 ms apart (±20 %).
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:    3,
	InitialBackoff: 10 * time.Millisecond,
	MaxBackoff:     time.Second,
	Multiplier:     2,
	Jitter:         0.2,
}

// NoRetry makes a single attempt.
var NoRetry = RetryPolicy{MaxAttempts: 1}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("%w: RetryPolicy.MaxAttempts %d is below 1", ErrInvalidOption, p.MaxAttempts)
	case p.InitialBackoff < 0:
		return fmt.Errorf("%w: RetryPolicy.InitialBackoff %v is negative", ErrInvalidOption, p.InitialBackoff)
	case p.MaxBackoff < 0:
		return fmt.Errorf("%w: RetryPolicy.MaxBackoff %v is negative", ErrInvalidOption, p.MaxBackoff)
	case p.MaxAttempts > 1 && p.Multiplier < 1:
		return fmt.Errorf("%w: RetryPolicy.Multiplier %v is below 1", ErrInvalidOption, p.Multiplier)
	case p.Jitter < 0 || p.Jitter > 1:
		return fmt.Errorf("%w: RetryPolicy.Jitter %v is outside [0, 1]", ErrInvalidOption, p.Jitter)
	}
	return nil
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subConfig) error

type subConfig struct {
	name       string
	named      bool // WithSubscriptionName was given
	group      string
	queueSize  int
	retry      RetryPolicy
	deadLetter Handler
	overflow   Overflow
}

// DefaultQueueSize is the queue capacity of a subscription without
// WithQueueSize.
const DefaultQueueSize = 1024

// WithQueueSize sets how many signals wait for the subscription's handler
// before the overflow policy applies. Default DefaultQueueSize.
func WithQueueSize(n int) SubscribeOption {
	return func(c *subConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: WithQueueSize: %d is below 1", ErrInvalidOption, n)
		}
		c.queueSize = n
		return nil
	}
}

// WithRetry sets the retry policy. Default DefaultRetryPolicy.
func WithRetry(p RetryPolicy) SubscribeOption {
	return func(c *subConfig) error {
		if err := p.validate(); err != nil {
			return err
		}
		c.retry = p
		return nil
	}
}

// WithDeadLetter sets the handler that receives a signal whose handler
// failed every attempt (or failed with a Permanent error). It runs on the
// subscription's worker, in order; DeadLetterFromContext gives it the last
// error and the attempt count. Without one, such signals are logged at error
// level and counted.
func WithDeadLetter(h Handler) SubscribeOption {
	return func(c *subConfig) error {
		if h == nil {
			return fmt.Errorf("%w: WithDeadLetter: nil handler", ErrInvalidOption)
		}
		c.deadLetter = h
		return nil
	}
}

// WithSubscriptionName names the subscription in logs, spans and metrics.
// Default: its pattern. Keep names few and stable: they are metric
// attributes. On a clustered bus (package cluster, durable mode) a name
// also makes the subscription durable: it keeps its position in the
// stream across a restart of its node.
func WithSubscriptionName(name string) SubscribeOption {
	return func(c *subConfig) error {
		if name == "" {
			return fmt.Errorf("%w: WithSubscriptionName: empty name", ErrInvalidOption)
		}
		c.name = name
		c.named = true
		return nil
	}
}

// WithOverflow sets the policy for a full queue. Default Block.
func WithOverflow(o Overflow) SubscribeOption {
	return func(c *subConfig) error {
		if o < Block || o > Reject {
			return fmt.Errorf("%w: WithOverflow: unknown policy %d", ErrInvalidOption, int(o))
		}
		c.overflow = o
		return nil
	}
}
