package cluster

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/clustertest"
)

// These tests run nodes against a three-server NATS cluster whose route
// links pass through fault proxies (clustertest), and break those links.

// joinCluster starts one node per server of c, each connected to its own
// server by URL, with fast heartbeats.
func joinCluster(t *testing.T, c *clustertest.Cluster, mode Mode, enc Encoding) []*Node {
	t.Helper()
	nodes := make([]*Node, c.N())
	for i := range nodes {
		nodes[i] = startNode(t, fastMembership(Config{Name: fmt.Sprintf("n%d", i), Mode: mode, Encoding: enc,
			NATSURL: c.ClientURL(i), ExpectedSize: c.N()}))
	}
	all := map[string]MemberState{}
	for _, n := range nodes {
		all[n.Name()] = Up
	}
	for _, n := range nodes {
		waitMembers(t, n, all)
	}
	return nodes
}

// subscribeAll gives every node a recording subscription to pattern.
func subscribeAll(t *testing.T, nodes []*Node, pattern string) []*inbox {
	t.Helper()
	boxes := make([]*inbox, len(nodes))
	for i, n := range nodes {
		boxes[i] = &inbox{}
		if _, err := n.Bus().Subscribe(pattern, boxes[i]); err != nil {
			t.Fatal(err)
		}
	}
	return boxes
}

// TestFastModeIsolationAndHeal isolates one server: both sides see the
// other down and the minority side a partition; signals published on the
// majority side meanwhile are lost to the isolated node (fast mode is
// at-most-once) and counted there as lost, never duplicated or reordered;
// after the heal every node is up again and delivery resumes.
func TestFastModeIsolationAndHeal(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c := clustertest.StartCluster(t, 3, clustertest.WithoutJetStream(), clustertest.WithLogger(quietLogger()))
		nodes := joinCluster(t, c, Fast, enc)
		watchers := []*watcher{watch(t, nodes[0]), watch(t, nodes[1]), watch(t, nodes[2])}
		boxes := subscribeAll(t, nodes, "tick")
		seq := 0
		publish := func(k int) {
			for range k {
				if err := nodes[0].Bus().Publish(context.Background(), bus.Signal{Type: "tick", Source: "/n0", Subject: strconv.Itoa(seq)}); err != nil {
					t.Fatal(err)
				}
				seq++
			}
		}
		publish(100)
		boxes[2].wait(t, 100)

		c.Isolate(2)
		watchers[0].waitFor(t, TypeNodeDown+" n2 missed_heartbeats")
		watchers[2].waitFor(t, TypePartitionDetected+" n2 majority")
		waitMembers(t, nodes[1], map[string]MemberState{"n0": Up, "n1": Up, "n2": Down})
		publish(100) // n1 gets them, n2 cannot
		boxes[1].wait(t, 200)

		healed := time.Now()
		c.Heal()
		watchers[0].waitFor(t, TypeNodeUp+" n2 heartbeat")
		watchers[2].waitFor(t, TypePartitionHealed+" n2 majority")
		t.Logf("n2 up again on n0 %v after the heal", time.Since(healed).Round(time.Millisecond))

		// Delivery resumes; probe until n2 hears n0 (routes and interest are back).
		before := len(boxes[2].wait(t, 100))
		deadline := time.Now().Add(20 * time.Second)
		for len(boxes[2].wait(t, before)) == before {
			if time.Now().After(deadline) {
				t.Fatal("n2 receives nothing after the heal")
			}
			publish(1)
			time.Sleep(20 * time.Millisecond)
		}
		got := boxes[2].wait(t, 0)
		last := checkIncreasing(t, got)
		missing := int64(last + 1 - len(got))
		if missing <= 0 {
			t.Fatalf("n2 missed nothing while isolated (got %d up to #%d); the isolation did not isolate", len(got), last)
		}
		if lost := nodes[2].Stats().Lost; lost != missing {
			t.Errorf("n2 counted %d lost, but %d are missing from n0's sequence", lost, missing)
		}
	})
}

// publishAcked publishes signals #from..#to-1 one at a time, retrying each
// until the stream acknowledges it, as an application that must not lose
// a signal would: a retry of a signal whose ack was lost is dropped by the
// stream's duplicate window, so order and uniqueness hold.
// durableFaultCluster starts three durable nodes, each on its own server
// of a three-server JetStream cluster whose routes run through fault
// proxies, with a recording subscription to order.* on every node. Tests
// using it take seconds and are skipped with -short, saying why.
func durableFaultCluster(t *testing.T, enc Encoding, why string) (*clustertest.Cluster, []*Node, []*inbox) {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
	c := clustertest.StartCluster(t, 3, clustertest.WithLogger(quietLogger()))
	nodes := joinCluster(t, c, Durable, enc)
	waitDurableReady(t, nodes...)
	return c, nodes, subscribeAll(t, nodes, "order.*")
}

// publishAcked publishes signals #from to #to-1 from n, up to ten per
// Publish call (so that with ProtobufBatch a message carries several),
// retrying a call until the stream acknowledged it.
func publishAcked(t *testing.T, n *Node, from, to int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := from; i < to; i += 10 {
		chunk := make([]bus.Signal, 0, 10)
		for j := i; j < min(i+10, to); j++ {
			sig, err := bus.NewSignal("order.created", "/"+n.Name(), nil, bus.WithSubject(strconv.Itoa(j)))
			if err != nil {
				t.Fatal(err)
			}
			chunk = append(chunk, sig)
		}
		start := time.Now()
		for tries := 1; ; tries++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := n.Bus().Publish(ctx, chunk...)
			cancel()
			if err == nil {
				if took := time.Since(start); took > 5*time.Second {
					// How close a slow run came to the deadline, for who
					// looks into one.
					t.Logf("publish #%d-%d took %v, %d tries", i, i+len(chunk)-1, took.Round(time.Millisecond), tries)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish #%d-%d: %v (%d tries)", i, i+len(chunk)-1, err, tries)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// eachEncoding runs test once per wire encoding, as subtests.
func eachEncoding(t *testing.T, test func(t *testing.T, enc Encoding)) {
	for _, enc := range []Encoding{Binary, ProtobufBatch} {
		t.Run(enc.String(), func(t *testing.T) { test(t, enc) })
	}
}

// TestDurableSurvivesNodeAndServerRestarts runs three durable nodes on a
// three-server JetStream cluster (R3): a node closed and restarted with the
// same name gets what was published meanwhile; a server killed and
// restarted under a node leaves that node with every acknowledged signal.
// Every node ends with every acknowledged publish exactly once, in order.
func TestDurableSurvivesNodeAndServerRestarts(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c, nodes, boxes := durableFaultCluster(t, enc, "JetStream cluster elections take seconds; skipped with -short")
		// A named (durable) subscription on n1, and a group with a member on
		// every node.
		audit := &inbox{}
		if _, err := nodes[1].Bus().Subscribe("order.*", audit, bus.WithSubscriptionName("audit")); err != nil {
			t.Fatal(err)
		}
		var group handledSet
		for _, n := range nodes {
			if _, err := n.Bus().Subscribe("order.*", group.handler(n.Name()), bus.WithGroup("billing")); err != nil {
				t.Fatal(err)
			}
		}
		waitAttached(t, nodes[1], 2)
		publishAcked(t, nodes[0], 0, 100)
		for _, b := range boxes {
			checkSequence(t, b.wait(t, 100), 0, 100)
		}
		checkSequence(t, audit.wait(t, 100), 0, 100)

		// A node restart: n1 leaves, the others go on, n1 comes back.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cfg1 := nodes[1].cfg
		if err := nodes[1].Close(ctx); err != nil {
			t.Fatal(err)
		}
		publishAcked(t, nodes[0], 100, 200)
		n1, err := Start(ctx, cfg1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n1.Close(context.Background()) })
		again := &inbox{}
		if _, err := n1.Bus().Subscribe("order.*", again); err != nil {
			t.Fatal(err)
		}
		auditAgain := &inbox{}
		if _, err := n1.Bus().Subscribe("order.*", auditAgain, bus.WithSubscriptionName("audit")); err != nil {
			t.Fatal(err)
		}
		if _, err := n1.Bus().Subscribe("order.*", group.handler(n1.Name()), bus.WithGroup("billing")); err != nil {
			t.Fatal(err)
		}
		checkSequence(t, again.wait(t, 100), 100, 200)
		checkSequence(t, auditAgain.wait(t, 100), 100, 200)

		// A server crash under n2, while n0 keeps publishing.
		c.Kill(2)
		publishAcked(t, nodes[0], 200, 300)
		c.Restart(2)
		checkSequence(t, boxes[0].wait(t, 300), 0, 300)
		checkSequence(t, again.wait(t, 200), 100, 300)
		checkSequence(t, auditAgain.wait(t, 200), 100, 300)
		checkSequence(t, boxes[2].wait(t, 300), 0, 300)
		group.waitDistinct(t, 300, 30*time.Second)
		time.Sleep(100 * time.Millisecond) // a late duplicate would show now
		for i, b := range []*inbox{boxes[0], again, auditAgain, boxes[2]} {
			if got := len(b.wait(t, 0)); got != []int{300, 200, 200, 300}[i] {
				t.Errorf("inbox %d holds %d signals after the wait: duplicates", i, got)
			}
		}
		// A group is at-least-once across its members: a member whose server
		// died after its handler ran and before the ack reached the stream
		// sees the signal handled again elsewhere. Counted, not failed.
		if dups := group.duplicates(); len(dups) > 0 {
			t.Logf("group handled %d of 300 signals twice across members (acks lost with the killed server)", len(dups))
		}
	})
}

// TestDurableIsolationLongerThanStepDown isolates the server under n2 for
// longer than JetStream's Raft leaders take to step down without quorum,
// while n0 keeps publishing: n2 sees the partition and the others see it
// down; after the heal n2 gets every acknowledged signal, once, in order.
func TestDurableIsolationLongerThanStepDown(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c, nodes, boxes := durableFaultCluster(t, enc, "waits out a Raft step-down (over 10 s); skipped with -short")
		watchers := []*watcher{watch(t, nodes[0]), nil, watch(t, nodes[2])}
		audit := &inbox{} // a named subscription on the isolated node
		if _, err := nodes[2].Bus().Subscribe("order.*", audit, bus.WithSubscriptionName("audit")); err != nil {
			t.Fatal(err)
		}
		waitAttached(t, nodes[2], 1)
		publishAcked(t, nodes[0], 0, 50)

		c.Isolate(2)
		watchers[2].waitFor(t, TypePartitionDetected+" n2 majority")
		watchers[0].waitFor(t, TypeNodeDown+" n2 missed_heartbeats")
		isolated := time.Now()
		next := 50
		for time.Since(isolated) < 12*time.Second { // JetStream leaders step down after 10 s without quorum
			publishAcked(t, nodes[0], next, next+10)
			next += 10
			time.Sleep(200 * time.Millisecond)
		}
		c.Heal()
		watchers[2].waitFor(t, TypePartitionHealed+" n2 majority")
		watchers[0].waitFor(t, TypeNodeUp+" n2 heartbeat")
		publishAcked(t, nodes[0], next, next+50)
		next += 50
		for i, b := range boxes {
			checkSequence(t, b.wait(t, next), 0, next)
			if st := nodes[i].Stats(); st.Parked != 0 {
				t.Errorf("node %d parked %d messages", i, st.Parked)
			}
		}
		checkSequence(t, audit.wait(t, next), 0, next)
	})
}

// TestDurableSlowLink slows the link between the servers of n0 and n2
// (50 ms each way, so every replication and delivery across it waits)
// while n0 publishes and n2's subscriptions read: every acknowledged
// signal still reaches every node once, in order, and nothing is parked.
func TestDurableSlowLink(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c, nodes, boxes := durableFaultCluster(t, enc, "skipped with -short")
		c.Slow(0, 2, 50*time.Millisecond)
		const total = 200
		for i := 0; i < total; i += 20 {
			publishAcked(t, nodes[0], i, i+20)
		}
		for i, b := range boxes {
			checkSequence(t, b.wait(t, total), 0, total)
			if st := nodes[i].Stats(); st.Parked != 0 || st.Skipped != 0 {
				t.Errorf("node %d: %+v, want nothing parked or skipped", i, st)
			}
		}
		c.Restore(0, 2)
	})
}

// TestDurableFlappingLink cuts and restores the link between the servers
// of n0 and n2 over and over while n0 publishes: every acknowledged signal
// reaches every node once, in order.
func TestDurableFlappingLink(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c, nodes, boxes := durableFaultCluster(t, enc, "skipped with -short")
		stop := make(chan struct{})
		flapped := make(chan int)
		var flapsSoFar atomic.Int64
		go func() {
			flaps := 0
			defer func() {
				c.Restore(0, 2)
				flapped <- flaps
			}()
			// pause waits 300 ms, or reports false once stop is closed.
			pause := func() bool {
				select {
				case <-stop:
					return false
				case <-time.After(300 * time.Millisecond):
					return true
				}
			}
			for pause() {
				c.Cut(0, 2)
				if !pause() {
					return
				}
				c.Restore(0, 2)
				flaps++
				flapsSoFar.Store(int64(flaps))
			}
		}()
		// At least 400 signals, and on until the link has flapped 3 times
		// (a fast machine publishes 400 in less), within a minute.
		total, deadline := 0, time.Now().Add(time.Minute)
		for total < 400 || flapsSoFar.Load() < 3 && time.Now().Before(deadline) {
			publishAcked(t, nodes[0], total, total+20)
			total += 20
			time.Sleep(50 * time.Millisecond)
		}
		close(stop)
		if flaps := <-flapped; flaps < 3 {
			t.Errorf("the link flapped only %d times in a minute; the test meant more", flaps)
		}
		for _, b := range boxes {
			checkSequence(t, b.wait(t, total), 0, total)
		}
	})
}
