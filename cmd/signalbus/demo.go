package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/signalbus/signalbus/bus"
)

const (
	paceInterval = 10 * time.Millisecond // publish a batch this often
	closeTimeout = 3 * time.Second       // for Close to drain the queues
	historySize  = 1000                  // signals the bus keeps for Replay
	handlerLimit = 250 * time.Millisecond
	shownWarns   = 3 // warnings written to stderr before the rest are only counted
)

// shippingRetry is the retry policy of the flaky subscription.
var shippingRetry = bus.RetryPolicy{
	MaxAttempts:    3,
	InitialBackoff: time.Millisecond,
	MaxBackoff:     10 * time.Millisecond,
	Multiplier:     2,
	Jitter:         0.2,
}

// DemoCommand is 'signalbus demo': the cluster demo (ClusterDemoCommand)
// unless its arguments ask for -local, and then an in-process bus with a
// stream of order signals that shows, from the bus's own metrics and
// spans, what happened to them.
type DemoCommand struct {
	Stdout io.Writer // the report
	Stderr io.Writer // usage and the first few warnings
	// LookupEnv reads the flags' SIGNALBUS_* variables; nil is
	// os.LookupEnv.
	LookupEnv LookupEnv

	Rate     int           // signals published per second
	Duration time.Duration // how long to publish
	Seed     uint64        // seeds the order stream and the flaky handler
	Quiet    bool          // no tracing, no spans printed
}

const demoUsage = `usage: signalbus demo --local [flags]

Publishes order signals (order.created, order.paid, order.shipped,
order.cancelled; source /demo/shop) through an in-process bus to four
subscriptions:

	analytics  order.*        counts signals by type
	billing    order.paid     books revenue
	audit      order.**       sees everything; replays cancelled orders
	                          from the bus history at the end
	shipping   order.shipped  a flaky carrier: fails ~30% of first
	                          attempts and every poison order; retries
	                          3 times with backoff, then dead-letters

Every second it prints a line read from the bus's OpenTelemetry metrics;
at the end the totals, dead letters, the replay and a few spans.`

// Run runs the cluster demo (ClusterDemoCommand) unless args ask for
// -local; then it parses the flags and runs this demo. It returns once the bus has
// drained and the report is written, about -duration after it starts; an
// interrupt (ctx ending) stops the publishing early.
func (c *DemoCommand) Run(ctx context.Context, args []string) error {
	if !isLocalDemo(args, c.LookupEnv) {
		return (&ClusterDemoCommand{Stdout: c.Stdout, Stderr: c.Stderr, LookupEnv: c.LookupEnv}).Run(ctx, args)
	}
	err := parseDemoFlags(args, c.Stderr, c.LookupEnv, demoUsage, true, func(fs *flag.FlagSet) {
		fs.IntVar(&c.Rate, "rate", 2000, "signals to publish per second")
		fs.DurationVar(&c.Duration, "duration", 5*time.Second, "how long to publish")
		fs.Uint64Var(&c.Seed, "seed", 1, "seed of the order stream and of the flaky handler's failures")
		fs.BoolVar(&c.Quiet, "quiet", false, "trace nothing and print no spans")
	})
	if err == nil {
		err = checkPace(c.Rate, 1_000_000, c.Duration)
	}
	if err != nil {
		return err
	}
	return c.run(ctx)
}

// demo is the state of one run.
type demo struct {
	cmd    *DemoCommand
	out    io.Writer
	reader *sdkmetric.ManualReader
	spans  *spanKeeper // nil with -quiet
	warns  *sampledHandler
	bus    *bus.Bus

	analytics analytics
	billing   billing
	audit     audit
	shipping  *shipping
	dead      deadLetters

	start time.Time
}

func (c *DemoCommand) run(ctx context.Context) (err error) {
	d := &demo{cmd: c, out: c.Stdout, shipping: newShipping(c.Seed)}

	// The SDK stays inside the command: the providers go to the bus as
	// options and the OTel globals are left alone.
	d.reader = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(d.reader))
	var tp trace.TracerProvider = tracenoop.NewTracerProvider()
	var sdkTP *sdktrace.TracerProvider
	if !c.Quiet {
		d.spans = newSpanKeeper()
		sdkTP = sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithSpanProcessor(d.spans),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "signalbus-demo"))),
		)
		tp = sdkTP
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if sdkTP != nil {
			err = errors.Join(err, sdkTP.Shutdown(sctx))
		}
		err = errors.Join(err, mp.Shutdown(sctx))
	}()

	d.warns = newWarnHandler(c.Stderr, slog.LevelWarn)
	logger := slog.New(d.warns)

	d.bus, err = bus.New(
		bus.WithName("demo"),
		bus.WithTracerProvider(tp),
		bus.WithMeterProvider(mp),
		bus.WithLogger(logger),
		bus.WithMiddleware(bus.Logging(logger), bus.Timeout(handlerLimit)),
		bus.WithHistory(historySize),
	)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		// Stops the workers when Subscribe failed; a second Close is a
		// no-op otherwise.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		d.bus.Close(cctx)
	}()
	if err := d.subscribe(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	fmt.Fprintf(d.out, "signalbus demo: %d signals/s for %v (seed %d); a line per second from the bus's metrics\n",
		c.Rate, c.Duration, c.Seed)
	d.start = time.Now()
	streamErr := d.stream(ctx)
	elapsed := time.Since(d.start)

	// Close drains the queues, retries included. After an interrupt ctx
	// has ended: what follows runs on a ctx of its own.
	ctx = context.WithoutCancel(ctx)
	cctx, cancel := context.WithTimeout(ctx, closeTimeout)
	defer cancel()
	closeStart := time.Now()
	closeErr := d.bus.Close(cctx)
	drained := time.Since(closeStart)
	if closeErr != nil {
		fmt.Fprintf(d.out, "%v: reporting what was delivered\n", closeErr)
	}
	err = errors.Join(streamErr, closeErr)

	if rerr := d.report(ctx, elapsed, drained); rerr != nil {
		return errors.Join(err, rerr)
	}
	if n := d.warns.suppressed(); n > 0 {
		fmt.Fprintf(c.Stderr, "(%d more warnings not shown: bus.Logging writes one per failed attempt)\n", n)
	}
	if d.spans != nil {
		err = errors.Join(err, printSpans(ctx, d.out, d.spans))
	}
	return err
}

func (d *demo) subscribe() error {
	subs := []struct {
		pattern, name string
		h             bus.HandlerFunc
		opts          []bus.SubscribeOption
	}{
		{"order.*", "analytics", d.analytics.handle, nil},
		{"order.paid", "billing", d.billing.handle, nil},
		{"order.**", "audit", d.audit.handle, nil},
		{"order.shipped", "shipping", d.shipping.handle, []bus.SubscribeOption{
			bus.WithRetry(shippingRetry),
			bus.WithDeadLetter(bus.HandlerFunc(d.dead.handle)),
		}},
	}
	for _, s := range subs {
		opts := append([]bus.SubscribeOption{bus.WithSubscriptionName(s.name)}, s.opts...)
		if _, err := d.bus.Subscribe(s.pattern, s.h, opts...); err != nil {
			return err
		}
	}
	return nil
}

// stream publishes the order stream for the command's duration, or until
// ctx ends, while a second goroutine prints a line from the metrics every
// second: Publish blocks when a subscription falls behind (the Block
// policy), and the live lines must keep coming when it does.
func (d *demo) stream(ctx context.Context) error {
	pctx, cancel := context.WithDeadline(ctx, d.start.Add(d.cmd.Duration))
	defer cancel()
	var (
		wg      sync.WaitGroup
		liveErr error
	)
	wg.Go(func() { liveErr = d.live(pctx) })
	pubErr := d.publish(pctx)
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		fmt.Fprintf(d.out, "interrupted at t=%v; draining the bus\n", time.Since(d.start).Round(10*time.Millisecond))
	}
	return errors.Join(pubErr, liveErr)
}

// publish publishes the signals due by now every paceInterval, until ctx
// ends. It makes one Publish call per run of signals of one type, which
// keeps their order and gives each send span the name of its type.
func (d *demo) publish(ctx context.Context) error {
	pace := time.NewTicker(paceInterval)
	defer pace.Stop()
	shop := newShop(d.cmd.Seed)
	maxBatch := max(d.cmd.Rate/10, 1) // catch up at most 100 ms at once
	var (
		generated int64
		batch     []bus.Signal
		err       error
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-pace.C:
			due := int64(float64(d.cmd.Rate)*now.Sub(d.start).Seconds()) - generated
			n := int(min(due, int64(maxBatch)))
			if n <= 0 {
				continue
			}
			if batch, err = shop.signals(batch[:0], n); err != nil {
				return err
			}
			generated += int64(n)
			if err := publishRuns(ctx, d.bus, batch); err != nil {
				if ctx.Err() != nil {
					return nil // the end came while Publish waited for room
				}
				return err
			}
		}
	}
}

// live prints a line every second until ctx ends, and a last one then
// unless the ticker has just printed it.
func (d *demo) live(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		last   *busMetrics
		lastAt time.Duration
	)
	line := func(at, label time.Duration) error {
		m, err := collectBusMetrics(context.WithoutCancel(ctx), d.reader)
		if err != nil {
			return err
		}
		// The counts are totals so far; the p99 covers the signals
		// delivered since the previous line.
		p99, ok := quantile(0.99, m.latencyBounds, m.latencySince(last))
		fmt.Fprintf(d.out, "t=%-5v published=%d delivered=%d retries=%d deadletters=%d p99_delivery=%s queue_max=%d\n",
			label, m.published(), m.delivered(), m.retries, m.deadLetters, formatSeconds(p99, ok), m.queueMax)
		last, lastAt = &m, at
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			if at := time.Since(d.start); at-lastAt > 100*time.Millisecond {
				return line(at, at.Round(100*time.Millisecond))
			}
			return nil
		case now := <-tick.C:
			at := now.Sub(d.start)
			if err := line(at, at.Round(time.Second)); err != nil {
				return err
			}
		}
	}
}

// publishRuns publishes batch with one Publish call per run of consecutive
// signals of the same type.
func publishRuns(ctx context.Context, b *bus.Bus, batch []bus.Signal) error {
	for i := 0; i < len(batch); {
		j := i + 1
		for j < len(batch) && batch[j].Type == batch[i].Type {
			j++
		}
		if err := b.Publish(ctx, batch[i:j]...); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// report prints the totals once the bus has drained: counts from the
// metrics, what the handlers saw, the dead letters and the replay.
func (d *demo) report(ctx context.Context, elapsed, drained time.Duration) error {
	m, err := collectBusMetrics(ctx, d.reader)
	if err != nil {
		return err
	}
	w := d.out
	fmt.Fprintf(w, "\ntotals after %v of publishing, drained by Close in %v:\n",
		elapsed.Round(10*time.Millisecond), drained.Round(10*time.Microsecond))
	var byType []string
	for _, t := range orderTypes {
		byType = append(byType, fmt.Sprintf("%s=%d", t, m.sentByType[t]))
	}
	fmt.Fprintf(w, "  published     %7d  %s\n", m.published(), strings.Join(byType, " "))
	p99, ok := quantile(0.99, m.latencyBounds, m.latencyBuckets)
	p50, _ := quantile(0.50, m.latencyBounds, m.latencyBuckets)
	fmt.Fprintf(w, "  delivered     %7d  (p50 %s, p99 %s from publish to handler)\n",
		m.delivered(), formatSeconds(p50, ok), formatSeconds(p99, ok))

	counted := d.analytics.counts()
	var seen []string
	for _, t := range orderTypes {
		seen = append(seen, fmt.Sprintf("%s=%d", strings.TrimPrefix(t, "order."), counted[t]))
	}
	paid, revenue := d.billing.revenue()
	dlTotal, dlPoison, examples := d.dead.report()
	fmt.Fprintf(w, "    analytics   %7d  order.*        counted %s\n", m.consumedBySub["analytics"], strings.Join(seen, " "))
	fmt.Fprintf(w, "    billing     %7d  order.paid     booked %d payments, %s\n", m.consumedBySub["billing"], paid, revenue)
	fmt.Fprintf(w, "    audit       %7d  order.**       saw %d\n", m.consumedBySub["audit"], d.audit.count())
	fmt.Fprintf(w, "    shipping    %7d  order.shipped  shipped %d, dead-lettered %d\n",
		m.consumedBySub["shipping"], d.shipping.count(), dlTotal)
	fmt.Fprintf(w, "  retries       %7d\n", m.retries)
	fmt.Fprintf(w, "  dead letters  %7d  (%d poison orders, %d failed %d attempts)\n",
		m.deadLetters, dlPoison, dlTotal-dlPoison, shippingRetry.MaxAttempts)
	for _, e := range examples {
		fmt.Fprintf(w, "    %s  signal %s  attempts=%d  %v\n", e.orderID, e.signalID, e.attempts, e.err)
	}
	return d.replay(ctx)
}

// replay reads the cancelled orders back from the bus history, as an
// auditor checking them after the fact would, and prints the last few.
func (d *demo) replay(ctx context.Context) error {
	var (
		n    int
		last []order
	)
	err := d.bus.Replay(ctx, typeCancelled, time.Time{}, bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		o, err := decodeOrder(s)
		if err != nil {
			return err
		}
		n++
		last = append(last, o)
		if len(last) > replayShown {
			last = last[1:]
		}
		return nil
	}))
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	fmt.Fprintf(d.out, "  replayed      %7d  cancelled orders from the bus history (last %d signals); the latest:\n", n, historySize)
	for _, o := range last {
		fmt.Fprintf(d.out, "    %s  %-8s %9.2f %s\n", o.ID, o.Customer, o.Amount, o.Currency)
	}
	return nil
}

// sampledHandler passes the first limit records to its handler and only
// counts the rest. The demo fails on purpose hundreds of times a second, and
// bus.Logging writes a warning for every failed attempt.
type sampledHandler struct {
	h     slog.Handler
	limit int64
	n     *atomic.Int64 // shared with the handlers WithAttrs and WithGroup make
}

func newSampledHandler(h slog.Handler, limit int64) *sampledHandler {
	return &sampledHandler{h: h, limit: limit, n: new(atomic.Int64)}
}

// newWarnHandler returns the demos' log handler: the first shownWarns
// records at level or above go to w as text without their time, the rest
// are only counted.
func newWarnHandler(w io.Writer, level slog.Level) *sampledHandler {
	return newSampledHandler(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}), shownWarns)
}

func (s *sampledHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.h.Enabled(ctx, l) }

func (s *sampledHandler) Handle(ctx context.Context, r slog.Record) error {
	if s.n.Add(1) > s.limit {
		return nil
	}
	return s.h.Handle(ctx, r)
}

func (s *sampledHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sampledHandler{h: s.h.WithAttrs(as), limit: s.limit, n: s.n}
}

func (s *sampledHandler) WithGroup(name string) slog.Handler {
	return &sampledHandler{h: s.h.WithGroup(name), limit: s.limit, n: s.n}
}

// suppressed returns how many records were counted but not written.
func (s *sampledHandler) suppressed() int64 { return max(s.n.Load()-s.limit, 0) }
