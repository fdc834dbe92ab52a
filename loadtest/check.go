package loadtest

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxExamples bounds the example ids a verdict keeps per category and
// subscriber.
const maxExamples = 5

// Verdict is what Check found in a History, in the categories of
// Jepsen's queue checker (jepsen.checker/total-queue): an acked signal
// never delivered to a subscriber that wants it is lost; a signal
// delivered twice to one subscriber is duplicated; a delivery of an id
// never attempted, or of a type the subscriber does not want, is
// unexpected; a delivered signal whose publish was not acked is
// recovered, which is no error. To these it adds order: a signal
// delivered after a later one of the same publisher is reordered.
//
// Counts of lost, duplicated, reordered and unexpected are per pair of a
// signal and a subscriber, summed over the subscribers.
type Verdict struct {
	Attempted int // distinct signals attempted ("published")
	Acked     int
	Failed    int // the publish returned an error (indeterminate)
	Pending   int // no outcome recorded (indeterminate)

	Publishers  []PublisherVerdict  // by name
	Subscribers []SubscriberVerdict // in registration order

	Lost, Duplicated, Reordered, Unexpected int // sums over Subscribers
	// Recovered counts distinct signals not acked but delivered to at
	// least one subscriber.
	Recovered int

	// Latency is attempt → first delivery, over every subscriber and every
	// signal attempted.
	Latency Histogram
}

// PublisherVerdict is one publisher's share of the attempts.
type PublisherVerdict struct {
	Name                              string
	Attempted, Acked, Failed, Pending int
}

// SubscriberVerdict is what one subscriber received.
type SubscriberVerdict struct {
	Name       string
	Pattern    string
	Expected   int // acked signals it wants, attempted once it was there
	Delivered  int // distinct signals received
	Deliveries int // every delivery, duplicates included

	Lost       int // expected, never received
	Duplicated int // received more than once
	Reordered  int // received after a signal of the same publisher with a higher sequence number
	Unexpected int // never attempted, or of a type it does not want
	Recovered  int // received, though the publish was not acked

	// Examples of each error, at most maxExamples each: "publisher#seq id"
	// (Unexpected: the id).
	LostExamples, DuplicatedExamples, ReorderedExamples, UnexpectedExamples []string
}

// OK reports whether the run kept every guarantee: nothing lost,
// duplicated, reordered or unexpected.
func (v Verdict) OK() bool {
	return v.Lost == 0 && v.Duplicated == 0 && v.Reordered == 0 && v.Unexpected == 0
}

// String is the verdict on one line.
func (v Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "published %d (acked %d, failed %d, pending %d); delivered", v.Attempted, v.Acked, v.Failed, v.Pending)
	for _, s := range v.Subscribers {
		fmt.Fprintf(&b, " %s=%d", s.Name, s.Delivered)
	}
	fmt.Fprintf(&b, "; lost %d, duplicated %d, reordered %d, unexpected %d, recovered %d",
		v.Lost, v.Duplicated, v.Reordered, v.Unexpected, v.Recovered)
	if v.Latency.Count() > 0 {
		fmt.Fprintf(&b, "; latency p50 %v p99 %v max %v", round(v.Latency.Quantile(0.5)), round(v.Latency.Quantile(0.99)), round(v.Latency.Max()))
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
// way counts as lost.
func (h *History) Check() Verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	var v Verdict
	v.Attempted = len(h.ops)
	pubs := map[string]*PublisherVerdict{}
	var names []string
	for i := range h.ops {
		rec := &h.ops[i]
		p := pubs[rec.publisher]
		if p == nil {
			p = &PublisherVerdict{Name: rec.publisher}
			pubs[rec.publisher] = p
			names = append(names, rec.publisher)
		}
		p.Attempted++
		switch rec.outcome {
		case Acked:
			v.Acked++
			p.Acked++
		case Failed:
			v.Failed++
			p.Failed++
		default:
			v.Pending++
			p.Pending++
		}
	}
	slices.Sort(names)
	for _, n := range names {
		v.Publishers = append(v.Publishers, *pubs[n])
	}

	recovered := map[string]bool{}
	for _, s := range h.subs {
		sv := h.checkSubscriber(s, &v.Latency, recovered)
		v.Subscribers = append(v.Subscribers, sv)
		v.Lost += sv.Lost
		v.Duplicated += sv.Duplicated
		v.Reordered += sv.Reordered
		v.Unexpected += sv.Unexpected
	}
	v.Recovered = len(recovered)
	return v
}

// checkSubscriber judges one subscriber's deliveries; it adds their
// latencies to lat and the ids of the unacked signals it received to
// recovered. h.mu is held.
func (h *History) checkSubscriber(s *Subscriber, lat *Histogram, recovered map[string]bool) SubscriberVerdict {
	sv := SubscriberVerdict{Name: s.name, Pattern: s.pattern.String(), Deliveries: len(s.deliveries)}
	example := func(list *[]string, e string) {
		if len(*list) < maxExamples {
			*list = append(*list, e)
		}
	}
	highest := map[string]uint64{} // publisher → highest sequence number delivered so far
	count := make(map[string]int, len(s.seen))
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
		sv.Delivered++
		lat.Record(d.at.Sub(rec.at))
		if !s.pattern.Match(rec.typ) {
			sv.Unexpected++
			example(&sv.UnexpectedExamples, label(rec)+" ("+rec.typ+")")
		}
		if rec.outcome != Acked {
			sv.Recovered++
			recovered[rec.id] = true
		}
		if top, ok := highest[rec.publisher]; ok && rec.seq < top {
			sv.Reordered++
			example(&sv.ReorderedExamples, fmt.Sprintf("%s after #%d", label(rec), top))
		} else {
			highest[rec.publisher] = rec.seq
		}
	}
	for i := range h.ops {
		rec := &h.ops[i]
		if !s.wants(rec) {
			continue
		}
		sv.Expected++
		if count[rec.id] == 0 {
			sv.Lost++
			example(&sv.LostExamples, label(rec))
		}
	}
	return sv
}

// label names a signal in examples: publisher#seq id.
func label(rec *op) string { return fmt.Sprintf("%s#%d %s", rec.publisher, rec.seq, rec.id) }
