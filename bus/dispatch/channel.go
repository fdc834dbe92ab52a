package dispatch

import (
	"context"
	"fmt"

	"github.com/signalbus/signalbus/bus"
)

// Channel returns a Handler that sends each signal on ch. It blocks until
// the signal is received (or buffered) or until the handler's ctx ends; then
// it returns an error wrapping ctx.Err(), so a signal is never dropped
// silently. A signal whose ctx has already ended is not sent.
//
// The receiver gets the signal as delivered: its Data and Extensions are
// shared with other subscriptions and must be treated as read-only (use
// Signal.Clone to get a copy to modify). A nil ch panics.
func Channel(ch chan<- bus.Signal) bus.Handler {
	if ch == nil {
		// A send on a nil channel blocks forever: every signal would wait
		// for the handler's ctx and fail. Say so at once instead.
		panic("dispatch: Channel: nil channel")
	}
	return bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		// select picks at random among ready cases: check ctx first so that
		// an ended ctx never delivers, even when ch has room.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dispatch: channel: signal %s: %w", s.ID, err)
		}
		select {
		case ch <- s:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("dispatch: channel: signal %s: %w", s.ID, ctx.Err())
		}
	})
}
