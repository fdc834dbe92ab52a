package bus_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// Example is the README's embedding example, kept identical to it by
// TestReadmeExample: a bus, a pattern subscription with retries, a publish,
// and a Close that drains.
func Example() {
	ctx := context.Background()
	b, err := bus.New(bus.WithName("shop"))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close(ctx) // drains: every queued signal is handled first

	_, err = b.Subscribe("order.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		var order struct{ ID string }
		if err := s.DecodeData(&order); err != nil {
			return bus.Permanent(err) // no retry can fix bad data
		}
		fmt.Printf("%s: order %s\n", s.Type, order.ID)
		return nil // an error would be retried, then dead-lettered
	}), bus.WithRetry(bus.DefaultRetryPolicy))
	if err != nil {
		log.Fatal(err)
	}

	sig, _ := bus.NewSignal("order.created", "/shop/checkout", map[string]string{"ID": "A-1001"})
	if err := b.Publish(ctx, sig); err != nil {
		log.Fatal(err)
	}
	// Output: order.created: order A-1001
}

// ExampleBus_Subscribe_deadLetter shows where a signal goes when its handler
// keeps failing.
func ExampleBus_Subscribe_deadLetter() {
	ctx := context.Background()
	b, _ := bus.New()
	_, _ = b.Subscribe("payment.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		return fmt.Errorf("gateway down")
	}),
		bus.WithRetry(bus.RetryPolicy{MaxAttempts: 3, Multiplier: 2}),
		bus.WithDeadLetter(bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			dl, _ := bus.DeadLetterFromContext(ctx)
			fmt.Printf("dead letter: %s after %d attempts: %v\n", s.Type, dl.Attempts, dl.Err)
			return nil
		})))
	sig, _ := bus.NewSignal("payment.captured", "/pay", nil)
	_ = b.Publish(ctx, sig)
	_ = b.Close(ctx)
	// Output: dead letter: payment.captured after 3 attempts: gateway down
}

// ExampleBus_Replay reads back the history.
func ExampleBus_Replay() {
	ctx := context.Background()
	b, _ := bus.New(bus.WithHistory(100))
	for _, typ := range []string{"user.signed_up", "order.created", "user.deleted"} {
		sig, _ := bus.NewSignal(typ, "/app", nil)
		_ = b.Publish(ctx, sig)
	}
	_ = b.Replay(ctx, "user.**", time.Time{}, bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		fmt.Println(s.Type)
		return nil
	}))
	_ = b.Close(ctx)
	// Output:
	// user.signed_up
	// user.deleted
}
