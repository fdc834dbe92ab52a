package dispatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/signalbus/signalbus/bus"
)

// Forward returns a Handler that publishes each signal into target with the
// handler's ctx. The signal keeps its id, time and every attribute; only its
// trace context is replaced: the handler's ctx carries the span of the
// delivery, so target's "send" span is its child and the trace continues
// across the two buses.
//
// An error from target.Publish is returned wrapped. One that no retry can
// fix — the signal is invalid for target (its WithMaxDataSize is smaller,
// say) or target is closed — is marked bus.Permanent. With target's Block
// overflow policy, Forward waits for room until the handler's ctx ends.
//
// Forwarding into the bus the signal came from, with a pattern that matches
// it again, loops forever. A nil target panics.
func Forward(target *bus.Bus) bus.Handler {
	if target == nil {
		panic("dispatch: Forward: nil target bus")
	}
	return bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		err := target.Publish(ctx, s)
		if err == nil {
			return nil
		}
		err = fmt.Errorf("dispatch: forward signal %s to bus %q: %w", s.ID, target.Name(), err)
		if errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, bus.ErrClosed) {
			return bus.Permanent(err)
		}
		return err
	})
}
