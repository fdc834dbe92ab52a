package loadtest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/loadtest"
)

// A run in miniature: one publisher, two subscribers, a publish that
// times out (info) but is delivered anyway (recovered), after which the
// publisher goes on as a new identity, and a subscriber that misses an
// acked signal (lost).
func Example() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := 0
	clock := func() time.Time { tick++; return start.Add(time.Duration(tick) * time.Millisecond) }
	h := loadtest.NewHistory(loadtest.WithClock(clock))
	billing, _ := h.Subscriber("billing", "order.paid")
	audit, _ := h.Subscriber("audit", "order.**")

	pub := h.Publisher("shop")
	ok := func(context.Context, ...bus.Signal) error { return nil }
	paid := bus.Signal{ID: "1", Type: "order.paid"}
	created := bus.Signal{ID: "2", Type: "order.created"}
	late := bus.Signal{ID: "3", Type: "order.paid"}
	_ = pub.Publish(context.Background(), paid, ok)
	_ = pub.Publish(context.Background(), created, ok)
	pub = pub.Attempt(&late).Info(context.DeadlineExceeded) // unknown: go on as shop/2
	fmt.Println(pub.Name())

	billing.Deliver(paid)
	billing.Deliver(late)
	audit.Deliver(paid)
	audit.Deliver(late) // created never reaches audit

	v := h.Check()
	fmt.Println(v.OK())
	fmt.Println(v)
	fmt.Println(v.Subscribers[1].LostExamples)
	// Output:
	// shop/2
	// false
	// published 3 (acked 2, failed 0, info 1, pending 0); delivered billing=2 audit=2; lost 1, duplicated 0, reordered 0, unexpected 0, recovered 1; lost prefix 0 middle 1 postfix 0, on node 0, in faults 0; latency p50 5.01ms p99 8ms max 8ms
	// [shop#2 2]
}
