package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

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
		nil, nil,
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
	h.r.add(key, n, pending{sig: s, msg: nopAck{}})
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
		h.r.add(key, seq, pending{sig: s, msg: nopAck{}})
		h.add("a", 1)
		h.add("a", 2)
		if got := h.got(); got != "[a1 a2 a3]" {
			t.Errorf("delivered %s, want a3 held until a1 and a2", got)
		}
	})
}

// nopAck is a message that needs no acknowledging.
type nopAck struct{}

func (nopAck) Ack() error                       { return nil }
func (nopAck) Nak() error                       { return nil }
func (nopAck) NakWithDelay(time.Duration) error { return nil }
func (nopAck) Term() error                      { return nil }
func (nopAck) Metadata() (*jetstream.MsgMetadata, error) {
	return nil, errors.New("no metadata: not a stored message")
}

// TestRedeliveryOfReleasedSignalIsNotDeliveredAgain: a redelivery of a
// held signal may pass the pipe's duplicate check (nothing delivered it
// yet) just before the gap timer releases the first delivery; it then
// reaches the reorderer behind its publisher's next number. The reorderer
// must not hand it on a second time: a duplicate would reach the handler.
func TestRedeliveryOfReleasedSignalIsNotDeliveredAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		meter := metricnoop.NewMeterProvider().Meter("test")
		dedup, _ := meter.Int64Counter("dedup")
		held, _ := meter.Int64Counter("held")
		n := &Node{cfg: Config{DedupSize: 100, ReorderGap: time.Second, ReorderLimit: 100}, logger: quietLogger()}
		d := &durable{n: n, dedupCounter: dedup, heldCounter: held}
		var (
			mu        sync.Mutex
			delivered []string
			p         *pipe
		)
		// As a named subscription's pipe does: what it hands on is in a
		// handler's queue until the handler is done.
		p = d.newPipe("test", true, func(pd pending) {
			p.track(pd.sig.ID, false)
			mu.Lock()
			delivered = append(delivered, pd.sig.ID)
			mu.Unlock()
		}, nil)
		defer p.order.close()
		signal := func(seq uint64) bus.Signal {
			return bus.Signal{ID: "id" + strconv.FormatUint(seq, 10), Extensions: map[string]any{
				ExtensionNode: "a", ExtensionInstance: "i", ExtensionSequence: strconv.FormatUint(seq, 10), ExtensionFloor: "1"}}
		}
		p.receiveSignal(signal(2), nopAck{}) // #1 is missing: #2 is held
		// The redelivery of #2 passes receiveSignal's check now…
		redelivery := signal(2)
		if p.duplicate(redelivery.ID, nopAck{}) {
			t.Fatal("a held signal counts as handed on")
		}
		// …then the gap timer gives up on #1 and releases #2…
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// …before the redelivery reaches the reorderer.
		key, seq, _ := orderKey(redelivery)
		p.order.add(key, seq, pending{sig: redelivery, msg: nopAck{}})
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(delivered, []string{"id2"}) {
			t.Errorf("delivered %v, want id2 once", delivered)
		}
	})
}

// nakRecorder records, in order, the signals negatively acknowledged.
type nakRecorder struct {
	nopAck
	subject string
	naks    *[]string
}

func (a nakRecorder) Nak() error { *a.naks = append(*a.naks, a.subject); return nil }

// TestReordererCloseOffersWhatItHoldsAgain: what is held when the
// reorderer closes (its node is closing) is negatively acknowledged, in
// each publisher's order, so that JetStream redelivers it at once, ahead
// of what was published after it, instead of after the ack wait, by which
// time a restarted node would have handled the later signals first.
func TestReordererCloseOffersWhatItHoldsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var naks []string
		r := newReorderer(time.Minute, 100, func(pending) {}, nil, nil, func() {}, func(publisherKey, uint64, uint64) {})
		for _, seq := range []uint64{1, 5, 3, 4} { // #2 is missing: 3, 4 and 5 are held
			s := bus.Signal{Subject: "a" + strconv.FormatUint(seq, 10), Extensions: map[string]any{
				ExtensionNode: "a", ExtensionInstance: "i", ExtensionSequence: strconv.FormatUint(seq, 10), ExtensionFloor: "1"}}
			key, n, _ := orderKey(s)
			r.add(key, n, pending{sig: s, msg: nakRecorder{subject: s.Subject, naks: &naks}})
		}
		r.close()
		if want := []string{"a3", "a4", "a5"}; !slices.Equal(naks, want) {
			t.Errorf("negatively acknowledged %v, want %v", naks, want)
		}
		if r.held != 0 {
			t.Errorf("still holds %d", r.held)
		}
	})
}

// TestReordererPassFillsAPlace: a number passed (a stamped message that
// was parked) takes its place in the sequence: what follows is delivered
// at once, nothing is skipped, a hole is never delivered nor offered
// again on close, and a publisher first seen through a passed number
// starts from its floor.
func TestReordererPassFillsAPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var delivered, naks []string
		skipped := 0
		r := newReorderer(time.Hour, 100, func(p pending) { delivered = append(delivered, p.sig.Subject) }, nil, nil,
			func() {}, func(_ publisherKey, from, to uint64) { skipped += int(to - from) })
		add := func(node string, seq uint64) {
			s := bus.Signal{Subject: node + strconv.FormatUint(seq, 10), Extensions: map[string]any{
				ExtensionNode: node, ExtensionInstance: "i", ExtensionSequence: strconv.FormatUint(seq, 10)}}
			key, n, _ := orderKey(s)
			r.add(key, n, pending{sig: s, msg: nakRecorder{subject: s.Subject, naks: &naks}})
		}
		a, b := publisherKey{node: "a", instance: "i"}, publisherKey{node: "b", instance: "i"}
		add("a", 1)
		r.pass(a, 3, 3) // ahead: a hole held until 2 comes
		add("a", 4)
		add("a", 2) // 2, the hole of 3, then 4
		r.pass(a, 5, 5)
		add("a", 6)
		r.pass(b, 8, 7) // first seen from b: its floor, 7, is still owed
		add("b", 9)
		add("b", 7)
		r.pass(b, 11, 11) // a hole, held behind the missing 10
		r.close()
		if want := []string{"a1", "a2", "a4", "a6", "b7", "b9"}; !slices.Equal(delivered, want) {
			t.Errorf("delivered %v, want %v", delivered, want)
		}
		if skipped != 0 {
			t.Errorf("skipped %d, want 0", skipped)
		}
		if len(naks) != 0 {
			t.Errorf("offered again on close: %v, want nothing (only a hole was held)", naks)
		}
	})
}
