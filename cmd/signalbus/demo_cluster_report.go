package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/loadtest"
)

// live prints a line every second until ctx ends: the publish rate and
// the p99 latency over the last second, then each node's view (members
// up, outbox depth) and the cluster's dedup hits and held signals.
func (d *clusterDemo) live(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev, prevAt := d.hist.Progress(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			cur := d.hist.Progress()
			window := cur.Latency.Sub(&prev.Latency)
			rate := float64(cur.Attempted-prev.Attempted) / now.Sub(prevAt).Seconds()
			p99 := "-"
			if window.Count() > 0 {
				p99 = fmtLatency(window.Quantile(0.99))
			}
			d.printf("%-7s rate=%.0f/s p99=%-8s up=%s partitioned=%s outbox=%s dedup=%d held=%d acked=%d delivered=%d\n",
				d.since(), rate, p99, d.upCounts(), d.partitioned(), d.outboxDepths(), d.sumStats(func(s cluster.Stats) int64 { return s.DedupHits }),
				d.sumStats(func(s cluster.Stats) int64 { return s.Held }), cur.Acked, cur.Deliveries)
			prev, prevAt = cur, now
		}
	}
}

// upCounts is how many members each node sees up: "3,3,1".
func (d *clusterDemo) upCounts() string {
	parts := make([]string, len(d.nodes))
	for i, n := range d.nodes {
		parts[i] = fmt.Sprint(membersUp(n.node))
	}
	return strings.Join(parts, ",")
}

// membersUp is how many members n sees up, itself included.
func membersUp(n *cluster.Node) int {
	up := 0
	for _, m := range n.Members() {
		if m.State == cluster.Up {
			up++
		}
	}
	return up
}

// partitioned names the nodes whose last partition signal said they are
// partitioned, or "none".
func (d *clusterDemo) partitioned() string {
	var names []string
	for _, n := range d.nodes {
		if p, _, _, _ := n.partition.state(); p {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// outboxDepths is each node's signalbus_outbox_depth as its /metrics
// last showed it (watchOutbox): "0,0,412".
func (d *clusterDemo) outboxDepths() string {
	parts := make([]string, len(d.nodes))
	for i, n := range d.nodes {
		parts[i] = "?"
		if v := n.outboxDepth.Load(); v >= 0 {
			parts[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(parts, ",")
}

// watchOutbox reads node n's outbox depth from its metrics registry every
// 200 ms until ctx ends. A gather runs every collector the node has,
// NATS gauges that ask JetStream included, which an isolated node waits
// for: it runs here, off the live line's goroutine.
func (d *clusterDemo) watchOutbox(ctx context.Context, n *demoNode) {
	for {
		if v, ok := gaugeSum(n.prov.Registry, "signalbus_outbox_depth"); ok {
			n.outboxDepth.Store(int64(v))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// gaugeSum adds up the series of the gauge called name in what g gathers.
func gaugeSum(g prometheus.Gatherer, name string) (float64, bool) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue()
		}
		return sum, true
	}
	return 0, false
}

func (d *clusterDemo) sumStats(f func(cluster.Stats) int64) int64 {
	var n int64
	for _, dn := range d.nodes {
		n += f(dn.node.Stats())
	}
	return n
}

// finish waits for delivery to complete, prints the verdict and returns
// an error when it finds a guarantee broken.
func (d *clusterDemo) finish(ctx context.Context, interrupted bool) error {
	published := time.Since(d.start)
	d.printf("%s publishing stopped; waiting up to %v for every acked signal to reach every node\n", d.since(), d.cmd.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cmd.DrainTimeout)
	defer cancel()
	// First the synchronous publishes still waiting, whose outcome decides
	// whether they are owed; they give up at the drain's end.
	stop := context.AfterFunc(dctx, d.syncCancel)
	d.sync.Wait()
	stop()
	drainErr := d.hist.AwaitDelivered(dctx, 20*time.Millisecond)
	if drainErr == nil {
		d.printf("%s every acked signal delivered to every node\n", d.since())
	} else {
		d.printf("%s gave up waiting: %v\n", d.since(), drainErr)
	}
	d.stopLive()
	d.stopLive = nil

	v := d.hist.Check()
	d.printVerdict(v, published)
	if !v.OK() {
		return fmt.Errorf("demo: verdict: lost %d, duplicated %d, reordered %d, unexpected %d", v.Lost, v.Duplicated, v.Reordered, v.Unexpected)
	}
	if interrupted {
		return fmt.Errorf("demo: %w", context.Canceled)
	}
	return nil
}

// printVerdict prints the verdict, ending with one line that says OK or
// FAILED with the three counts.
func (d *clusterDemo) printVerdict(v loadtest.Verdict, published time.Duration) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nverdict after %.1fs of publishing:\n", published.Seconds())
	var pubs, stored, outboxed []string
	for _, p := range v.Publishers {
		pubs = append(pubs, fmt.Sprintf("%s=%d", p.Name, p.Attempted))
	}
	var nStored, nOutboxed int64
	for _, n := range d.nodes {
		s, o := n.stored.Load(), n.outboxed.Load()
		nStored += s
		nOutboxed += o
		stored = append(stored, fmt.Sprintf("%s=%d", n.name, s))
		outboxed = append(outboxed, fmt.Sprintf("%s=%d", n.name, o))
	}
	fmt.Fprintf(&b, "  published  %7d  %s\n", v.Attempted, strings.Join(pubs, " "))
	fmt.Fprintf(&b, "  acked      %7d  by the stream %d (%s), by the outbox %d (%s); failed %d, pending %d\n",
		v.Acked, nStored, strings.Join(stored, " "), nOutboxed, strings.Join(outboxed, " "), v.Failed, v.Pending)
	var delivered []string
	for _, s := range v.Subscribers {
		delivered = append(delivered, fmt.Sprintf("%s=%d", s.Name, s.Delivered))
	}
	fmt.Fprintf(&b, "  delivered           %s (%s, on every node)\n", strings.Join(delivered, " "), demoPattern)
	fmt.Fprintf(&b, "  lost %d  duplicated %d  reordered %d  unexpected %d  recovered %d (not acked, delivered)\n",
		v.Lost, v.Duplicated, v.Reordered, v.Unexpected, v.Recovered)
	for _, s := range v.Subscribers {
		for _, ex := range []struct {
			what string
			list []string
		}{{"lost", s.LostExamples}, {"duplicated", s.DuplicatedExamples}, {"reordered", s.ReorderedExamples}, {"unexpected", s.UnexpectedExamples}} {
			if len(ex.list) > 0 {
				fmt.Fprintf(&b, "    %s %s: %s\n", s.Name, ex.what, strings.Join(ex.list, ", "))
			}
		}
	}
	if v.Latency.Count() > 0 {
		fmt.Fprintf(&b, "  latency    p50 %s  p99 %s  max %s  (publish → handler, every delivery)\n",
			fmtLatency(v.Latency.Quantile(0.5)), fmtLatency(v.Latency.Quantile(0.99)), fmtLatency(v.Latency.Max()))
	}
	fmt.Fprintf(&b, "  dedup hits %d, held back for order %d\n",
		d.sumStats(func(s cluster.Stats) int64 { return s.DedupHits }), d.sumStats(func(s cluster.Stats) int64 { return s.Held }))
	if d.cmd.IsolateFor > 0 {
		b.WriteString("  isolation  " + d.isolationSummary() + "\n")
	}
	if v.OK() {
		fmt.Fprintf(&b, "verdict: OK (lost %d, duplicated %d, reordered %d)\n", v.Lost, v.Duplicated, v.Reordered)
	} else {
		fmt.Fprintf(&b, "verdict: FAILED (lost %d, duplicated %d, reordered %d, unexpected %d)\n", v.Lost, v.Duplicated, v.Reordered, v.Unexpected)
	}
	d.printf("%s", b.String())
}

// isolationSummary says what the nodes reported of the isolation.
func (d *clusterDemo) isolationSummary() string {
	k := d.nodes[len(d.nodes)-1]
	if d.cutAt.IsZero() {
		return k.name + " was never cut off: the run ended first"
	}
	s := fmt.Sprintf("%s cut off at t=%.1fs for %.1fs; ", k.name, d.cutAt.Sub(d.start).Seconds(), d.healAt.Sub(d.cutAt).Seconds())
	_, detected, healed, detections := k.partition.state()
	if detections == 0 {
		return s + k.name + " never reported a partition"
	}
	s += fmt.Sprintf("%s reported partitioned at t=%.1fs", k.name, detected.Sub(d.start).Seconds())
	if !healed.IsZero() {
		s += fmt.Sprintf(", healed at t=%.1fs", healed.Sub(d.start).Seconds())
	}
	var others []string
	for _, n := range d.nodes[:len(d.nodes)-1] {
		if _, _, _, det := n.partition.state(); det > 0 {
			others = append(others, n.name)
		}
	}
	if len(others) > 0 {
		s += "; also partitioned: " + strings.Join(others, ",")
	} else {
		s += "; the majority side stayed whole"
	}
	return s
}

// fmtLatency renders a latency with three significant digits or so.
func fmtLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
