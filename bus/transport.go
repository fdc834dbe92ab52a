package bus

import (
	"context"
	"fmt"
)

// Transport carries published signals between processes. A bus given one
// (WithTransport) does not route what it publishes: Publish validates the
// batch, fills it, starts the send span, writes the trace context into each
// signal, and hands it to Send; the transport delivers it to every process,
// this one included, whose receiving side calls Dispatch. Publish returns
// Send's error. Package cluster provides the NATS transport.
type Transport interface {
	// The slice and the signals are Send's to keep (a transport may queue
	// them and return, as the cluster's PublishAsync does): the bus makes
	// a new slice for each call.
	Send(ctx context.Context, signals []Signal) error
}

// WithTransport makes the bus publish through t (see Transport).
func WithTransport(t Transport) Option {
	return func(c *config) error {
		if t == nil {
			return fmt.Errorf("%w: WithTransport: nil transport", ErrInvalidOption)
		}
		c.transport = t
		return nil
	}
}

// SubscriptionTransport is a Transport that can take subscriptions over.
// Dispatch gives every signal to every matching subscription of this
// process; some subscriptions need more than that: a group (WithGroup)
// shares its work with the members of the same group in other processes,
// and a named subscription may keep its position across restarts. A
// transport that implements SubscriptionTransport is asked, by Subscribe,
// whether it feeds the subscription itself; if it does, Dispatch skips the
// subscription and the transport delivers to it through a Feed.
type SubscriptionTransport interface {
	Transport
	// Attach is called by Subscribe before the subscription receives
	// anything. A nil Detach (and nil error) leaves the subscription to
	// Dispatch. Otherwise the transport feeds it through feed until
	// detach is called: by Subscription.Close, or by Bus.Close before it
	// drains the queues. Detach must stop feeding before it returns and
	// may be called more than once. An error fails Subscribe.
	Attach(sub SubscriptionInfo, feed Feed) (Detach, error)
}

// SubscriptionInfo is what a SubscriptionTransport learns of a
// subscription.
type SubscriptionInfo struct {
	Pattern string
	Name    string // the subscription's name (its pattern unless named)
	Named   bool   // the name was given (WithSubscriptionName)
	Group   string // WithGroup's name, or ""
}

// Feed queues a signal for one subscription, applying its overflow policy
// (Block waits within ctx). The signal is validated and its trace context
// read as Dispatch does. Feed returns an error, and never calls done, when
// it did not queue the signal: the subscription or bus closed (the error
// wraps ErrClosed), the signal is invalid (ErrInvalidSignal), or the
// policy refused it or ctx ended (ErrQueueFull). Once Feed returned nil,
// done (when not nil) is called exactly once, from the subscription's
// worker or a later Feed: with nil once the handler succeeded or the
// signal went to the dead-letter handler; with an error wrapping ErrClosed
// when the bus closed before handling it; with one wrapping ErrQueueFull
// when the DropOldest policy dropped it. A transport acknowledges on nil
// and redelivers what was not handled.
type Feed func(ctx context.Context, s Signal, done func(error)) error

// Detach stops a SubscriptionTransport feeding a subscription.
type Detach func(ctx context.Context) error
