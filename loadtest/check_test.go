package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// fakeClock advances a millisecond at every reading.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{t: epoch} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// set makes the next reading ms milliseconds after the epoch.
func (c *fakeClock) set(ms int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = epoch.Add(time.Duration(ms-1) * time.Millisecond)
}

// ms is the time ms milliseconds after the epoch.
func ms(n int) time.Time { return epoch.Add(time.Duration(n) * time.Millisecond) }

// A script step: "pub a x1 acked [type]" attempts signal x1 from
// publisher a and records the outcome (acked, failed, info, pending, or
// failed+acked for a retry that succeeds); "sub s1 order.** [node]"
// registers a subscriber; "got s1 x1 x2 …" delivers to s1 in that order;
// "at 100" makes the clock's next reading 100 ms after the epoch (each
// reading advances it by 1 ms); "fault cut begin" and "fault cut end"
// start and heal a fault window. Types default to order.created.
type script []string

func (sc script) run(t *testing.T, opts ...CheckOption) (*History, Verdict) {
	t.Helper()
	h := sc.history(t, NewHistory())
	return h, h.Check(opts...)
}

// history plays the script into h, giving it a fakeClock.
func (sc script) history(t *testing.T, h *History) *History {
	t.Helper()
	clock := newFakeClock()
	h.clock = clock.now
	subs := map[string]*Subscriber{}
	heals := map[string]func(){}
	for _, line := range sc {
		f := strings.Fields(line)
		switch f[0] {
		case "sub":
			var s *Subscriber
			var err error
			if len(f) > 3 {
				s, err = h.SubscriberOn(f[3], f[1], f[2])
			} else {
				s, err = h.Subscriber(f[1], f[2])
			}
			if err != nil {
				t.Fatal(err)
			}
			subs[f[1]] = s
		case "pub":
			sig := bus.Signal{ID: f[2], Type: "order.created"}
			if len(f) > 4 {
				sig.Type = f[4]
			}
			op := h.Publisher(f[1]).Attempt(&sig)
			for _, o := range strings.Split(f[3], "+") {
				switch o {
				case "acked":
					op.Ack()
				case "failed":
					op.Fail(errors.New("refused"))
				case "info":
					op.Info(errors.New("timeout"))
				case "pending":
				default:
					t.Fatalf("bad outcome in %q", line)
				}
			}
		case "got":
			for _, id := range f[2:] {
				subs[f[1]].DeliverAt(id, h.now())
			}
		case "at":
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("bad step %q", line)
			}
			clock.set(n)
		case "fault":
			switch f[2] {
			case "begin":
				heals[f[1]] = h.StartFault(f[1])
			case "end":
				heals[f[1]]()
			default:
				t.Fatalf("bad step %q", line)
			}
		default:
			t.Fatalf("bad step %q", line)
		}
	}
	return h
}

// counts is what a test expects of one subscriber (or of the sums, as
// "*").
type counts struct {
	expected, delivered, deliveries, lost, duplicated, reordered, unexpected, recovered int
}

func subCounts(s SubscriberVerdict) counts {
	return counts{s.Expected, s.Delivered, s.Deliveries, s.Lost, s.Duplicated, s.Reordered, s.Unexpected, s.Recovered}
}

var twoSubs = script{"sub s1 order.**", "sub s2 order.**"}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		sc   script
		subs map[string]counts
		// totals
		acked, failed, pending, lost, duplicated, reordered, unexpected, recovered int
		examples                                                                   []string // substrings of the examples
	}{
		{
			name: "clean",
			sc: append(slices.Clone(twoSubs), "pub a x1 acked", "pub b y1 acked", "pub a x2 acked", "pub b y2 acked",
				"got s1 x1 y1 x2 y2", "got s2 y1 y2 x1 x2"),
			subs:  map[string]counts{"s1": {4, 4, 4, 0, 0, 0, 0, 0}, "s2": {4, 4, 4, 0, 0, 0, 0, 0}},
			acked: 4,
		},
		{
			name:  "lost to one subscriber",
			sc:    append(slices.Clone(twoSubs), "pub a x1 acked", "pub a x2 acked", "got s1 x1 x2", "got s2 x1"),
			subs:  map[string]counts{"s1": {2, 2, 2, 0, 0, 0, 0, 0}, "s2": {2, 1, 1, 1, 0, 0, 0, 0}},
			acked: 2, lost: 1, examples: []string{"a#2 x2"},
		},
		{
			name:  "lost everywhere counts each subscriber",
			sc:    append(slices.Clone(twoSubs), "pub a x1 acked"),
			subs:  map[string]counts{"s1": {1, 0, 0, 1, 0, 0, 0, 0}, "s2": {1, 0, 0, 1, 0, 0, 0, 0}},
			acked: 1, lost: 2,
		},
		{
			name:  "failed and pending are not owed",
			sc:    append(slices.Clone(twoSubs), "pub a x1 failed", "pub a x2 pending", "pub a x3 acked", "got s1 x3", "got s2 x3"),
			subs:  map[string]counts{"s1": {1, 1, 1, 0, 0, 0, 0, 0}, "s2": {1, 1, 1, 0, 0, 0, 0, 0}},
			acked: 1, failed: 1, pending: 1,
		},
		{
			name:   "recovered: failed but delivered, counted once across subscribers",
			sc:     append(slices.Clone(twoSubs), "pub a x1 failed", "pub a x2 pending", "got s1 x1 x2", "got s2 x1"),
			subs:   map[string]counts{"s1": {0, 2, 2, 0, 0, 0, 0, 2}, "s2": {0, 1, 1, 0, 0, 0, 0, 1}},
			failed: 1, pending: 1, recovered: 2,
		},
		{
			name:  "a retry that succeeds is acked once",
			sc:    script{"sub s1 order.**", "pub a x1 failed+acked", "pub a x1 failed", "pub a x2 acked", "got s1 x1 x2"},
			subs:  map[string]counts{"s1": {2, 2, 2, 0, 0, 0, 0, 0}},
			acked: 2,
		},
		{
			name:  "duplicated: twice and three times are one duplicated signal each",
			sc:    script{"sub s1 order.**", "pub a x1 acked", "pub a x2 acked", "got s1 x1 x1 x2 x2 x2"},
			subs:  map[string]counts{"s1": {2, 2, 5, 0, 1 + 1, 0, 0, 0}},
			acked: 2, duplicated: 2, examples: []string{"a#1 x1", "a#2 x2"},
		},
		{
			name:  "a duplicate of an earlier signal is not a reorder",
			sc:    script{"sub s1 order.**", "pub a x1 acked", "pub a x2 acked", "got s1 x1 x2 x1"},
			subs:  map[string]counts{"s1": {2, 2, 3, 0, 1, 0, 0, 0}},
			acked: 2, duplicated: 1,
		},
		{
			name:  "reordered",
			sc:    script{"sub s1 order.**", "pub a x1 acked", "pub a x2 acked", "pub a x3 acked", "got s1 x1 x3 x2"},
			subs:  map[string]counts{"s1": {3, 3, 3, 0, 0, 1, 0, 0}},
			acked: 3, reordered: 1, examples: []string{"a#2 x2 after #3"},
		},
		{
			name:  "every signal behind a jump ahead is reordered",
			sc:    script{"sub s1 order.**", "pub a x1 acked", "pub a x2 acked", "pub a x3 acked", "pub a x4 acked", "got s1 x4 x1 x2 x3"},
			subs:  map[string]counts{"s1": {4, 4, 4, 0, 0, 3, 0, 0}},
			acked: 4, reordered: 3,
		},
		{
			name:  "publishers interleave in any order",
			sc:    script{"sub s1 order.**", "pub a x1 acked", "pub b y1 acked", "pub a x2 acked", "pub b y2 acked", "got s1 y1 y2 x1 x2"},
			subs:  map[string]counts{"s1": {4, 4, 4, 0, 0, 0, 0, 0}},
			acked: 4,
		},
		{
			name:  "a gap is not a reorder",
			sc:    script{"sub s1 order.**", "pub a x1 acked", "pub a x2 failed", "pub a x3 acked", "got s1 x1 x3"},
			subs:  map[string]counts{"s1": {2, 2, 2, 0, 0, 0, 0, 0}},
			acked: 2, failed: 1,
		},
		{
			name:  "recovered out of order is reordered",
			sc:    script{"sub s1 order.**", "pub a x1 failed", "pub a x2 acked", "got s1 x2 x1"},
			subs:  map[string]counts{"s1": {1, 2, 2, 0, 0, 1, 0, 1}},
			acked: 1, failed: 1, reordered: 1, recovered: 1,
		},
		{
			name:  "unexpected: never attempted",
			sc:    script{"sub s1 order.**", "pub a x1 acked", "got s1 x1 ghost ghost"},
			subs:  map[string]counts{"s1": {1, 1, 3, 0, 1, 0, 1, 0}},
			acked: 1, unexpected: 1, duplicated: 1, examples: []string{"ghost"},
		},
		{
			name: "the pattern decides what is owed",
			sc: script{"sub paid order.paid", "sub all order.*", "pub a x1 acked order.created", "pub a x2 acked order.paid",
				"pub a x3 acked audit.log", "got paid x2", "got all x1 x2"},
			subs:  map[string]counts{"paid": {1, 1, 1, 0, 0, 0, 0, 0}, "all": {2, 2, 2, 0, 0, 0, 0, 0}},
			acked: 3,
		},
		{
			name:  "unexpected: a type the subscriber does not want",
			sc:    script{"sub paid order.paid", "pub a x1 acked order.created", "got paid x1"},
			subs:  map[string]counts{"paid": {0, 1, 1, 0, 0, 0, 1, 0}},
			acked: 1, unexpected: 1, examples: []string{"a#1 x1 (order.created)"},
		},
		{
			name:  "a subscriber owes nothing attempted before it was there",
			sc:    script{"pub a x1 acked", "sub s1 order.**", "pub a x2 acked", "got s1 x2"},
			subs:  map[string]counts{"s1": {1, 1, 1, 0, 0, 0, 0, 0}},
			acked: 2,
		},
		{
			name:  "earlier signals may still reach a late subscriber",
			sc:    script{"pub a x1 acked", "sub s1 order.**", "pub a x2 acked", "got s1 x1 x2"},
			subs:  map[string]counts{"s1": {1, 2, 2, 0, 0, 0, 0, 0}},
			acked: 2,
		},
		{
			name: "mixture",
			sc: append(slices.Clone(twoSubs),
				"pub a x1 acked", "pub a x2 acked", "pub a x3 failed", "pub a x4 acked",
				"pub b y1 acked", "pub b y2 pending", "pub b y3 acked",
				"got s1 x1 y1 x3 x2 x4 y3 y3", // x2 after x3: reordered; y3 twice; x3 recovered
				"got s2 x1 x2 y1 y2 y3 ghost", // x4 lost; y2 recovered; ghost unexpected
			),
			subs: map[string]counts{
				"s1": {5, 6, 7, 0, 1, 1, 0, 1},
				"s2": {5, 5, 6, 1, 0, 0, 1, 1},
			},
			acked: 5, failed: 1, pending: 1, lost: 1, duplicated: 1, reordered: 1, unexpected: 1, recovered: 2,
			examples: []string{"a#4 x4", "b#3 y3", "a#2 x2 after #3", "ghost"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, v := tc.sc.run(t)
			for _, s := range v.Subscribers {
				want, ok := tc.subs[s.Name]
				if !ok {
					t.Fatalf("unexpected subscriber %s in the verdict", s.Name)
				}
				if got := subCounts(s); got != want {
					t.Errorf("%s: %+v, want %+v", s.Name, got, want)
				}
			}
			if len(v.Subscribers) != len(tc.subs) {
				t.Errorf("%d subscribers in the verdict, want %d", len(v.Subscribers), len(tc.subs))
			}
			got := []int{v.Acked, v.Failed, v.Pending, v.Lost, v.Duplicated, v.Reordered, v.Unexpected, v.Recovered}
			want := []int{tc.acked, tc.failed, tc.pending, tc.lost, tc.duplicated, tc.reordered, tc.unexpected, tc.recovered}
			if !slices.Equal(got, want) {
				t.Errorf("acked, failed, pending, lost, duplicated, reordered, unexpected, recovered = %v, want %v", got, want)
			}
			if v.Attempted != v.Acked+v.Failed+v.Pending {
				t.Errorf("attempted %d ≠ acked+failed+pending", v.Attempted)
			}
			if wantOK := tc.lost+tc.duplicated+tc.reordered+tc.unexpected == 0; v.OK() != wantOK {
				t.Errorf("OK() = %v, want %v: %v", v.OK(), wantOK, v)
			}
			var all []string
			for _, s := range v.Subscribers {
				for _, l := range [][]string{s.LostExamples, s.DuplicatedExamples, s.ReorderedExamples, s.UnexpectedExamples} {
					all = append(all, l...)
				}
			}
			for _, e := range tc.examples {
				if !slices.ContainsFunc(all, func(s string) bool { return strings.Contains(s, e) }) {
					t.Errorf("no example %q in %q", e, all)
				}
			}
		})
	}
}

func TestVerdictPublishersAndString(t *testing.T) {
	_, v := script{"sub s1 order.**", "pub b y1 acked", "pub a x1 failed", "pub a x2 acked", "pub b y2 pending",
		"got s1 y1 x2"}.run(t)
	want := []PublisherVerdict{{Name: "a", Attempted: 2, Acked: 1, Failed: 1}, {Name: "b", Attempted: 2, Acked: 1, Pending: 1}}
	if !slices.Equal(v.Publishers, want) {
		t.Errorf("publishers %+v, want %+v", v.Publishers, want)
	}
	s := v.String()
	for _, part := range []string{"published 4 (acked 2, failed 1, info 0, pending 1)", "delivered s1=2", "lost 0, duplicated 0, reordered 0, unexpected 0, recovered 0", "latency p50 "} {
		if !strings.Contains(s, part) {
			t.Errorf("String() = %q, lacks %q", s, part)
		}
	}
}

func TestCheckLatency(t *testing.T) {
	clock := newFakeClock()
	h := NewHistory(WithClock(clock.now))
	s1, _ := h.Subscriber("s1", "**")
	s2, _ := h.Subscriber("s2", "**")
	sig := bus.Signal{ID: "x", Type: "t"}
	h.Publisher("a").Attempt(&sig).Ack()
	at := clock.now()
	s1.DeliverAt("x", at.Add(10*time.Millisecond))
	s2.DeliverAt("x", at.Add(30*time.Millisecond))
	s2.DeliverAt("x", at.Add(time.Hour)) // a duplicate: not a latency
	v := h.Check()
	// The attempt was read two ticks before at (the ack read the other).
	if n, lo, hi := v.Latency.Count(), v.Latency.Min(), v.Latency.Max(); n != 2 || lo != 12*time.Millisecond || hi != 32*time.Millisecond {
		t.Errorf("latency count %d min %v max %v; want 2, 12ms, 32ms", n, lo, hi)
	}
	if p := h.Progress(); p.Latency.Count() != 2 || p.Latency.Max() != 32*time.Millisecond || p.Deliveries != 3 || p.Acked != 1 || p.Attempted != 1 {
		t.Errorf("progress %+v", p)
	}
}

func TestAttempt(t *testing.T) {
	h := NewHistory()
	p := h.Publisher("a")
	if h.Publisher("a") != p {
		t.Error("Publisher(a) twice gave two publishers")
	}
	var sig bus.Signal
	op := p.Attempt(&sig)
	if sig.ID == "" || op.Seq() != 1 {
		t.Fatalf("Attempt of a signal without id: id %q seq %d", sig.ID, op.Seq())
	}
	again := p.Attempt(&sig)
	next := p.Attempt(&bus.Signal{ID: "other"})
	if again.Seq() != 1 || next.Seq() != 2 {
		t.Errorf("retry seq %d, next seq %d; want 1, 2", again.Seq(), next.Seq())
	}
	op.Ack()
	op.Fail(errors.New("late"))
	if v := h.Check(); v.Attempted != 2 || v.Acked != 1 || v.Failed != 0 || v.Pending != 1 {
		t.Errorf("verdict %v", v)
	}
	var zero Op
	zero.Ack()
	zero.Fail(nil)
	if zero.Seq() != 0 {
		t.Error("zero Op has a sequence number")
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), `already attempted by "a"`) {
			t.Errorf("an id attempted by two publishers: recover() = %v", r)
		}
	}()
	h.Publisher("b").Attempt(&bus.Signal{ID: "other"})
}

func TestPublish(t *testing.T) {
	var h History // the zero value works
	p := h.Publisher("a")
	boom := errors.New("boom")
	var sent []bus.Signal
	publish := func(_ context.Context, s ...bus.Signal) error {
		sent = append(sent, s...)
		if s[0].Type == "bad" {
			return boom
		}
		return nil
	}
	if err := p.Publish(t.Context(), bus.Signal{Type: "good"}, publish); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), bus.Signal{Type: "bad"}, publish); !errors.Is(err, boom) {
		t.Fatalf("Publish = %v, want boom", err)
	}
	if len(sent) != 2 || sent[0].ID == "" || sent[1].ID == "" {
		t.Fatalf("published %+v: ids must be filled before publishing", sent)
	}
	if v := h.Check(); v.Acked != 1 || v.Failed != 1 {
		t.Errorf("verdict %v", v)
	}
}

func TestSubscriberErrors(t *testing.T) {
	h := NewHistory()
	if _, err := h.Subscriber("s", "order..x"); err == nil || !strings.Contains(err.Error(), `subscriber "s"`) {
		t.Errorf("bad pattern: %v", err)
	}
	s, err := h.Subscriber("s", "order.*")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := h.Subscriber("s", "order.*"); err != nil || again != s {
		t.Errorf("same subscriber again: %v, %v", again == s, err)
	}
	if _, err := h.Subscriber("s", "order.**"); err == nil || !strings.Contains(err.Error(), `wants "order.*"`) {
		t.Errorf("same name, other pattern: %v", err)
	}
	if err := s.Handle(t.Context(), bus.Signal{ID: "z"}); err != nil {
		t.Errorf("Handle = %v", err)
	}
}

func TestAwaitDelivered(t *testing.T) {
	h := NewHistory()
	s, _ := h.Subscriber("s", "**")
	p := h.Publisher("a")
	var ids []string
	for range 20 {
		sig := bus.Signal{Type: "t"}
		p.Attempt(&sig).Ack()
		ids = append(ids, sig.ID)
	}
	if m := h.Missing(); m != 20 {
		t.Fatalf("Missing = %d, want 20", m)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	err := h.AwaitDelivered(ctx, time.Millisecond)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "20 deliveries") {
		t.Fatalf("AwaitDelivered with nothing delivered = %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, id := range ids {
			s.DeliverAt(id, time.Now())
		}
	})
	if err := h.AwaitDelivered(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if v := h.Check(); !v.OK() || v.Subscribers[0].Delivered != 20 {
		t.Errorf("verdict %v", v)
	}
}

// TestConcurrent records from many goroutines at once, as a run does,
// while others read the progress: run with -race.
func TestConcurrent(t *testing.T) {
	const pubs, subs, perPub = 4, 3, 500
	h := NewHistory()
	boxes := make([]chan string, subs)
	recorders := make([]*Subscriber, subs)
	for i := range subs {
		boxes[i] = make(chan string, pubs*perPub)
		recorders[i], _ = h.Subscriber(fmt.Sprintf("s%d", i), "order.**")
	}
	var pubWG, subWG sync.WaitGroup
	for i := range subs {
		subWG.Go(func() {
			for id := range boxes[i] {
				recorders[i].Deliver(bus.Signal{ID: id})
			}
		})
	}
	for i := range pubs {
		pubWG.Go(func() {
			p := h.Publisher(fmt.Sprintf("p%d", i))
			for range perPub {
				_ = p.Publish(context.Background(), bus.Signal{Type: "order.created"}, func(_ context.Context, s ...bus.Signal) error {
					for _, b := range boxes {
						b <- s[0].ID
					}
					return nil
				})
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = h.Progress()
				_ = h.Missing()
			}
		}
	})
	pubWG.Wait()
	for _, b := range boxes {
		close(b)
	}
	subWG.Wait()
	close(stop)
	readers.Wait()
	v := h.Check()
	if !v.OK() || v.Acked != pubs*perPub || v.Latency.Count() != pubs*perPub*subs {
		t.Fatalf("verdict %v", v)
	}
	for _, s := range v.Subscribers {
		if s.Delivered != pubs*perPub {
			t.Errorf("%s delivered %d", s.Name, s.Delivered)
		}
	}
}

// TestCheckProperty builds random runs with known faults and checks that
// Check finds exactly those: from a correct delivery order (each
// publisher's signals in order, publishers interleaved at random, failed
// signals delivered or not), it drops acked deliveries (lost), repeats
// deliveries right after themselves (duplicated) and swaps disjoint pairs
// of adjacent deliveries of one publisher (each a reorder).
func TestCheckProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for run := range 200 {
		h := NewHistory()
		s, _ := h.Subscriber("s", "**")
		type sent struct {
			id    string
			pub   int
			acked bool
		}
		npub := 1 + rng.IntN(4)
		queues := make([][]sent, npub)
		for p := range npub {
			pr := h.Publisher(fmt.Sprintf("p%d", p))
			for range rng.IntN(30) {
				sig := bus.Signal{Type: "t"}
				op := pr.Attempt(&sig)
				acked := rng.IntN(5) > 0
				if acked {
					op.Ack()
				} else {
					op.Fail(errors.New("timeout"))
				}
				queues[p] = append(queues[p], sent{sig.ID, p, acked})
			}
		}
		var order []sent
		for {
			var open []int
			for p, q := range queues {
				if len(q) > 0 {
					open = append(open, p)
				}
			}
			if len(open) == 0 {
				break
			}
			p := open[rng.IntN(len(open))]
			order = append(order, queues[p][0])
			queues[p] = queues[p][1:]
		}
		var wantLost, wantRecovered int
		var kept []sent
		for _, d := range order {
			switch {
			case d.acked && rng.IntN(10) == 0:
				wantLost++
			case !d.acked && rng.IntN(2) == 0: // an unacked signal not delivered: no error
			default:
				if !d.acked {
					wantRecovered++
				}
				kept = append(kept, d)
			}
		}
		wantReordered := 0
		for i := 0; i+1 < len(kept); i++ {
			if kept[i].pub == kept[i+1].pub && rng.IntN(4) == 0 {
				kept[i], kept[i+1] = kept[i+1], kept[i]
				wantReordered++
				i++ // disjoint pairs: each swap is one reorder
			}
		}
		var final []sent
		wantDup := 0
		for _, d := range kept {
			final = append(final, d)
			if rng.IntN(8) == 0 {
				final = append(final, d)
				wantDup++
			}
		}
		for _, d := range final {
			s.Deliver(bus.Signal{ID: d.id})
		}
		v := h.Check()
		if v.Lost != wantLost || v.Duplicated != wantDup || v.Reordered != wantReordered || v.Recovered != wantRecovered || v.Unexpected != 0 {
			t.Fatalf("run %d: %v; want lost %d duplicated %d reordered %d recovered %d", run, v, wantLost, wantDup, wantReordered, wantRecovered)
		}
		if got := h.Missing(); got != wantLost {
			t.Fatalf("run %d: Missing = %d, want %d", run, got, wantLost)
		}
	}
}
