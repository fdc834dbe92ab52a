package cluster

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// reorderHarness records what a reorderer delivers and skips.
type reorderHarness struct {
	mu        sync.Mutex
	delivered []string
	skipped   []string
	held      int
	r         *reorderer
}

func newReorderHarness(gap time.Duration, limit int) *reorderHarness {
	h := &reorderHarness{}
	h.r = newReorderer(gap, limit,
		func(p pending) { h.delivered = append(h.delivered, p.sig.Subject) },
		nil,
		func() { h.held++ },
		func(key publisherKey, from, to uint64) {
			h.skipped = append(h.skipped, fmt.Sprintf("%s:%d-%d", key, from, to-1))
		})
	return h
}

func (h *reorderHarness) add(node string, seq uint64) {
	s := bus.Signal{Subject: node + strconv.FormatUint(seq, 10), Extensions: map[string]any{
		ExtensionNode: node, ExtensionInstance: "i", ExtensionSequence: strconv.FormatUint(seq, 10)}}
	key, n, ok := orderKey(s)
	if !ok {
		panic("no order key")
	}
	h.r.add(key, n, pending{sig: s})
}

func (h *reorderHarness) got() string {
	h.r.mu.Lock() // deliveries happen under the reorderer's lock
	defer h.r.mu.Unlock()
	return fmt.Sprint(h.delivered)
}

func TestReordererRestoresPublisherOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newReorderHarness(time.Second, 100)
		defer h.r.close()
		for _, seq := range []uint64{5, 6, 8, 9, 7, 10} {
			h.add("a", seq)
		}
		h.add("b", 1)
		h.add("a", 9) // a redelivery of one already delivered: late, dispatched, not lost
		if got, want := h.got(), "[a5 a6 a7 a8 a9 a10 b1 a9]"; got != want {
			t.Errorf("delivered %s, want %s", got, want)
		}
		if h.held != 2 {
			t.Errorf("held %d, want 2 (a8 and a9 waited for a7)", h.held)
		}
	})
}

func TestReordererSkipsAGapAfterTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newReorderHarness(time.Second, 100)
		defer h.r.close()
		h.add("a", 1)
		h.add("a", 3)
		h.add("a", 3) // redelivered while held: kept once
		time.Sleep(500 * time.Millisecond)
		if got := h.got(); got != "[a1]" {
			t.Fatalf("before the gap timeout delivered %s, want [a1]", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := h.got(); got != "[a1 a3]" {
			t.Errorf("after the gap timeout delivered %s, want [a1 a3]", got)
		}
		if fmt.Sprint(h.skipped) != "[a/i:2-2]" {
			t.Errorf("skipped %v, want [a/i:2-2]", h.skipped)
		}
		h.add("a", 2) // arrives after all: late, but not lost
		if got := h.got(); got != "[a1 a3 a2]" {
			t.Errorf("delivered %s, want the late a2 last", got)
		}
	})
}

func TestReordererBoundsWhatItHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newReorderHarness(time.Hour, 2)
		defer h.r.close()
		for _, seq := range []uint64{1, 3, 4, 5} {
			h.add("a", seq)
		}
		if got := h.got(); got != "[a1 a3 a4 a5]" {
			t.Errorf("delivered %s, want the gap skipped once 3 were held", got)
		}
		if fmt.Sprint(h.skipped) != "[a/i:2-2]" {
			t.Errorf("skipped %v", h.skipped)
		}
	})
}

func TestOrderKeyNeedsANodeSequence(t *testing.T) {
	if _, _, ok := orderKey(bus.Signal{}); ok {
		t.Error("a signal without sbnode/sbseq has an order key")
	}
	if _, _, ok := orderKey(bus.Signal{Extensions: map[string]any{ExtensionNode: "a", ExtensionSequence: "x"}}); ok {
		t.Error("a non-numeric sequence has an order key")
	}
}

// TestReordererStartsAtThePublishersFloor: the first signal heard from a
// publisher may have overtaken earlier ones still in flight; its floor says
// which, and the reorderer waits for them.
func TestReordererStartsAtThePublishersFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newReorderHarness(time.Second, 100)
		defer h.r.close()
		s := bus.Signal{Subject: "a3", Extensions: map[string]any{
			ExtensionNode: "a", ExtensionInstance: "i", ExtensionSequence: "3", ExtensionFloor: "1"}}
		key, seq, _ := orderKey(s)
		h.r.add(key, seq, pending{sig: s})
		h.add("a", 1)
		h.add("a", 2)
		if got := h.got(); got != "[a1 a2 a3]" {
			t.Errorf("delivered %s, want a3 held until a1 and a2", got)
		}
	})
}
