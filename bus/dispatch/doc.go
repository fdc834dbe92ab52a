// Package dispatch holds dispatch adapters: ready-made bus.Handlers that
// carry a signal out of a subscription to somewhere else — a Go channel, a
// log, an HTTP endpoint, another bus.
//
// The adapters do one delivery attempt each and report the outcome as an
// error, following the bus.Handler contract; they do not retry, queue or
// buffer on their own. Retries with backoff, dead letters, ordering and
// tracing come from the subscription that calls them (bus.WithRetry,
// bus.WithDeadLetter), so every adapter behaves the same way under failure
// and none hides a second retry loop inside the first. An adapter marks a
// failure that no retry can fix with bus.Permanent, which sends the signal
// straight to the dead-letter handler.
//
//   - Channel sends each signal on a Go channel.
//   - Logger writes one log line per signal.
//   - Webhook POSTs each signal as a CloudEvents structured-mode JSON
//     document, optionally signed (HMAC-SHA256; VerifySignature checks it on
//     the receiving end) and guarded by a circuit breaker.
//   - Forward publishes each signal into another Bus, continuing its trace.
//
// Usage:
//
//	hook, err := dispatch.NewWebhook("https://example.com/hooks/orders",
//		dispatch.WithSecret(secret),
//		dispatch.WithTimeout(5*time.Second),
//		dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{
//			FailureThreshold: 5, OpenFor: 30 * time.Second, HalfOpenMax: 1,
//		}))
//	if err != nil {
//		return err
//	}
//	_, err = b.Subscribe("order.**", hook,
//		bus.WithRetry(bus.RetryPolicy{MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond,
//			MaxBackoff: 5 * time.Second, Multiplier: 2, Jitter: 0.2}),
//		bus.WithDeadLetter(dispatch.Logger(logger, slog.LevelError)))
package dispatch
