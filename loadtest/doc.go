// Package loadtest records what a run of the bus did and judges it: the
// history recorder and checker that `signalbus demo`, `signalbus load` and
// the end-to-end scenarios share.
//
// A History records every publish attempt (its publisher, a sequence
// number per publisher, its type, time and outcome) and every delivery
// (its subscriber and time). Check returns a Verdict in the categories of
// Jepsen's queue checker, plus order:
//
//   - lost: acked, never delivered to a subscriber that wants it;
//   - duplicated: delivered more than once to one subscriber;
//   - reordered: delivered to a subscriber after a later signal of the
//     same publisher (per-publisher FIFO is the bus's order guarantee);
//   - unexpected: delivered, but never attempted or not wanted;
//   - recovered: delivered although its publish failed or had no answer
//     (indeterminate), which is no error.
//
// Only an acked publish is owed: a publisher that times out does not know
// whether its signal was stored, so the checker does not count it lost.
// Latency (attempt → first delivery, per subscriber) goes into a
// Histogram with percentiles accurate to 0.8 %.
//
// The package knows the bus and nothing of NATS, so the same code judges
// an in-process run and one spread over processes or containers:
//
//	h := loadtest.NewHistory()
//	sub, _ := h.Subscriber("n1", "order.**")
//	node.Bus().Subscribe("order.**", sub)          // a Subscriber is a bus.Handler
//	pub := h.Publisher("n1")
//	sig, _ := bus.NewSignal("order.created", "/shop", order)
//	pub.Publish(ctx, sig, node.Bus().Publish)      // attempt, publish, ack or fail
//	...
//	h.AwaitDelivered(ctx, 0)                        // every acked signal delivered, or ctx's end
//	v := h.Check()
//	fmt.Println(v)                                  // published …; lost 0, duplicated 0, reordered 0 …
package loadtest
