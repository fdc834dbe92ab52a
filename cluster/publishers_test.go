package cluster

import (
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// TestPublisherTableForgetsReplacedRuns: a run of a node that a later run
// replaced is forgotten once unused for two idle periods; a node's latest
// run is kept however long it is quiet.
func TestPublisherTableForgetsReplacedRuns(t *testing.T) {
	t0 := time.Now()
	run1, run2 := publisherKey{node: "a", instance: "1"}, publisherKey{node: "a", instance: "2"}
	quiet := publisherKey{node: "q", instance: "1"}
	tab := newPublisherTable[uint64](t0, nil)
	tab.set(run1, 1)
	tab.set(quiet, 1)
	tab.set(run2, 1)                      // a restarted: run1 will publish nothing more
	tab.rotate(t0.Add(publisherIdle / 2)) // too soon: nothing happens
	tab.rotate(t0.Add(publisherIdle))
	if tab.len() != 3 {
		t.Fatalf("after one idle period: %d publishers, want 3", tab.len())
	}
	tab.rotate(t0.Add(2 * publisherIdle))
	if _, ok := tab.get(run1); ok {
		t.Error("a replaced run, unused for two idle periods, is still there")
	}
	for i := 3; i <= 6; i++ {
		tab.rotate(t0.Add(time.Duration(i) * publisherIdle))
	}
	for _, key := range []publisherKey{run2, quiet} {
		if _, ok := tab.get(key); !ok {
			t.Errorf("%v, its node's latest run, was forgotten while quiet", key)
		}
	}
	if tab.len() != 2 {
		t.Errorf("%d publishers, want 2", tab.len())
	}
}

func TestPublisherTableKeepsWhatMustStay(t *testing.T) {
	t0 := time.Now()
	holding, idle := publisherKey{node: "h", instance: "1"}, publisherKey{node: "i", instance: "1"}
	tab := newPublisherTable(t0, func(held int) bool { return held > 0 })
	tab.set(holding, 3)
	tab.set(idle, 0)
	tab.set(publisherKey{node: "h", instance: "2"}, 0) // both replaced
	tab.set(publisherKey{node: "i", instance: "2"}, 0)
	for i := 1; i <= 3; i++ {
		tab.rotate(t0.Add(time.Duration(i) * publisherIdle))
	}
	if v, ok := tab.get(holding); !ok || v != 3 {
		t.Errorf("a replaced run keep wants kept: get = %d, %v", v, ok)
	}
	if _, ok := tab.get(idle); ok {
		t.Error("a replaced run keep lets go is still there")
	}
}

// orderedSignal is a signal as publisher node's run inst numbers it.
func orderedSignal(node, inst string, seq, floor uint64) bus.Signal {
	return bus.Signal{Subject: node + inst + "#" + strconv.FormatUint(seq, 10), Extensions: map[string]any{
		ExtensionNode: node, ExtensionInstance: inst, ExtensionSequence: strconv.FormatUint(seq, 10),
		ExtensionFloor: strconv.FormatUint(floor, 10)}}
}

// TestReordererForgetsReplacedRuns: a publishing node's run that a
// restart replaced is forgotten once idle, unless it holds signals; the
// new run is not, however quiet.
func TestReordererForgetsReplacedRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gap := 4 * publisherIdle // no gap skipped during the test; the timer ticks once per idle period
		r := newReorderer(gap, 100, func(pending) {}, nil, nil, func() {}, func(publisherKey, uint64, uint64) {})
		defer r.close()
		add := func(s bus.Signal) {
			key, n, _ := orderKey(s)
			r.add(key, n, pending{sig: s, msg: nopAck{}})
		}
		add(orderedSignal("a", "1", 1, 1))
		add(orderedSignal("h", "1", 3, 1)) // held: 1 and 2 are missing
		add(orderedSignal("a", "2", 1, 1)) // both restarted
		add(orderedSignal("h", "2", 1, 1))
		time.Sleep(2*publisherIdle + time.Second)
		synctest.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		for key, want := range map[publisherKey]bool{{"a", "1"}: false, {"h", "1"}: true, {"a", "2"}: true, {"h", "2"}: true} {
			if _, ok := r.streams.get(key); ok != want {
				t.Errorf("%v kept: %v, want %v", key, ok, want)
			}
		}
	})
}

// TestReordererKeepsAQuietPublisher: a publisher silent for longer than
// the idle period is still known when it publishes again, so its order
// holds: 3 overtook 2 (2's delivery lost, 2 redelivered after its ack
// wait), and 3 waits for 2 rather than setting a new baseline; a retried
// publish after a long partition is not skipped a second time.
func TestReordererKeepsAQuietPublisher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var delivered []string
		var skipped uint64
		r := newReorderer(10*time.Second, 100, func(p pending) { delivered = append(delivered, p.sig.Subject) }, nil, nil,
			func() {}, func(_ publisherKey, from, to uint64) { skipped += to - from })
		defer r.close()
		add := func(seq, floor uint64) {
			s := orderedSignal("p", "i", seq, floor)
			key, n, _ := orderKey(s)
			r.add(key, n, pending{sig: s, msg: nopAck{}})
		}
		for seq := uint64(1); seq <= 4; seq++ {
			add(seq, seq)
		}
		add(6, 5) // 5's publish failed: skipped after the gap
		time.Sleep(11 * time.Second)
		synctest.Wait()
		time.Sleep(3 * publisherIdle) // quiet: the publisher retries 5 through a long partition
		synctest.Wait()
		add(5, 5) // stored at last: late (6's retry is a duplicate the dedup window drops)
		add(8, 8) // 7 overtaken
		time.Sleep(5 * time.Second)
		add(7, 7) // redelivered after its ack wait
		want := []string{"pi#1", "pi#2", "pi#3", "pi#4", "pi#6", "pi#5", "pi#7", "pi#8"}
		if !slices.Equal(delivered, want) {
			t.Errorf("delivered %v, want %v", delivered, want)
		}
		if skipped != 1 {
			t.Errorf("skipped %d, want 1 (5, once)", skipped)
		}
	})
}

// TestFastNodeForgetsReplacedRuns: the fast-mode loss check forgets a
// node's run that a restart replaced, and keeps counting the gaps of a
// publisher it has not heard from for long (a partial partition cut it
// off while other publishers were heard).
func TestFastNodeForgetsReplacedRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &Node{logger: quietLogger(), last: newPublisherTable[uint64](time.Now(), nil)}
		old, restarted := publisherKey{node: "a", instance: "1"}, publisherKey{node: "a", instance: "2"}
		far, near := publisherKey{node: "far", instance: "1"}, publisherKey{node: "near", instance: "1"}
		n.sequenceSeen(old, 1, 5)
		n.sequenceSeen(restarted, 1, 1)
		n.sequenceSeen(far, 1, 100)
		for seq := uint64(1); seq <= 25; seq++ {
			time.Sleep(time.Minute)
			n.sequenceSeen(near, seq, seq)
		}
		if n.behind(old, 5) {
			t.Error("a replaced run is still remembered")
		}
		if !n.behind(restarted, 1) {
			t.Error("a node's latest run was forgotten")
		}
		n.sequenceSeen(far, 50_101, 50_101) // 50 000 lost while cut off
		if got := n.lost.Load(); got != 50_000 {
			t.Errorf("lost = %d, want 50000", got)
		}
	})
}

// TestPublisherTableKeepsTheLiveRunAfterALateOne: a run forgotten as
// replaced that is heard from again (cut off while its node restarted,
// its outbox draining after the heal) does not become its node's latest:
// the live run stays known however quiet, and the late one is forgotten
// again once idle.
func TestPublisherTableKeepsTheLiveRunAfterALateOne(t *testing.T) {
	t0 := time.Now()
	run1, run2 := publisherKey{node: "a", instance: "1"}, publisherKey{node: "a", instance: "2"}
	tab := newPublisherTable[uint64](t0, nil)
	tab.set(run1, 1)
	tab.set(run2, 1)
	tab.rotate(t0.Add(publisherIdle))
	tab.rotate(t0.Add(2 * publisherIdle)) // run1 forgotten
	tab.set(run1, 2)                      // late
	for i := 3; i <= 6; i++ {
		tab.rotate(t0.Add(time.Duration(i) * publisherIdle))
	}
	if _, ok := tab.get(run2); !ok {
		t.Error("the live run, quiet, was forgotten after a late message of the run it replaced")
	}
	if _, ok := tab.get(run1); ok {
		t.Error("the late run, idle again, is still there")
	}
}

// TestPublisherTableRemembersBoundedRetiredRuns: what the table keeps of
// forgotten runs is bounded.
func TestPublisherTableRemembersBoundedRetiredRuns(t *testing.T) {
	t0 := time.Now()
	tab := newPublisherTable[uint64](t0, nil)
	for i := range 3 * maxRetired {
		tab.set(publisherKey{node: "a", instance: strconv.Itoa(i)}, 1) // a restart each
	}
	tab.rotate(t0.Add(publisherIdle))
	tab.rotate(t0.Add(2 * publisherIdle))
	if tab.len() != 1 || len(tab.retired.keys) != maxRetired || len(tab.retired.ring) != maxRetired {
		t.Errorf("%d runs kept, %d retired remembered (ring %d), want 1 and %d", tab.len(), len(tab.retired.keys), len(tab.retired.ring), maxRetired)
	}
}
