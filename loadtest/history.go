package loadtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// Outcome is what a publisher heard back from one publish.
type Outcome int

const (
	// Pending: attempted, no answer yet (or none before the run ended).
	// Like Failed, it is indeterminate.
	Pending Outcome = iota
	// Acked: the publish returned success, so the signal must reach every
	// subscriber that wants it.
	Acked
	// Failed: the publish returned an error. The signal may still have
	// been stored (a timeout after the store, an ack lost on the way), so
	// a delivery of it is not an error: it is counted as recovered, as
	// Jepsen's queue checker counts an indeterminate enqueue that is read.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case Acked:
		return "acked"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// History records a run: every publish attempt with its publisher,
// per-publisher sequence number, type, time and outcome, and every
// delivery with its subscriber and time. Check turns it into a Verdict.
// Signals are told apart by their id alone, so a History needs nothing
// from the transport but the signals it delivers.
//
// Its methods, and those of its Publishers, Ops and Subscribers, are safe
// for concurrent use. The zero value is ready for use, with time.Now as
// its clock.
type History struct {
	mu    sync.Mutex
	clock func() time.Time

	ops  []op
	byID map[string]int // signal id → index in ops
	pubs map[string]*Publisher
	subs []*Subscriber // in registration order

	acked, failed int
	deliveries    int
	latency       Histogram // attempt → first delivery to each subscriber, as deliveries come
}

// op is one signal attempted.
type op struct {
	publisher string
	seq       uint64
	id, typ   string
	at        time.Time
	outcome   Outcome
	err       error // the last failure, if any
}

// Option configures NewHistory.
type Option func(*History)

// WithClock makes the History read the time from now instead of
// time.Now: for tests, and for runs that compare with another clock.
func WithClock(now func() time.Time) Option { return func(h *History) { h.clock = now } }

// NewHistory returns an empty History.
func NewHistory(opts ...Option) *History {
	h := &History{}
	for _, o := range opts {
		o(h)
	}
	return h
}

func (h *History) now() time.Time {
	if h.clock == nil {
		return time.Now()
	}
	return h.clock()
}

// Publisher returns the recorder of the publisher called name, made on
// first use: the same name gives the same Publisher. One publisher's
// signals are expected in the order of its attempts (their sequence
// numbers), so a publisher is what keeps an order: one node, one
// goroutine.
func (h *History) Publisher(name string) *Publisher {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.pubs[name]; ok {
		return p
	}
	if h.pubs == nil {
		h.pubs = map[string]*Publisher{}
	}
	p := &Publisher{h: h, name: name}
	h.pubs[name] = p
	return p
}

// Publisher records one publisher's attempts.
type Publisher struct {
	h    *History
	name string
	seq  uint64 // the last sequence number given, under h.mu
}

// Name is the publisher's name.
func (p *Publisher) Name() string { return p.name }

// Attempt records that the publisher is about to publish sig, giving it
// the next sequence number, and returns the Op to record the outcome on.
// A sig without an id gets one (bus.NewID), so that the caller publishes
// the signal the History knows. Attempting an id this publisher attempted
// before is a retry of that publish: it returns the same Op, keeping its
// sequence number and time. It panics if another publisher attempted the
// id: ids identify signals, and a History cannot tell two signals with
// one id apart.
func (p *Publisher) Attempt(sig *bus.Signal) Op {
	if sig.ID == "" {
		sig.ID = bus.NewID()
	}
	h := p.h
	at := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if i, ok := h.byID[sig.ID]; ok {
		if other := h.ops[i].publisher; other != p.name {
			panic(fmt.Sprintf("loadtest: signal %s attempted by publisher %q, already attempted by %q", sig.ID, p.name, other))
		}
		return Op{h: h, i: i}
	}
	if h.byID == nil {
		h.byID = map[string]int{}
	}
	p.seq++
	h.byID[sig.ID] = len(h.ops)
	h.ops = append(h.ops, op{publisher: p.name, seq: p.seq, id: sig.ID, typ: sig.Type, at: at})
	return Op{h: h, i: len(h.ops) - 1}
}

// Publish records an attempt of sig, calls publish with it (bus.Bus's
// Publish or cluster.Node's PublishAsync, as method values) and records
// the outcome by publish's error, which it returns.
func (p *Publisher) Publish(ctx context.Context, sig bus.Signal, publish func(context.Context, ...bus.Signal) error) error {
	o := p.Attempt(&sig)
	err := publish(ctx, sig)
	if err != nil {
		o.Fail(err)
	} else {
		o.Ack()
	}
	return err
}

// Op is one signal attempted, to record its outcome on. The zero Op
// records nothing.
type Op struct {
	h *History
	i int
}

// Ack records that the publish succeeded. An ack is final: a later Fail
// (of a retry whose answer was lost) does not undo it.
func (o Op) Ack() {
	if o.h == nil {
		return
	}
	o.h.mu.Lock()
	defer o.h.mu.Unlock()
	rec := &o.h.ops[o.i]
	switch rec.outcome {
	case Acked:
		return
	case Failed:
		o.h.failed--
	}
	rec.outcome = Acked
	o.h.acked++
}

// Fail records that the publish returned err. The signal stays a
// candidate for delivery (indeterminate) and may still be acked by a
// retry.
func (o Op) Fail(err error) {
	if o.h == nil {
		return
	}
	o.h.mu.Lock()
	defer o.h.mu.Unlock()
	rec := &o.h.ops[o.i]
	rec.err = err
	if rec.outcome == Pending {
		rec.outcome = Failed
		o.h.failed++
	}
}

// Seq is the signal's sequence number within its publisher, from 1.
func (o Op) Seq() uint64 {
	if o.h == nil {
		return 0
	}
	o.h.mu.Lock()
	defer o.h.mu.Unlock()
	return o.h.ops[o.i].seq
}

// Subscriber returns the recorder of the subscriber called name, which
// wants the signals whose type matches pattern (bus pattern syntax), made
// on first use. It is expected to receive every acked signal of a
// matching type attempted from now on; signals attempted before it was
// made may reach it too, and are not errors. The same name with the same
// pattern gives the same Subscriber; another pattern is an error, as is a
// pattern that does not parse.
func (h *History) Subscriber(name, pattern string) (*Subscriber, error) {
	pat, err := bus.ParsePattern(pattern)
	if err != nil {
		return nil, fmt.Errorf("loadtest: subscriber %q: %w", name, err)
	}
	from := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		if s.name == name {
			if s.pattern.String() != pat.String() {
				return nil, fmt.Errorf("loadtest: subscriber %q wants %q, not %q", name, s.pattern, pattern)
			}
			return s, nil
		}
	}
	s := &Subscriber{h: h, name: name, pattern: pat, from: from, seen: map[string]int{}}
	h.subs = append(h.subs, s)
	return s, nil
}

// Subscriber records one subscriber's deliveries. It is a bus.Handler
// that records each signal it handles, so it can be subscribed as it is.
type Subscriber struct {
	h       *History
	name    string
	pattern bus.Pattern
	from    time.Time

	// under h.mu
	deliveries []delivery     // in the order recorded
	seen       map[string]int // id → deliveries
}

type delivery struct {
	id string
	at time.Time
}

// Name is the subscriber's name.
func (s *Subscriber) Name() string { return s.name }

// Deliver records that the subscriber received sig now.
func (s *Subscriber) Deliver(sig bus.Signal) { s.DeliverAt(sig.ID, s.h.now()) }

// DeliverAt records that the subscriber received the signal with this id
// at the given time. The order of the calls is the order of delivery that
// Check judges.
func (s *Subscriber) DeliverAt(id string, at time.Time) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	s.deliveries = append(s.deliveries, delivery{id: id, at: at})
	s.seen[id]++
	h.deliveries++
	if i, ok := h.byID[id]; ok && s.seen[id] == 1 {
		h.latency.Record(at.Sub(h.ops[i].at))
	}
}

// Handle records sig as delivered now and returns nil: a Subscriber is a
// bus.Handler.
func (s *Subscriber) Handle(_ context.Context, sig bus.Signal) error {
	s.Deliver(sig)
	return nil
}

var _ bus.Handler = (*Subscriber)(nil)

// Progress is a History's running totals, for a live report.
type Progress struct {
	Attempted, Acked, Failed int
	Deliveries               int // duplicates included
	// Latency is attempt → first delivery to each subscriber, of every
	// delivery recorded so far: Sub two Progresses' Latency for a window.
	Latency Histogram
}

// Progress returns the totals so far.
func (h *History) Progress() Progress {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Progress{Attempted: len(h.ops), Acked: h.acked, Failed: h.failed, Deliveries: h.deliveries, Latency: h.latency.Clone()}
}

// Missing counts the deliveries still owed: pairs of an acked signal and
// a subscriber that wants it and has not received it. It is Check's lost
// count, were the run to end now.
func (h *History) Missing() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	missing := 0
	for _, s := range h.subs {
		for i := range h.ops {
			if rec := &h.ops[i]; s.wants(rec) && s.seen[rec.id] == 0 {
				missing++
			}
		}
	}
	return missing
}

// wants reports whether s must receive the signal: acked, of a type s
// wants, and attempted once s was there.
func (s *Subscriber) wants(rec *op) bool {
	return rec.outcome == Acked && !rec.at.Before(s.from) && s.pattern.Match(rec.typ)
}

// AwaitDelivered waits until nothing is Missing, polling every poll
// (default 50 ms), and returns nil then, or an error with the count still
// missing once ctx ends.
func (h *History) AwaitDelivered(ctx context.Context, poll time.Duration) error {
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		missing := h.Missing()
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadtest: %d deliveries of acked signals still missing: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}
