package loadtest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/loadtest"
)

// A run in miniature: one publisher, two subscribers, a publish that
// times out but is delivered anyway (recovered), and a subscriber that
// misses an acked signal (lost).
func Example() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := 0
	clock := func() time.Time { tick++; return start.Add(time.Duration(tick) * time.Millisecond) }
	h := loadtest.NewHistory(loadtest.WithClock(clock))
	billing, _ := h.Subscriber("billing", "order.paid")
	audit, _ := h.Subscriber("audit", "order.**")

	pub := h.Publisher("shop")
	ok := func(context.Context, ...bus.Signal) error { return nil }
	timeout := func(context.Context, ...bus.Signal) error { return errors.New("timeout") }
	paid := bus.Signal{ID: "1", Type: "order.paid"}
	created := bus.Signal{ID: "2", Type: "order.created"}
	late := bus.Signal{ID: "3", Type: "order.paid"}
	_ = pub.Publish(context.Background(), paid, ok)
	_ = pub.Publish(context.Background(), created, ok)
	_ = pub.Publish(context.Background(), late, timeout)

	billing.Deliver(paid)
	billing.Deliver(late)
	audit.Deliver(paid)
	audit.Deliver(late) // created never reaches audit

	v := h.Check()
	fmt.Println(v.OK())
	fmt.Println(v)
	fmt.Println(v.Subscribers[1].LostExamples)
	// Output:
	// false
	// published 3 (acked 2, failed 1, pending 0); delivered billing=2 audit=2; lost 1, duplicated 0, reordered 0, unexpected 0, recovered 1; latency p50 3.01ms p99 5ms max 5ms
	// [shop#2 2]
}
