package loadtest

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// jepsenCounts is what a test expects of the Jepsen categories, for the
// totals or for one subscriber (where read is Deliveries and readOK is
// Delivered).
type jepsenCounts struct {
	read, readOK, lost, prefix, middle, postfix, onNode, inFaults, dup, reordered, unexpected, recovered int
}

func totalCounts(v Verdict) jepsenCounts {
	return jepsenCounts{v.Read, v.ReadOK, v.Lost, v.LostPrefix, v.LostMiddle, v.LostPostfix, v.LostOnNode, v.LostInFaults,
		v.Duplicated, v.Reordered, v.Unexpected, v.Recovered}
}

func subscriberCounts(s SubscriberVerdict) jepsenCounts {
	return jepsenCounts{s.Deliveries, s.Delivered, s.Lost, s.LostPrefix, s.LostMiddle, s.LostPostfix, s.LostOnNode, s.LostInFaults,
		s.Duplicated, s.Reordered, s.Unexpected, s.Recovered}
}

func faultEqual(a, b FaultVerdict) bool {
	return a.Name == b.Name && a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.Attempted == b.Attempted && a.Acked == b.Acked &&
		math.Abs(a.Availability-b.Availability) < 1e-9 && a.Lost == b.Lost && a.Recovery == b.Recovery && a.CaughtUp == b.CaughtUp
}

func TestCheckJepsenCategories(t *testing.T) {
	cases := []struct {
		name  string
		sc    script
		opts  []CheckOption
		total jepsenCounts
		subs  map[string]jepsenCounts
		pubs  map[string]PublisherVerdict // only the loss and reorder fields are compared
		// reorderedBy is subscriber → publisher → inversions.
		reorderedBy map[string]map[string]int
		faults      []FaultVerdict
		healedAt    time.Time
		recovery    time.Duration
		caughtUp    bool
		ok, valid   bool
	}{
		{
			name: "lost split into prefix, middle and postfix",
			sc: script{"sub s1 order.**", "sub s2 order.**",
				"pub a x1 acked", "pub a x2 acked", "pub a x3 acked", "pub a x4 acked", "pub a x5 acked", "pub b y1 acked", "pub b y2 acked",
				"got s1 x2 x4 y1 y2", "got s2 y1 y2"},
			total: jepsenCounts{read: 6, readOK: 6, lost: 8, prefix: 1, middle: 1, postfix: 6, onNode: 2},
			subs: map[string]jepsenCounts{
				"s1": {read: 4, readOK: 4, lost: 3, prefix: 1, middle: 1, postfix: 1},
				// s2 saw nothing of a: all postfix. x2 and x4 reached the
				// only other subscriber: lost on its node.
				"s2": {read: 2, readOK: 2, lost: 5, postfix: 5, onNode: 2},
			},
			pubs:     map[string]PublisherVerdict{"a": {Lost: 8, LostPrefix: 1, LostMiddle: 1, LostPostfix: 6}, "b": {}},
			caughtUp: true,
		},
		{
			name: "lost on node: what the other nodes all got",
			sc: script{"sub s1 order.** n1", "sub s2 order.** n2", "sub s3 order.** n3", "sub s3b order.** n3",
				"pub a x1 acked", "pub a x2 acked", "pub a x3 acked",
				"got s1 x1 x2 x3", "got s2 x1 x2 x3", "got s3 x1", "got s3b x1 x3"},
			total: jepsenCounts{read: 9, readOK: 9, lost: 3, middle: 1, postfix: 2, onNode: 3},
			subs: map[string]jepsenCounts{
				"s1":  {read: 3, readOK: 3},
				"s2":  {read: 3, readOK: 3},
				"s3":  {read: 1, readOK: 1, lost: 2, postfix: 2, onNode: 2},
				"s3b": {read: 2, readOK: 2, lost: 1, middle: 1, onNode: 1},
			},
			caughtUp: true,
		},
		{
			name: "lost on node needs every other node",
			sc: script{"sub s1 order.** n1", "sub s2 order.** n2", "sub s3 order.** n3",
				"pub a x1 acked", "got s1 x1"},
			total:    jepsenCounts{read: 1, readOK: 1, lost: 2, postfix: 2},
			caughtUp: true,
		},
		{
			name:     "a subscriber on the same node is no witness",
			sc:       script{"sub s1 order.** n1", "sub s2 order.** n1", "pub a x1 acked", "got s1 x1"},
			total:    jepsenCounts{read: 1, readOK: 1, lost: 1, postfix: 1},
			caughtUp: true,
		},
		{
			name: "lost on node only among those owed it",
			sc: script{"sub s1 order.** n1", "sub s2 order.paid n2", "sub s3 order.** n3",
				"pub a x1 acked", "got s1 x1"},
			total:    jepsenCounts{read: 1, readOK: 1, lost: 1, postfix: 1, onNode: 1},
			caughtUp: true,
		},
		{
			name: "an unknown outcome shows up later, after the new identity's: recovered, not reordered",
			sc: script{"sub s1 order.**", "pub a x1 acked", "pub a x2 info", "pub a/2 y1 acked", "pub a/2 y2 acked",
				"got s1 x1 y1 y2 x2"},
			total:    jepsenCounts{read: 4, readOK: 4, recovered: 1},
			caughtUp: true, ok: true, valid: true,
		},
		{
			name: "order inversions per publisher",
			sc: script{"sub s1 order.**", "sub s2 order.**", "pub a x1 acked", "pub a x2 acked", "pub b y1 acked", "pub b y2 acked",
				"got s1 x2 x1 y2 y1", "got s2 x1 x2 y2 y1"},
			total:       jepsenCounts{read: 8, readOK: 8, reordered: 3},
			pubs:        map[string]PublisherVerdict{"a": {Reordered: 1}, "b": {Reordered: 2}},
			reorderedBy: map[string]map[string]int{"s1": {"a": 1, "b": 1}, "s2": {"b": 1}},
			caughtUp:    true,
		},
		{
			name:     "read counts every delivery, ok the attempted signals",
			sc:       script{"sub s1 order.**", "pub a x1 acked", "pub a x2 failed", "got s1 x1 x1 ghost x2"},
			total:    jepsenCounts{read: 4, readOK: 2, dup: 1, unexpected: 1, recovered: 1},
			caughtUp: true,
		},
		{
			name: "availability during a fault and recovery after the heal",
			sc: script{"sub s1 order.**",
				"at 100", "fault cut begin",
				"at 150", "pub a x1 acked",
				"at 160", "pub a x2 info",
				"at 170", "pub a/2 y1 failed",
				"at 180", "pub a/2 y2 acked",
				"at 200", "fault cut end",
				"at 210", "pub a/2 y3 acked",
				"at 250", "got s1 x1 y2 y3"}, // 250, 251, 252
			total: jepsenCounts{read: 3, readOK: 3},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 4, Acked: 2, Availability: 0.5, Recovery: 51 * time.Millisecond, CaughtUp: true}},
			healedAt: ms(200), recovery: 51 * time.Millisecond, caughtUp: true, ok: true, valid: true,
		},
		{
			name: "a loss in the fault: not caught up",
			sc: script{"sub s1 order.**",
				"at 100", "fault cut begin",
				"at 150", "pub a x1 acked",
				"at 180", "pub a y2 acked",
				"at 200", "fault cut end",
				"at 250", "got s1 x1"},
			total: jepsenCounts{read: 1, readOK: 1, lost: 1, postfix: 1, inFaults: 1},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 2, Acked: 2, Availability: 1, Lost: 1, Recovery: 50 * time.Millisecond}},
			healedAt: ms(200), recovery: 50 * time.Millisecond,
		},
		{
			name: "every signal delivered before the heal: no recovery time",
			sc: script{"sub s1 order.**", "at 100", "fault cut begin", "at 150", "pub a x1 acked", "got s1 x1",
				"at 200", "fault cut end"},
			total: jepsenCounts{read: 1, readOK: 1},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 1, Acked: 1, Availability: 1, CaughtUp: true}},
			healedAt: ms(200), caughtUp: true, ok: true, valid: true,
		},
		{
			name: "the last heal is the one that counts",
			sc: script{"sub s1 order.**",
				"at 100", "fault one begin", "at 110", "pub a x1 acked", "at 120", "fault one end",
				"at 200", "fault two begin", "at 210", "pub a x2 acked", "at 220", "fault two end",
				"at 300", "got s1 x1 x2"},
			total: jepsenCounts{read: 2, readOK: 2},
			faults: []FaultVerdict{
				{Fault: Fault{Name: "one", Start: ms(100), End: ms(120)}, Attempted: 1, Acked: 1, Availability: 1, Recovery: 180 * time.Millisecond, CaughtUp: true},
				{Fault: Fault{Name: "two", Start: ms(200), End: ms(220)}, Attempted: 1, Acked: 1, Availability: 1, Recovery: 81 * time.Millisecond, CaughtUp: true},
			},
			healedAt: ms(220), recovery: 81 * time.Millisecond, caughtUp: true, ok: true, valid: true,
		},
		{
			name:  "a fault never healed",
			sc:    script{"sub s1 order.**", "at 100", "fault cut begin", "at 150", "pub a x1 acked", "got s1 x1"},
			total: jepsenCounts{read: 1, readOK: 1},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100)},
				Attempted: 1, Acked: 1, Availability: 1, CaughtUp: true}},
			ok: true, valid: true,
		},
		{
			name: "fast mode: a loss inside a fault is allowed",
			sc: script{"sub s1 order.**", "at 10", "pub a x1 acked", "at 100", "fault cut begin", "at 150", "pub a x2 acked",
				"at 200", "fault cut end", "at 300", "pub a x3 acked", "got s1 x1 x3"},
			opts:  []CheckOption{FastMode(0)},
			total: jepsenCounts{read: 2, readOK: 2, lost: 1, middle: 1, inFaults: 1},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 1, Acked: 1, Availability: 1, Lost: 1, Recovery: 102 * time.Millisecond}},
			healedAt: ms(200), recovery: 102 * time.Millisecond, valid: true,
		},
		{
			name: "durable mode: the same loss is not",
			sc: script{"sub s1 order.**", "at 10", "pub a x1 acked", "at 100", "fault cut begin", "at 150", "pub a x2 acked",
				"at 200", "fault cut end", "at 300", "pub a x3 acked", "got s1 x1 x3"},
			total: jepsenCounts{read: 2, readOK: 2, lost: 1, middle: 1, inFaults: 1},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 1, Acked: 1, Availability: 1, Lost: 1, Recovery: 102 * time.Millisecond}},
			healedAt: ms(200), recovery: 102 * time.Millisecond,
		},
		{
			name: "fast mode: a loss outside every fault is not allowed",
			sc: script{"sub s1 order.**", "at 10", "pub a x1 acked", "at 100", "fault cut begin", "at 150", "pub a x2 acked",
				"at 200", "fault cut end", "at 300", "pub a x3 acked", "got s1 x1 x2"},
			opts:  []CheckOption{FastMode(0)},
			total: jepsenCounts{read: 2, readOK: 2, lost: 1, postfix: 1},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 1, Acked: 1, Availability: 1, Recovery: 103 * time.Millisecond, CaughtUp: true}},
			healedAt: ms(200), recovery: 103 * time.Millisecond, caughtUp: true,
		},
		{
			name: "fast mode: the grace widens the window on both sides",
			sc: script{"sub s1 order.**", "at 95", "pub a x1 acked", "at 100", "fault cut begin",
				"at 200", "fault cut end", "at 205", "pub a x2 acked", "at 300", "pub a x3 acked", "got s1 x3"},
			opts:  []CheckOption{FastMode(10 * time.Millisecond)},
			total: jepsenCounts{read: 1, readOK: 1, lost: 2, prefix: 2, inFaults: 2},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Lost: 2, Recovery: 0}},
			healedAt: ms(200), valid: true,
		},
		{
			name: "fast mode: beyond the grace",
			sc: script{"sub s1 order.**", "at 95", "pub a x1 acked", "at 100", "fault cut begin",
				"at 200", "fault cut end", "at 205", "pub a x2 acked", "at 300", "pub a x3 acked", "got s1 x3"},
			opts:  []CheckOption{FastMode(time.Millisecond)},
			total: jepsenCounts{read: 1, readOK: 1, lost: 2, prefix: 2, inFaults: 0},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Recovery: 0}},
			healedAt: ms(200),
		},
		{
			name: "fast mode: a duplicate inside a fault is still invalid",
			sc: script{"sub s1 order.**", "at 100", "fault cut begin", "at 150", "pub a x1 acked",
				"at 200", "fault cut end", "got s1 x1 x1"},
			opts:  []CheckOption{FastMode(time.Second)},
			total: jepsenCounts{read: 2, readOK: 1, dup: 1},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 1, Acked: 1, Availability: 1, CaughtUp: true, Recovery: time.Millisecond}},
			healedAt: ms(200), recovery: time.Millisecond, caughtUp: true,
		},
		{
			name: "fast mode: a reorder inside a fault is still invalid",
			sc: script{"sub s1 order.**", "at 100", "fault cut begin", "at 150", "pub a x1 acked", "pub a x2 acked",
				"at 200", "fault cut end", "got s1 x2 x1"},
			opts:        []CheckOption{FastMode(time.Second)},
			total:       jepsenCounts{read: 2, readOK: 2, reordered: 1},
			reorderedBy: map[string]map[string]int{"s1": {"a": 1}},
			faults: []FaultVerdict{{Fault: Fault{Name: "cut", Start: ms(100), End: ms(200)},
				Attempted: 2, Acked: 2, Availability: 1, CaughtUp: true, Recovery: 2 * time.Millisecond}},
			healedAt: ms(200), recovery: 2 * time.Millisecond, caughtUp: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, v := tc.sc.run(t, tc.opts...)
			if got := totalCounts(v); got != tc.total {
				t.Errorf("totals %+v\n  want %+v", got, tc.total)
			}
			for _, s := range v.Subscribers {
				if want, ok := tc.subs[s.Name]; ok && subscriberCounts(s) != want {
					t.Errorf("%s: %+v\n  want %+v", s.Name, subscriberCounts(s), want)
				}
				if want := tc.reorderedBy[s.Name]; len(want)+len(s.ReorderedBy) > 0 && !maps.Equal(s.ReorderedBy, want) {
					t.Errorf("%s reordered by %v, want %v", s.Name, s.ReorderedBy, want)
				}
			}
			for _, p := range v.Publishers {
				want, ok := tc.pubs[p.Name]
				if !ok {
					continue
				}
				if p.Lost != want.Lost || p.LostPrefix != want.LostPrefix || p.LostMiddle != want.LostMiddle || p.LostPostfix != want.LostPostfix || p.Reordered != want.Reordered {
					t.Errorf("publisher %+v, want %+v", p, want)
				}
			}
			if !slices.EqualFunc(v.Faults, tc.faults, faultEqual) {
				t.Errorf("faults %+v\n  want %+v", v.Faults, tc.faults)
			}
			if !v.HealedAt.Equal(tc.healedAt) || v.Recovery != tc.recovery || v.CaughtUp != tc.caughtUp {
				t.Errorf("healed at %v, recovery %v, caught up %v; want %v, %v, %v", v.HealedAt, v.Recovery, v.CaughtUp, tc.healedAt, tc.recovery, tc.caughtUp)
			}
			if v.OK() != tc.ok || v.Valid() != tc.valid {
				t.Errorf("OK %v Valid %v, want %v %v: %v", v.OK(), v.Valid(), tc.ok, tc.valid, v)
			}
			wantMode := ModeDurable
			if len(tc.opts) > 0 {
				wantMode = ModeFast
			}
			if v.Mode != wantMode {
				t.Errorf("mode %q, want %q", v.Mode, wantMode)
			}
		})
	}
}

func TestOutcomes(t *testing.T) {
	cases := []struct {
		calls string // a sequence of a (ack), f (fail), i (info)
		want  Outcome
	}{
		{"", Pending},
		{"a", Acked},
		{"f", Failed},
		{"i", Info},
		{"fi", Info},
		{"if", Info},
		{"ia", Acked},
		{"ai", Acked},
		{"af", Acked},
		{"fa", Acked},
		{"fif", Info},
	}
	for _, tc := range cases {
		t.Run(tc.calls, func(t *testing.T) {
			h := NewHistory()
			op := h.Publisher("p").Attempt(&bus.Signal{ID: "x"})
			for _, c := range tc.calls {
				switch c {
				case 'a':
					op.Ack()
				case 'f':
					op.Fail(errors.New("refused"))
				case 'i':
					op.Info(errors.New("timeout"))
				}
			}
			v := h.Check()
			got := map[Outcome]int{Acked: v.Acked, Failed: v.Failed, Info: v.Info, Pending: v.Pending}
			for o, n := range got {
				if want := map[bool]int{true: 1}[o == tc.want]; n != want {
					t.Errorf("%v: %d, want %d (%v)", o, n, want, v)
				}
			}
			p := h.Progress()
			if p.Acked != v.Acked || p.Failed != v.Failed || p.Info != v.Info {
				t.Errorf("progress %+v, verdict %v", p, v)
			}
		})
	}
	if s := Info.String(); s != "info" {
		t.Errorf("Info.String() = %q", s)
	}
}

func TestPublisherIdentities(t *testing.T) {
	h := NewHistory(WithNode("n1"))
	p := h.Publisher("n1")
	if p.Node() != "n1" || p.Name() != "n1" {
		t.Fatalf("publisher %q on %q", p.Name(), p.Node())
	}
	a := p.Attempt(&bus.Signal{ID: "x1"})
	b := p.Attempt(&bus.Signal{ID: "x2"})
	next := a.Info(errors.New("timeout"))
	if next.Name() != "n1/2" || next.Node() != "n1" {
		t.Fatalf("Info gave %q on %q, want n1/2 on n1", next.Name(), next.Node())
	}
	if again := b.Info(errors.New("timeout")); again != next || p.Next() != next {
		t.Error("every info of one identity must lead to the same next identity")
	}
	if op := next.Attempt(&bus.Signal{ID: "y1"}); op.Seq() != 1 || op.Publisher() != next {
		t.Errorf("the new identity counts from 1: seq %d", op.Seq())
	}
	if n := next.Next().Name(); n != "n1/3" {
		t.Errorf("next of n1/2 is %q, want n1/3", n)
	}
	if (Op{}).Info(nil) != nil || (Op{}).Publisher() != nil {
		t.Error("the zero Op has a publisher")
	}

	v := h.Check()
	var names []string
	for _, pv := range v.Publishers {
		names = append(names, pv.Name+"@"+pv.Node)
	}
	if want := []string{"n1@n1", "n1/2@n1"}; !slices.Equal(names, want) {
		t.Errorf("publishers %v, want %v", names, want)
	}

	defer func() {
		if r := recover(); r == nil || !strings.Contains(strings.ToLower(r.(string)), `is on node "n1", not "n2"`) {
			t.Errorf("PublisherOn another node: recover() = %v", r)
		}
	}()
	h.PublisherOn("n2", "n1")
}

func TestSplitGeneration(t *testing.T) {
	cases := []struct {
		name string
		base string
		gen  int
	}{
		{"n1", "n1", 1},
		{"n1/2", "n1", 2},
		{"n1/10", "n1", 10},
		{"a/b/3", "a/b", 3},
		{"n1/1", "n1/1", 1},
		{"n1/0", "n1/0", 1},
		{"n1/02", "n1/02", 1},
		{"n1/", "n1/", 1},
		{"n1/x", "n1/x", 1},
		{"/2", "", 2},
		{"n1/99999999999999999999", "n1/99999999999999999999", 1},
	}
	for _, tc := range cases {
		if base, gen := splitGeneration(tc.name); base != tc.base || gen != tc.gen {
			t.Errorf("splitGeneration(%q) = %q, %d; want %q, %d", tc.name, base, gen, tc.base, tc.gen)
		}
	}
	// Publishers sort by base, then generation.
	h := NewHistory()
	for _, n := range []string{"b", "a/10", "a/2", "a"} {
		h.Publisher(n).Attempt(&bus.Signal{})
	}
	var names []string
	for _, p := range h.Check().Publishers {
		names = append(names, p.Name)
	}
	if want := []string{"a", "a/2", "a/10", "b"}; !slices.Equal(names, want) {
		t.Errorf("publishers %v, want %v", names, want)
	}
}

func TestSubscriberOn(t *testing.T) {
	h := NewHistory(WithNode("n1"))
	s, err := h.Subscriber("s", "order.**")
	if err != nil || s.Node() != "n1" {
		t.Fatalf("Subscriber: node %q, %v", s.Node(), err)
	}
	if again, err := h.SubscriberOn("n1", "s", "order.**"); err != nil || again != s {
		t.Errorf("SubscriberOn the same node: %v", err)
	}
	if _, err := h.SubscriberOn("n2", "s", "order.**"); err == nil || !strings.Contains(err.Error(), `on node "n1", not "n2"`) {
		t.Errorf("SubscriberOn another node: %v", err)
	}
	if other, err := h.SubscriberOn("n2", "t", "order.**"); err != nil || other.Node() != "n2" {
		t.Errorf("SubscriberOn n2: %v", err)
	}
}

func TestFaults(t *testing.T) {
	h := NewHistory(WithClock(newFakeClock().now))
	heal := h.StartFault("cut")
	if fs := h.Faults(); len(fs) != 1 || !fs[0].End.IsZero() {
		t.Fatalf("faults while the fault lasts: %+v", fs)
	}
	heal()
	if err := h.AddFault(Fault{Name: "early", Start: epoch}); err != nil {
		t.Fatal(err)
	}
	fs := h.Faults()
	if len(fs) != 2 || fs[0].Name != "early" || fs[1].Name != "cut" || !fs[1].End.After(fs[1].Start) {
		t.Errorf("faults %+v", fs)
	}
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{Start: epoch}, "no name"},
		{Fault{Name: "x"}, "no start"},
		{Fault{Name: "x", Start: epoch, End: epoch.Add(-1)}, "before its start"},
	} {
		if err := h.AddFault(tc.f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddFault(%+v) = %v, want %q", tc.f, err, tc.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("StartFault without a name did not panic")
		}
	}()
	h.StartFault("")
}

func TestVerdictJSON(t *testing.T) {
	_, v := script{"sub s1 order.** n1", "pub a x1 acked", "pub a x2 acked", "pub a x3 info", "at 100", "fault cut begin",
		"at 200", "fault cut end", "got s1 x1 x3"}.run(t, FastMode(0))
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"ok": false, "valid": false, "mode": "fast", "attempted": 3.0, "acked": 2.0, "info": 1.0, "read": 2.0, "read_ok": 2.0,
		"lost": 1.0, "lost_middle": 1.0, "recovered": 1.0, "caught_up": false, "torn_lines": 0.0,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	lat, _ := got["latency"].(map[string]any)
	if lat["count"] != 2.0 || lat["p99_ns"] == nil {
		t.Errorf("latency %v", got["latency"])
	}
	subs, _ := got["subscribers"].([]any)
	if len(subs) != 1 || subs[0].(map[string]any)["node"] != "n1" || subs[0].(map[string]any)["lost_examples"] == nil {
		t.Errorf("subscribers %v", got["subscribers"])
	}
	faults, _ := got["faults"].([]any)
	if len(faults) != 1 || faults[0].(map[string]any)["name"] != "cut" || faults[0].(map[string]any)["availability"] != 0.0 {
		t.Errorf("faults %v", got["faults"])
	}
	for _, k := range []string{"Latency", "LostPrefix", "healed_at"} {
		if _, ok := got[k]; ok != (k == "healed_at") {
			t.Errorf("key %s present: %v", k, ok)
		}
	}
}

func TestVerdictStringFaults(t *testing.T) {
	_, v := script{"sub s1 order.**", "at 100", "fault cut begin", "at 150", "pub a x1 acked", "pub a x2 acked",
		"at 200", "fault cut end", "at 250", "got s1 x1"}.run(t, FastMode(0))
	s := v.String()
	for _, part := range []string{"lost prefix 0 middle 0 postfix 1, on node 0, in faults 1", "1 faults, recovery 50ms (not caught up)", "fast mode: valid"} {
		if !strings.Contains(s, part) {
			t.Errorf("String() = %q, lacks %q", s, part)
		}
	}
}
