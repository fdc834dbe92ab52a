package bus

import "context"

// Handler handles signals delivered by a subscription.
//
// Each subscription calls its handler from one goroutine, one signal at a
// time, in queue order, so a handler needs no locking for state of its own
// subscription. A returned error makes the subscription retry the signal
// per its RetryPolicy (wrap it with Permanent to skip the retries); a panic
// is recovered, logged with its stack and counted as a failed attempt. The
// ctx is cancelled when Close gives up waiting; a handler that blocks should
// watch it. The signal's Extensions and Data are shared: do not modify them.
type Handler interface {
	Handle(ctx context.Context, s Signal) error
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, s Signal) error

// Handle calls f(ctx, s).
func (f HandlerFunc) Handle(ctx context.Context, s Signal) error { return f(ctx, s) }

// Middleware wraps a Handler: dispatch-side middleware runs around every
// handler call (every attempt) of every subscription of the bus.
type Middleware func(Handler) Handler

// PublishFunc routes a batch of signals. Publish-side middleware receives
// the next PublishFunc and returns its own.
type PublishFunc func(ctx context.Context, signals []Signal) error

// PublishMiddleware wraps the publish path before routing. It may enrich the
// batch (modify the signals, which are the bus's own copies), reject it
// (return an error without calling next: Publish returns that error) or
// drop it (return nil without calling next).
type PublishMiddleware func(next PublishFunc) PublishFunc
