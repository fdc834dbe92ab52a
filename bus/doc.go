// Package bus is an in-process event bus whose signals are CloudEvents 1.0
// events, routed by type patterns to subscriptions that each have their own
// bounded queue and worker.
//
// Publish a signal and every subscription whose pattern matches its type
// receives it:
//
//	b, _ := bus.New()
//	defer b.Close(ctx)
//	b.Subscribe("order.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
//		return ship(ctx, s)
//	}), bus.WithRetry(bus.DefaultRetryPolicy), bus.WithDeadLetter(parked))
//	sig, _ := bus.NewSignal("order.created", "/shop", order)
//	b.Publish(ctx, sig)
//
// # Guarantees
//
// Per-publisher FIFO per subscription: the signals one goroutine publishes
// reach each subscription in publish order, retries included — a signal
// being retried holds back the ones behind it in that subscription and is
// never overtaken. There is no order across publishers. A slow handler
// delays only its own subscription. Publish either routes a whole valid
// batch or, if any signal is invalid, none of it. Close drains every queue
// before it returns. What cannot be delivered is never dropped silently: a
// full queue follows the subscription's Overflow policy (Block waits, Reject
// returns ErrQueueFull, DropOldest counts and logs), a handler that fails
// every attempt hands the signal to the dead-letter handler.
//
// # Patterns
//
// Types are dot-separated segments of [A-Za-z0-9_-]+. A pattern segment is
// a literal, "*" (exactly one segment) or "**" (zero or more): "order.*",
// "order.**" (which matches "order" itself), "audit.**.failed", "**".
// Routing goes through a segment trie and a per-type cache, so its cost does
// not grow with the number of subscriptions that do not match.
//
// # Observability
//
// The bus uses the OpenTelemetry API only. By default it takes the global
// tracer and meter providers, so an application that installs an SDK gets
// a "send <type>" producer span per Publish, a "process <type>" consumer
// span per handler run (a child of the producer's context, which also
// travels in the signal as the traceparent and tracestate extensions), and
// the metrics listed in DESIGN.md; with no SDK installed it starts no spans
// and reads no clocks for metrics. A subscription's per-signal measurements
// (process duration, delivery latency, consumed count) are recorded on a
// goroutine of its own, off the delivery path, at most 100 ms after the
// runs they measure (plus a run in progress); they are all recorded by the
// time the subscription's Done is closed, so after Close.
//
// Dispatch adapters (Go channel, slog, HTTP webhook, another bus) are in
// package dispatch.
package bus
