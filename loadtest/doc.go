// Package loadtest records what a run of the bus did and judges it: the
// history recorder and checker that `signalbus demo`, `signalbus load` and
// the end-to-end scenarios share.
//
// A History records every publish attempt (its publisher, a sequence
// number per publisher, its type, time and outcome), every delivery (its
// subscriber, node and time) and the windows in which a fault was
// injected. Outcomes are Jepsen's: ok (Acked), fail (Failed: the publish
// said it was not done) and info (Info: unknown, as after a timeout). A
// publisher is one identity of a Jepsen process: after an info it goes
// on as Publisher.Next ("n1" → "n1/2"), because the signal whose outcome
// is unknown may still land after the ones it publishes next.
//
// Check returns a Verdict in the categories of Jepsen's queue checker,
// plus order:
//
//   - attempted, acked, read (every delivery) and ok (read_ok: the
//     attempted signals read);
//   - lost: acked, never delivered to a subscriber that wants it; split
//     per publisher into prefix, middle and postfix, counted on node when
//     every other node got it (split brain), and in faults when the
//     publish overlapped a fault window;
//   - duplicated: delivered more than once to one subscriber;
//   - reordered: delivered to a subscriber after a later signal of the
//     same publisher (per-publisher FIFO is the bus's order guarantee);
//   - unexpected: delivered, but never attempted or not wanted;
//   - recovered: delivered although its publish was not acked, which is
//     no error;
//   - per fault window, the availability (acked/attempted) and the time
//     from its heal until every signal owed before it was delivered.
//
// Only an acked publish is owed: a publisher that times out does not know
// whether its signal was stored, so the checker does not count it lost.
// Verdict.OK says every durable-mode guarantee held; Verdict.Valid judges
// by the run's mode, and FastMode's allows losses inside fault windows.
// Latency (attempt → first delivery, per subscriber) goes into a
// Histogram with percentiles accurate to 0.8 %.
//
// A run spread over processes records on each node into a file
// (WithRecord: one JSON line per event, see Record, each line written
// whole so that it survives a SIGKILL), and the harness writes its fault
// windows with a Recorder; ReadHistory rebuilds the run from all the
// files, skipping a line torn by a kill. Workload is the load a node
// runs: bounded in count and time, publishing as a user does and
// recording each outcome.
//
// The package knows the bus and nothing of NATS, so the same code judges
// an in-process run and one spread over processes or containers:
//
//	h := loadtest.NewHistory(loadtest.WithNode("n1"), loadtest.WithRecord(file))
//	sub, _ := h.Subscriber("n1", "loadtest.**")
//	node.Bus().Subscribe("loadtest.**", sub)        // a Subscriber is a bus.Handler
//	w, _ := loadtest.NewWorkload(h, loadtest.WorkloadConfig{
//		Publisher: "n1", Type: "loadtest.signal", Rate: 200, Duration: time.Minute,
//	})
//	w.Run(ctx, node.Bus().Publish)                  // attempt, publish, ok, fail or info
//	...
//	run, _ := loadtest.ReadHistory(n1, n2, n3, faults) // the files, after the run
//	v := run.Check()
//	fmt.Println(v)                                  // published …; lost 0, duplicated 0, reordered 0 …
package loadtest
