package loadtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxExamples bounds the example ids a verdict keeps per category and
// subscriber.
const maxExamples = 5

// Mode is the contract a run is judged by.
type Mode string

const (
	// ModeDurable: nothing acked is lost, nothing duplicated or reordered.
	ModeDurable Mode = "durable"
	// ModeFast: at most once; losses only inside fault windows, never a
	// duplicate, never a reorder.
	ModeFast Mode = "fast"
)

// CheckOption configures Check.
type CheckOption func(*checkConfig)

type checkConfig struct {
	mode  Mode
	grace time.Duration
}

// FastMode judges the run by fast mode's contract (Verdict.Valid): a
// loss is allowed when the publish overlapped a fault window widened by
// grace on both sides (signals in flight when the fault began, routes
// reconnecting after the heal); a loss outside every window, a
// duplicate or a reorder is not.
func FastMode(grace time.Duration) CheckOption {
	return func(c *checkConfig) { c.mode, c.grace = ModeFast, max(grace, 0) }
}

// Verdict is what Check found in a History, in the categories of
// Jepsen's queue checker (jepsen.checker/total-queue): an acked signal
// never delivered to a subscriber that wants it is lost; a signal
// delivered twice to one subscriber is duplicated; a delivery of an id
// never attempted, or of a type the subscriber does not want, is
// unexpected; a delivered signal whose publish was not acked is
// recovered, which is no error. To these it adds order: a signal
// delivered after a later one of the same publisher is reordered
// (Jepsen's nonmonotonic).
//
// Losses are split three ways. By position in their publisher's
// sequence, as the subscriber saw it: before the first signal of that
// publisher it received (prefix), between two it received (middle: a
// hole), after the last (postfix: the tail never arrived; all of them
// when it received none). On node: lost by one subscriber although
// every subscriber on another node that was owed it received it (how a
// split brain shows once healed). In faults: the publish overlapped a
// fault window (what fast mode may lose).
//
// Counts of lost, duplicated, reordered and unexpected are per pair of a
// signal and a subscriber, summed over the subscribers.
type Verdict struct {
	Mode Mode `json:"mode"`

	Attempted int `json:"attempted"` // distinct signals attempted (Jepsen's attempts)
	Acked     int `json:"acked"`
	Failed    int `json:"failed"`  // the publish said it was not done
	Info      int `json:"info"`    // the outcome is unknown (a timeout)
	Pending   int `json:"pending"` // no outcome recorded (indeterminate)
	Read      int `json:"read"`    // every delivery, duplicates included, summed over subscribers
	ReadOK    int `json:"read_ok"` // distinct attempted signals delivered, summed over subscribers (Jepsen's ok)

	Publishers  []PublisherVerdict  `json:"publishers"`  // by name
	Subscribers []SubscriberVerdict `json:"subscribers"` // in registration order
	Faults      []FaultVerdict      `json:"faults,omitempty"`

	// Sums over Subscribers.
	Lost         int `json:"lost"`
	LostPrefix   int `json:"lost_prefix"`
	LostMiddle   int `json:"lost_middle"`
	LostPostfix  int `json:"lost_postfix"`
	LostOnNode   int `json:"lost_on_node"`
	LostInFaults int `json:"lost_in_faults"`
	Duplicated   int `json:"duplicated"`
	Reordered    int `json:"reordered"`
	Unexpected   int `json:"unexpected"`
	// Recovered counts distinct signals not acked but delivered to at
	// least one subscriber.
	Recovered int `json:"recovered"`

	// HealedAt is the end of the last fault window; zero without faults
	// or while one lasts. Recovery is the time from then until every
	// signal owed and attempted before then had reached its subscribers
	// (0 if all had before the heal); CaughtUp says none of them is
	// lost, else Recovery is only the time to the last that arrived.
	HealedAt time.Time     `json:"healed_at,omitzero"`
	Recovery time.Duration `json:"recovery_ns"`
	CaughtUp bool          `json:"caught_up"`

	// TornLines is the number of torn lines ReadHistory skipped.
	TornLines int `json:"torn_lines"`

	// Latency is attempt → first delivery, over every subscriber and every
	// signal attempted.
	Latency Histogram `json:"-"`
}

// PublisherVerdict is one publisher's share of the attempts, and of the
// losses and reorders (summed over the subscribers).
type PublisherVerdict struct {
	Name      string `json:"name"`
	Node      string `json:"node,omitempty"`
	Attempted int    `json:"attempted"`
	Acked     int    `json:"acked"`
	Failed    int    `json:"failed"`
	Info      int    `json:"info"`
	Pending   int    `json:"pending"`

	Lost        int `json:"lost"`
	LostPrefix  int `json:"lost_prefix"`
	LostMiddle  int `json:"lost_middle"`
	LostPostfix int `json:"lost_postfix"`
	Reordered   int `json:"reordered"`
}

// SubscriberVerdict is what one subscriber received.
type SubscriberVerdict struct {
	Name       string `json:"name"`
	Node       string `json:"node,omitempty"`
	Pattern    string `json:"pattern"`
	Expected   int    `json:"expected"`   // acked signals it wants, attempted once it was there
	Delivered  int    `json:"delivered"`  // distinct signals received
	Deliveries int    `json:"deliveries"` // every delivery, duplicates included

	Lost         int `json:"lost"` // expected, never received
	LostPrefix   int `json:"lost_prefix"`
	LostMiddle   int `json:"lost_middle"`
	LostPostfix  int `json:"lost_postfix"`
	LostOnNode   int `json:"lost_on_node"`   // lost here, received by every subscriber owed it on every other node
	LostInFaults int `json:"lost_in_faults"` // lost, published while a fault lasted
	Duplicated   int `json:"duplicated"`     // received more than once
	Reordered    int `json:"reordered"`      // received after a signal of the same publisher with a higher sequence number
	Unexpected   int `json:"unexpected"`     // never attempted, or of a type it does not want
	Recovered    int `json:"recovered"`      // received, though the publish was not acked

	// ReorderedBy is Reordered per publisher.
	ReorderedBy map[string]int `json:"reordered_by,omitempty"`

	// Examples of each error, at most maxExamples each: "publisher#seq id"
	// (Unexpected: the id).
	LostExamples       []string `json:"lost_examples,omitempty"`
	DuplicatedExamples []string `json:"duplicated_examples,omitempty"`
	ReorderedExamples  []string `json:"reordered_examples,omitempty"`
	UnexpectedExamples []string `json:"unexpected_examples,omitempty"`
}

// FaultVerdict is what happened during one fault window.
type FaultVerdict struct {
	Fault
	// Attempted and Acked count the signals attempted in the window;
	// Availability is Acked/Attempted, 0 when nothing was attempted.
	Attempted    int     `json:"attempted"`
	Acked        int     `json:"acked"`
	Availability float64 `json:"availability"`
	// Lost counts the lost pairs whose publish overlapped the window.
	Lost int `json:"lost"`
	// Recovery and CaughtUp are as Verdict's, from this window's end.
	Recovery time.Duration `json:"recovery_ns"`
	CaughtUp bool          `json:"caught_up"`
}

// OK reports whether the run kept every durable-mode guarantee: nothing
// lost, duplicated, reordered or unexpected. It does not depend on the
// mode.
func (v Verdict) OK() bool {
	return v.Lost == 0 && v.Duplicated == 0 && v.Reordered == 0 && v.Unexpected == 0
}

// Valid reports whether the run kept the contract of its Mode: OK in
// durable mode; in fast mode, no loss outside the fault windows and
// nothing duplicated, reordered or unexpected.
func (v Verdict) Valid() bool {
	if v.Mode == ModeFast {
		return v.Lost == v.LostInFaults && v.Duplicated == 0 && v.Reordered == 0 && v.Unexpected == 0
	}
	return v.OK()
}

// String is the verdict on one line.
func (v Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "published %d (acked %d, failed %d, info %d, pending %d); delivered", v.Attempted, v.Acked, v.Failed, v.Info, v.Pending)
	for _, s := range v.Subscribers {
		fmt.Fprintf(&b, " %s=%d", s.Name, s.Delivered)
	}
	fmt.Fprintf(&b, "; lost %d, duplicated %d, reordered %d, unexpected %d, recovered %d",
		v.Lost, v.Duplicated, v.Reordered, v.Unexpected, v.Recovered)
	if v.Lost > 0 {
		fmt.Fprintf(&b, "; lost prefix %d middle %d postfix %d, on node %d, in faults %d", v.LostPrefix, v.LostMiddle, v.LostPostfix, v.LostOnNode, v.LostInFaults)
	}
	if len(v.Faults) > 0 {
		fmt.Fprintf(&b, "; %d faults", len(v.Faults))
		if !v.HealedAt.IsZero() {
			fmt.Fprintf(&b, ", recovery %v", round(v.Recovery))
			if !v.CaughtUp {
				b.WriteString(" (not caught up)")
			}
		}
	}
	if v.Latency.Count() > 0 {
		fmt.Fprintf(&b, "; latency p50 %v p99 %v max %v", round(v.Latency.Quantile(0.5)), round(v.Latency.Quantile(0.99)), round(v.Latency.Max()))
	}
	if v.Mode == ModeFast {
		verdict := "valid"
		if !v.Valid() {
			verdict = "invalid"
		}
		fmt.Fprintf(&b, "; fast mode: %s", verdict)
	}
	return b.String()
}

// round shortens a latency for display: microseconds below a
// millisecond, then three or four significant digits.
func round(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// Check judges the history as it stands: call it once the run is over
// and delivery has settled (AwaitDelivered), or every signal still on its
// way counts as lost. It judges by durable mode's contract unless
// FastMode says otherwise; the counts are the same in either mode.
func (h *History) Check(opts ...CheckOption) Verdict {
	cfg := checkConfig{mode: ModeDurable}
	for _, o := range opts {
		o(&cfg)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c := checker{h: h, cfg: cfg, pubs: map[*Publisher]*PublisherVerdict{}}
	return c.run()
}

// checker is one run of Check; h.mu is held throughout.
type checker struct {
	h    *History
	cfg  checkConfig
	v    Verdict
	pubs map[*Publisher]*PublisherVerdict
}

// lostPair is a signal (an index in h.ops) lost by a subscriber.
type lostPair struct{ op, sub int }

func (c *checker) run() Verdict {
	h, v := c.h, &c.v
	v.Mode = c.cfg.mode
	v.TornLines = h.torn
	v.Attempted = len(h.ops)
	for i := range h.ops {
		rec := &h.ops[i]
		p := c.publisher(rec.pub)
		p.Attempted++
		switch rec.outcome {
		case Acked:
			v.Acked++
			p.Acked++
		case Failed:
			v.Failed++
			p.Failed++
		case Info:
			v.Info++
			p.Info++
		default:
			v.Pending++
			p.Pending++
		}
	}
	c.faultWindows()

	recovered := map[string]bool{}
	var lost []lostPair
	spans := make([]map[*Publisher]seqSpan, len(h.subs))
	for si, s := range h.subs {
		sv, span, l := c.subscriber(si, s, recovered)
		v.Subscribers = append(v.Subscribers, sv)
		spans[si] = span
		lost = append(lost, l...)
	}
	v.Recovered = len(recovered)
	c.classifyLost(lost, spans)
	for i := range v.Subscribers {
		sv := &v.Subscribers[i]
		v.Lost += sv.Lost
		v.LostPrefix += sv.LostPrefix
		v.LostMiddle += sv.LostMiddle
		v.LostPostfix += sv.LostPostfix
		v.LostOnNode += sv.LostOnNode
		v.LostInFaults += sv.LostInFaults
		v.Duplicated += sv.Duplicated
		v.Reordered += sv.Reordered
		v.Unexpected += sv.Unexpected
		v.Read += sv.Deliveries
	}

	v.CaughtUp = true
	open := false
	for i := range v.Faults {
		f := &v.Faults[i]
		if f.Attempted > 0 {
			f.Availability = float64(f.Acked) / float64(f.Attempted)
		}
		if f.End.IsZero() {
			open = true
		} else if v.HealedAt.IsZero() || f.End.After(v.HealedAt) {
			v.HealedAt, v.Recovery, v.CaughtUp = f.End, f.Recovery, f.CaughtUp
		}
	}
	if open { // not healed
		v.HealedAt, v.Recovery, v.CaughtUp = time.Time{}, 0, false
	}

	for _, p := range c.pubs {
		v.Publishers = append(v.Publishers, *p)
	}
	slices.SortFunc(v.Publishers, func(a, b PublisherVerdict) int {
		ab, ag := splitGeneration(a.Name)
		bb, bg := splitGeneration(b.Name)
		return cmp.Or(strings.Compare(ab, bb), cmp.Compare(ag, bg), strings.Compare(a.Name, b.Name))
	})
	return *v
}

// publisher is p's verdict, made on first use.
func (c *checker) publisher(p *Publisher) *PublisherVerdict {
	pv := c.pubs[p]
	if pv == nil {
		pv = &PublisherVerdict{Name: p.name, Node: p.node}
		c.pubs[p] = pv
	}
	return pv
}

// faultWindows makes a FaultVerdict per window, by start, and counts the
// signals attempted in each.
func (c *checker) faultWindows() {
	h, v := c.h, &c.v
	for _, f := range h.faults {
		v.Faults = append(v.Faults, FaultVerdict{Fault: f, CaughtUp: true})
	}
	slices.SortStableFunc(v.Faults, func(a, b FaultVerdict) int { return a.Start.Compare(b.Start) })
	for i := range h.ops {
		rec := &h.ops[i]
		for j := range v.Faults {
			f := &v.Faults[j]
			if !rec.at.Before(f.Start) && (f.End.IsZero() || !rec.at.After(f.End)) {
				f.Attempted++
				if rec.outcome == Acked {
					f.Acked++
				}
			}
		}
	}
}

// seqSpan is the lowest and highest sequence number of a publisher's
// signals that a subscriber received.
type seqSpan struct{ lo, hi uint64 }

// subscriber judges one subscriber's deliveries; it adds their latencies
// to the verdict's and the ids of the unacked signals it received to
// recovered, and returns the span of each publisher's signals it
// received and the signals it lost.
func (c *checker) subscriber(si int, s *Subscriber, recovered map[string]bool) (SubscriberVerdict, map[*Publisher]seqSpan, []lostPair) {
	h, v := c.h, &c.v
	sv := SubscriberVerdict{Name: s.name, Node: s.node, Pattern: s.pattern.String(), Deliveries: len(s.deliveries)}
	highest := map[*Publisher]uint64{} // highest sequence number delivered so far
	spans := map[*Publisher]seqSpan{}
	count := make(map[string]int, len(s.seen))
	first := make(map[string]time.Time, len(s.seen))
	for _, d := range s.deliveries {
		count[d.id]++
		i, known := h.byID[d.id]
		if !known {
			if count[d.id] == 1 {
				sv.Unexpected++
				example(&sv.UnexpectedExamples, d.id)
			} else if count[d.id] == 2 {
				sv.Duplicated++
				example(&sv.DuplicatedExamples, d.id)
			}
			continue
		}
		rec := &h.ops[i]
		switch count[d.id] {
		case 1:
		case 2:
			sv.Duplicated++
			example(&sv.DuplicatedExamples, label(rec))
			continue
		default:
			continue
		}
		first[d.id] = d.at
		sv.Delivered++
		v.Latency.Record(d.at.Sub(rec.at))
		if sp, ok := spans[rec.pub]; ok {
			spans[rec.pub] = seqSpan{min(sp.lo, rec.seq), max(sp.hi, rec.seq)}
		} else {
			spans[rec.pub] = seqSpan{rec.seq, rec.seq}
		}
		if !s.pattern.Match(rec.typ) {
			sv.Unexpected++
			example(&sv.UnexpectedExamples, label(rec)+" ("+rec.typ+")")
		}
		if rec.outcome != Acked {
			sv.Recovered++
			recovered[rec.id] = true
		}
		if top, ok := highest[rec.pub]; ok && rec.seq < top {
			sv.Reordered++
			if sv.ReorderedBy == nil {
				sv.ReorderedBy = map[string]int{}
			}
			sv.ReorderedBy[rec.pub.name]++
			c.publisher(rec.pub).Reordered++
			example(&sv.ReorderedExamples, fmt.Sprintf("%s after #%d", label(rec), top))
		} else {
			highest[rec.pub] = rec.seq
		}
	}
	v.ReadOK += sv.Delivered

	var lost []lostPair
	for i := range h.ops {
		rec := &h.ops[i]
		if !s.wants(rec) {
			continue
		}
		sv.Expected++
		at, got := first[rec.id]
		if !got {
			sv.Lost++
			example(&sv.LostExamples, label(rec))
			lost = append(lost, lostPair{op: i, sub: si})
		}
		for j := range v.Faults {
			f := &v.Faults[j]
			if f.End.IsZero() || !rec.at.Before(f.End) {
				continue
			}
			if !got {
				f.CaughtUp = false
			} else if d := at.Sub(f.End); d > f.Recovery {
				f.Recovery = d
			}
		}
	}
	return sv, spans, lost
}

// classifyLost splits the lost pairs by position, node and fault.
func (c *checker) classifyLost(lost []lostPair, spans []map[*Publisher]seqSpan) {
	h, v := c.h, &c.v
	for _, l := range lost {
		rec, s, sv := &h.ops[l.op], h.subs[l.sub], &v.Subscribers[l.sub]
		p := c.publisher(rec.pub)
		p.Lost++
		sp, ok := spans[l.sub][rec.pub]
		switch {
		case ok && rec.seq < sp.lo:
			sv.LostPrefix++
			p.LostPrefix++
		case ok && rec.seq < sp.hi:
			sv.LostMiddle++
			p.LostMiddle++
		default:
			sv.LostPostfix++
			p.LostPostfix++
		}
		if c.lostOnNode(rec, s) {
			sv.LostOnNode++
		}
		in := false
		for j := range v.Faults {
			if f := &v.Faults[j]; c.overlaps(rec, f.Fault) {
				f.Lost++
				in = true
			}
		}
		if in {
			sv.LostInFaults++
		}
	}
}

// lostOnNode reports whether every subscriber on another node than s's
// that is owed rec received it, and there is at least one.
func (c *checker) lostOnNode(rec *op, s *Subscriber) bool {
	others := false
	for _, o := range c.h.subs {
		if nodeKey(o) == nodeKey(s) || !o.wants(rec) {
			continue
		}
		if o.seen[rec.id] == 0 {
			return false
		}
		others = true
	}
	return others
}

// nodeKey is the node a subscriber is on; a subscriber of no node named
// is a node of its own.
func nodeKey(s *Subscriber) string {
	if s.node == "" {
		return "\x00" + s.name
	}
	return s.node
}

// overlaps reports whether rec's publish, from its attempt to its last
// outcome, overlapped f widened by the grace.
func (c *checker) overlaps(rec *op, f Fault) bool {
	end := rec.done
	if end.Before(rec.at) {
		end = rec.at
	}
	if end.Before(f.Start.Add(-c.cfg.grace)) {
		return false
	}
	return f.End.IsZero() || !rec.at.After(f.End.Add(c.cfg.grace))
}

func example(list *[]string, e string) {
	if len(*list) < maxExamples {
		*list = append(*list, e)
	}
}

// label names a signal in examples: publisher#seq id.
func label(rec *op) string { return fmt.Sprintf("%s#%d %s", rec.pub.name, rec.seq, rec.id) }

// MarshalJSON writes the verdict with its judgements, "ok" (OK) and
// "valid" (Valid), and the latency as a summary in nanoseconds.
func (v Verdict) MarshalJSON() ([]byte, error) {
	type plain Verdict // the fields, without this method
	return json.Marshal(struct {
		OK    bool `json:"ok"`
		Valid bool `json:"valid"`
		plain
		Latency latencySummary `json:"latency"`
	}{v.OK(), v.Valid(), plain(v), summarize(&v.Latency)})
}

// latencySummary is a Histogram's count and quantiles, for JSON.
type latencySummary struct {
	Count uint64        `json:"count"`
	Min   time.Duration `json:"min_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
	Mean  time.Duration `json:"mean_ns"`
}

func summarize(h *Histogram) latencySummary {
	return latencySummary{
		Count: h.Count(), Min: h.Min(), Max: h.Max(), Mean: h.Mean(),
		P50: h.Quantile(0.5), P90: h.Quantile(0.9), P99: h.Quantile(0.99), P999: h.Quantile(0.999),
	}
}
