package cluster

import (
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbus/signalbus/bus"
)

func TestPublisherTableForgetsIdlePublishers(t *testing.T) {
	t0 := time.Now()
	a, b := publisherKey{node: "a", instance: "1"}, publisherKey{node: "b", instance: "1"}
	tab := newPublisherTable[uint64](t0, nil)
	tab.set(a, 1)
	tab.set(b, 1)
	tab.rotate(t0.Add(publisherIdle / 2)) // too soon: nothing happens
	tab.rotate(t0.Add(publisherIdle))     // both unused for a period: kept one more
	if tab.len() != 2 {
		t.Fatalf("after one idle period: %d publishers, want 2", tab.len())
	}
	if v, ok := tab.get(a); !ok || v != 1 {
		t.Fatalf("get(a) = %d, %v", v, ok)
	}
	tab.rotate(t0.Add(2 * publisherIdle))
	if _, ok := tab.get(b); ok {
		t.Error("b, unused for two idle periods, is still there")
	}
	if _, ok := tab.get(a); !ok {
		t.Error("a, used in the last period, was forgotten")
	}
	tab.rotate(t0.Add(3 * publisherIdle))
	tab.rotate(t0.Add(4 * publisherIdle))
	if tab.len() != 0 {
		t.Errorf("after two idle periods without use: %d publishers, want 0", tab.len())
	}
}

func TestPublisherTableKeepsWhatMustStay(t *testing.T) {
	t0 := time.Now()
	holding, idle := publisherKey{node: "h"}, publisherKey{node: "i"}
	tab := newPublisherTable(t0, func(held int) bool { return held > 0 })
	tab.set(holding, 3)
	tab.set(idle, 0)
	for i := 1; i <= 3; i++ {
		tab.rotate(t0.Add(time.Duration(i) * publisherIdle))
	}
	if v, ok := tab.get(holding); !ok || v != 3 {
		t.Errorf("a publisher keep wants kept: get = %d, %v", v, ok)
	}
	if _, ok := tab.get(idle); ok {
		t.Error("an idle publisher keep lets go is still there")
	}
}

// TestReordererForgetsIdlePublishers: each run of each publishing node is
// a stream of its own; one not heard from for publisherIdle is forgotten
// unless it holds signals, and one heard from again starts from its floor.
func TestReordererForgetsIdlePublishers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var delivered []string
		gap := 4 * publisherIdle // no gap skipped during the test; the timer ticks once per idle period
		r := newReorderer(gap, 100, func(p pending) { delivered = append(delivered, p.sig.Subject) }, nil, nil,
			func() {}, func(publisherKey, uint64, uint64) {})
		defer r.close()
		add := func(node string, seq, floor uint64) {
			s := bus.Signal{Subject: node + strconv.FormatUint(seq, 10), Extensions: map[string]any{
				ExtensionNode: node, ExtensionInstance: "i", ExtensionSequence: strconv.FormatUint(seq, 10),
				ExtensionFloor: strconv.FormatUint(floor, 10)}}
			key, n, _ := orderKey(s)
			r.add(key, n, pending{sig: s, msg: nakRecorder{subject: s.Subject, naks: new([]string)}})
		}
		add("quiet", 1, 1)   // delivered, then never heard from again
		add("holding", 3, 1) // held: 1 and 2 are missing
		time.Sleep(2*publisherIdle + time.Second)
		synctest.Wait()
		r.mu.Lock()
		streams := r.streams.len()
		_, holding := r.streams.get(publisherKey{node: "holding", instance: "i"})
		r.mu.Unlock()
		if streams != 1 || !holding {
			t.Errorf("after two idle periods: %d streams (holding one kept: %v), want only the holding one", streams, holding)
		}
		add("quiet", 7, 7) // heard from again: a new baseline, its floor
		if want := []string{"quiet1", "quiet7"}; !slices.Equal(delivered, want) {
			t.Errorf("delivered %v, want %v", delivered, want)
		}
	})
}

// TestFastNodeForgetsIdlePublishers: the fast-mode loss check forgets a
// publisher it has not heard from for publisherIdle, and keeps counting
// gaps of the ones it hears from.
func TestFastNodeForgetsIdlePublishers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &Node{logger: quietLogger(), last: newPublisherTable[uint64](time.Now(), nil)}
		gone, alive := publisherKey{node: "gone", instance: "1"}, publisherKey{node: "alive", instance: "1"}
		n.sequenceSeen(gone, 1, 5)
		n.sequenceSeen(alive, 1, 1)
		time.Sleep(publisherIdle)
		n.sequenceSeen(alive, 2, 2)
		time.Sleep(publisherIdle)
		n.sequenceSeen(alive, 4, 4) // 3 lost
		if n.behind(gone, 5) {
			t.Error("a publisher idle for two periods is still remembered")
		}
		if !n.behind(alive, 4) {
			t.Error("a publisher heard from in the last period was forgotten")
		}
		if got := n.lost.Load(); got != 1 {
			t.Errorf("lost = %d, want 1", got)
		}
		if got := n.last.len(); got != 1 {
			t.Errorf("%d publishers remembered, want 1", got)
		}
	})
}
