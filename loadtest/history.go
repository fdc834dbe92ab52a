package loadtest

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// Outcome is what a publisher heard back from one publish.
type Outcome int

const (
	// Pending: attempted, no answer yet (or none before the run ended).
	// Like Info, it is indeterminate.
	Pending Outcome = iota
	// Acked: the publish returned success (Jepsen's ok), so the signal
	// must reach every subscriber that wants it.
	Acked
	// Failed: the publish returned an error that says it was not done
	// (Jepsen's fail): an invalid signal, a closed bus. Should the signal
	// be delivered all the same, it counts as recovered, as Jepsen's queue
	// checker counts every attempt that is read.
	Failed
	// Info: the outcome is unknown (Jepsen's info): the publish timed out,
	// or failed in a way that does not say whether the signal was stored.
	// A delivery of it is recovered, no error. The publisher that saw it
	// takes a new identity (Op.Info, Publisher.Next), as a Jepsen process
	// does, because the signal may still land after the ones it publishes
	// next.
	Info
)

// rank orders the outcomes for an op that hears several (a retry): a
// later outcome replaces an earlier one only if it ranks higher, so an
// ack is final and an unknown outcome is never made a definite failure.
func (o Outcome) rank() int {
	switch o {
	case Failed:
		return 1
	case Info:
		return 2
	case Acked:
		return 3
	}
	return 0
}

func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case Acked:
		return "acked"
	case Failed:
		return "failed"
	case Info:
		return "info"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// History records a run: every publish attempt with its publisher,
// per-publisher sequence number, type, time and outcome, every delivery
// with its subscriber and time, and the windows in which a fault was
// injected. Check turns it into a Verdict. Signals are told apart by
// their id alone, so a History needs nothing from the transport but the
// signals it delivers.
//
// With WithRecord, a History also writes everything it records to a
// file as it happens (see Record), so that a run spread over processes
// is judged by ReadHistory from the files its nodes leave behind.
//
// Its methods, and those of its Publishers, Ops and Subscribers, are safe
// for concurrent use. The zero value is ready for use, with time.Now as
// its clock.
type History struct {
	mu    sync.Mutex
	clock func() time.Time
	node  string    // the default node of publishers and subscribers
	rec   *Recorder // nil: records nothing

	ops    []op
	byID   map[string]int // signal id → index in ops
	pubs   map[string]*Publisher
	subs   []*Subscriber // in registration order
	faults []Fault       // in the order recorded

	acked, failed, info int
	deliveries          int
	latency             Histogram // attempt → first delivery to each subscriber, as deliveries come
	torn                int       // lines ReadHistory skipped as torn
}

// op is one signal attempted.
type op struct {
	pub      *Publisher
	seq      uint64
	id, typ  string
	at, done time.Time // attempted; the last outcome heard (zero: none)
	outcome  Outcome
	err      error // the last failure, if any
}

// Option configures NewHistory.
type Option func(*History)

// WithClock makes the History read the time from now instead of
// time.Now: for tests, and for runs that compare with another clock.
func WithClock(now func() time.Time) Option { return func(h *History) { h.clock = now } }

// WithNode names the node the History runs on: the node of the
// publishers and subscribers made by Publisher and Subscriber, which
// records carry and which lost-on-node compares. A History spanning
// several nodes in one process names them with PublisherOn and
// SubscriberOn instead.
func WithNode(node string) Option { return func(h *History) { h.node = node } }

// WithRecord makes the History write every attempt, outcome, delivery,
// subscriber and fault to w as it records them, one JSON line each (see
// Record and Recorder). Give it an unbuffered *os.File, so that each
// line reaches the kernel when it is recorded and survives a SIGKILL of
// the process. Histories sharing a file share one Recorder instead
// (WithRecorder).
func WithRecord(w io.Writer) Option { return WithRecorder(NewRecorder(w)) }

// WithRecorder is WithRecord writing through r, which other Histories
// (or the harness's fault records) may share.
func WithRecorder(r *Recorder) Option { return func(h *History) { h.rec = r } }

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

// write records rec if the History records; a write error is kept by
// the Recorder (RecordErr), so that a full disk does not stop the run.
func (h *History) write(rec Record) {
	if h.rec != nil {
		_ = h.rec.Write(rec)
	}
}

// RecordErr returns the first error writing the record (WithRecord), or
// nil: a record that failed to write is incomplete, and a run judged
// from it would count its missing lines as lost.
func (h *History) RecordErr() error {
	if h.rec == nil {
		return nil
	}
	return h.rec.Err()
}

// Publisher returns the recorder of the publisher called name, made on
// first use on the History's node (WithNode): the same name gives the
// same Publisher. One publisher's signals are expected in the order of
// its attempts (their sequence numbers), so a publisher is what keeps an
// order: one node, one goroutine.
//
// A publisher is one identity of a Jepsen process: after a publish whose
// outcome is unknown, the process goes on as Next. A name "base/k", k ≥ 2,
// is generation k of base; a restarted process must take a name of its
// own (a new base), because counters start again at 1.
func (h *History) Publisher(name string) *Publisher {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.pubs[name]; ok {
		return p
	}
	return h.newPublisher(h.node, name)
}

// PublisherOn is Publisher for a publisher on the given node. It panics
// if name is a publisher on another node: a publisher is one process.
func (h *History) PublisherOn(node, name string) *Publisher {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.pubs[name]; ok {
		if p.node != node {
			panic(fmt.Sprintf("loadtest: publisher %q is on node %q, not %q", name, p.node, node))
		}
		return p
	}
	return h.newPublisher(node, name)
}

// newPublisher makes a publisher; h.mu is held.
func (h *History) newPublisher(node, name string) *Publisher {
	if h.pubs == nil {
		h.pubs = map[string]*Publisher{}
	}
	base, gen := splitGeneration(name)
	p := &Publisher{h: h, name: name, node: node, base: base, gen: gen}
	h.pubs[name] = p
	return p
}

// splitGeneration parses "base/k" (k ≥ 2, no leading zero) into base and
// k; any other name is generation 1 of itself.
func splitGeneration(name string) (base string, gen int) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 || i+1 >= len(name) || name[i+1] == '0' {
		return name, 1
	}
	k, err := strconv.Atoi(name[i+1:])
	if err != nil || k < 2 || strconv.Itoa(k) != name[i+1:] {
		return name, 1
	}
	return name[:i], k
}

// Publisher records one publisher's attempts.
type Publisher struct {
	h          *History
	name, node string
	base       string
	gen        int
	seq        uint64 // the last sequence number given, under h.mu
}

// Name is the publisher's name.
func (p *Publisher) Name() string { return p.name }

// Node is the node the publisher runs on.
func (p *Publisher) Node() string { return p.node }

// Next returns the identity the process goes on with after a publish
// whose outcome is unknown (Info): generation k+1 of the same base name
// ("n1" → "n1/2" → "n1/3"), on the same node, with its own counter from
// 1. Jepsen does the same to a process whose operation crashed: the
// signal may still land, after the ones published next, so the order
// owed is per identity. Next is the same Publisher however often it is
// called.
func (p *Publisher) Next() *Publisher {
	return p.h.PublisherOn(p.node, p.base+"/"+strconv.Itoa(p.gen+1))
}

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
	if i, ok := h.byID[sig.ID]; ok {
		other := h.ops[i].pub
		h.mu.Unlock()
		if other != p {
			panic(fmt.Sprintf("loadtest: signal %s attempted by publisher %q, already attempted by %q", sig.ID, p.name, other.name))
		}
		return Op{h: h, i: i}
	}
	p.seq++
	seq := p.seq
	i := h.addOp(op{pub: p, seq: seq, id: sig.ID, typ: sig.Type, at: at})
	h.mu.Unlock()
	h.write(Record{Op: RecordInvoke, Publisher: p.name, N: seq, ID: sig.ID, Type: sig.Type, Node: p.node, T: at})
	return Op{h: h, i: i}
}

// addOp appends rec and returns its index; h.mu is held.
func (h *History) addOp(rec op) int {
	if h.byID == nil {
		h.byID = map[string]int{}
	}
	h.byID[rec.id] = len(h.ops)
	h.ops = append(h.ops, rec)
	return len(h.ops) - 1
}

// Publish records an attempt of sig, calls publish with it (bus.Bus's
// Publish or cluster.Node's PublishAsync, as method values) and records
// the outcome by publish's error, which it returns: nil is an ack, any
// error a failure (Fail). A caller that tells a timeout from a failure
// records the outcome itself (Attempt, then Ack, Fail or Info), as
// Workload does.
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
// or Info (of a retry whose answer was lost) does not undo it.
func (o Op) Ack() { o.settle(Acked, nil) }

// Fail records that the publish returned err, which says the signal was
// not published (Jepsen's fail). A later Info or Ack of a retry replaces
// it.
func (o Op) Fail(err error) { o.settle(Failed, err) }

// Info records that the outcome of the publish is unknown (Jepsen's
// info): it timed out, or returned err, which does not say whether the
// signal was stored. A later Ack of a retry replaces it. It returns the
// identity the publisher goes on with (Publisher.Next); the zero Op
// returns nil.
func (o Op) Info(err error) *Publisher {
	if o.h == nil {
		return nil
	}
	o.settle(Info, err)
	o.h.mu.Lock()
	p := o.h.ops[o.i].pub
	o.h.mu.Unlock()
	return p.Next()
}

// settle records outcome out, and writes it.
func (o Op) settle(out Outcome, err error) {
	h := o.h
	if h == nil {
		return
	}
	at := h.now()
	h.mu.Lock()
	rec := &h.ops[o.i]
	h.apply(rec, out, err, at)
	r := Record{Op: recordOp(out), Publisher: rec.pub.name, N: rec.seq, ID: rec.id, Node: rec.pub.node, T: at}
	h.mu.Unlock()
	if err != nil {
		r.Error = err.Error()
	}
	h.write(r)
}

// apply records outcome out heard at time at; h.mu is held.
func (h *History) apply(rec *op, out Outcome, err error, at time.Time) {
	if err != nil {
		rec.err = err
	}
	if at.After(rec.done) {
		rec.done = at
	}
	if out.rank() <= rec.outcome.rank() {
		return
	}
	h.count(rec.outcome, -1)
	h.count(out, 1)
	rec.outcome = out
}

// count adds d to the total of outcome o; h.mu is held.
func (h *History) count(o Outcome, d int) {
	switch o {
	case Acked:
		h.acked += d
	case Failed:
		h.failed += d
	case Info:
		h.info += d
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

// Publisher is the publisher that attempted the signal; nil for the zero
// Op.
func (o Op) Publisher() *Publisher {
	if o.h == nil {
		return nil
	}
	o.h.mu.Lock()
	defer o.h.mu.Unlock()
	return o.h.ops[o.i].pub
}

// Subscriber returns the recorder of the subscriber called name, which
// wants the signals whose type matches pattern (bus pattern syntax), made
// on first use on the History's node (WithNode). It is expected to
// receive every acked signal of a matching type attempted from now on;
// signals attempted before it was made may reach it too, and are not
// errors. The same name with the same pattern gives the same Subscriber;
// another pattern is an error, as is a pattern that does not parse.
func (h *History) Subscriber(name, pattern string) (*Subscriber, error) {
	return h.subscriber("", false, name, pattern)
}

// SubscriberOn is Subscriber for a subscriber on the given node; the
// name of a subscriber on another node is an error.
func (h *History) SubscriberOn(node, name, pattern string) (*Subscriber, error) {
	return h.subscriber(node, true, name, pattern)
}

func (h *History) subscriber(node string, onNode bool, name, pattern string) (*Subscriber, error) {
	pat, err := bus.ParsePattern(pattern)
	if err != nil {
		return nil, fmt.Errorf("loadtest: subscriber %q: %w", name, err)
	}
	from := h.now()
	h.mu.Lock()
	if !onNode {
		node = h.node
	}
	for _, s := range h.subs {
		if s.name == name {
			h.mu.Unlock()
			if s.pattern.String() != pat.String() {
				return nil, fmt.Errorf("loadtest: subscriber %q wants %q, not %q", name, s.pattern, pattern)
			}
			if onNode && s.node != node {
				return nil, fmt.Errorf("loadtest: subscriber %q is on node %q, not %q", name, s.node, node)
			}
			return s, nil
		}
	}
	s := h.addSubscriber(node, name, pat, from)
	h.mu.Unlock()
	h.write(Record{Op: RecordSubscribe, Subscriber: name, Node: node, Pattern: pat.String(), T: from})
	return s, nil
}

// addSubscriber registers a subscriber; h.mu is held.
func (h *History) addSubscriber(node, name string, pat bus.Pattern, from time.Time) *Subscriber {
	s := &Subscriber{h: h, name: name, node: node, pattern: pat, from: from, seen: map[string]int{}}
	h.subs = append(h.subs, s)
	return s
}

// Subscriber records one subscriber's deliveries. It is a bus.Handler
// that records each signal it handles, so it can be subscribed as it is.
type Subscriber struct {
	h       *History
	name    string
	node    string
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

// Node is the node the subscriber runs on.
func (s *Subscriber) Node() string { return s.node }

// Deliver records that the subscriber received sig now.
func (s *Subscriber) Deliver(sig bus.Signal) { s.DeliverAt(sig.ID, s.h.now()) }

// DeliverAt records that the subscriber received the signal with this id
// at the given time. The order of the calls is the order of delivery that
// Check judges.
func (s *Subscriber) DeliverAt(id string, at time.Time) {
	h := s.h
	h.mu.Lock()
	h.deliver(s, id, at)
	h.mu.Unlock()
	h.write(Record{Op: RecordDeliver, Subscriber: s.name, Node: s.node, ID: id, T: at})
}

// deliver records a delivery; h.mu is held.
func (h *History) deliver(s *Subscriber, id string, at time.Time) {
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

// Fault is a window of time in which a fault was injected: from Start
// to End, the heal. A zero End is a fault not healed (yet).
type Fault struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// Validate reports a fault window that makes no sense: no name, no
// start, or an end before the start.
func (f Fault) Validate() error {
	switch {
	case f.Name == "":
		return fmt.Errorf("loadtest: fault: no name")
	case f.Start.IsZero():
		return fmt.Errorf("loadtest: fault %q: no start", f.Name)
	case !f.End.IsZero() && f.End.Before(f.Start):
		return fmt.Errorf("loadtest: fault %q: ends at %v, before its start at %v", f.Name, f.End, f.Start)
	}
	return nil
}

// AddFault records the fault window f, or updates the one of the same
// name and start (its end, once healed), and writes it.
func (h *History) AddFault(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	h.mu.Lock()
	h.addFault(f)
	h.mu.Unlock()
	h.write(Record{Op: RecordFault, Name: f.Name, Start: f.Start, End: f.End})
	return nil
}

// addFault records f; h.mu is held.
func (h *History) addFault(f Fault) {
	for i := range h.faults {
		if g := &h.faults[i]; g.Name == f.Name && g.Start.Equal(f.Start) {
			if !f.End.IsZero() {
				g.End = f.End
			}
			return
		}
	}
	h.faults = append(h.faults, f)
}

// StartFault records that the fault called name begins now, and returns
// the function that records its heal. It panics if name is empty.
func (h *History) StartFault(name string) (heal func()) {
	f := Fault{Name: name, Start: h.now()}
	if err := h.AddFault(f); err != nil {
		panic(err.Error())
	}
	return func() {
		f.End = h.now()
		if f.End.Before(f.Start) {
			f.End = f.Start
		}
		_ = h.AddFault(f)
	}
}

// Faults returns the fault windows recorded, by start.
func (h *History) Faults() []Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	fs := slices.Clone(h.faults)
	slices.SortStableFunc(fs, func(a, b Fault) int { return a.Start.Compare(b.Start) })
	return fs
}

// TornLines is the number of torn lines ReadHistory skipped: records of
// a node killed while writing them.
func (h *History) TornLines() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.torn
}

// Progress is a History's running totals, for a live report.
type Progress struct {
	Attempted, Acked, Failed, Info int
	Deliveries                     int // duplicates included
	// Latency is attempt → first delivery to each subscriber, of every
	// delivery recorded so far: Sub two Progresses' Latency for a window.
	Latency Histogram
}

// Progress returns the totals so far.
func (h *History) Progress() Progress {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Progress{Attempted: len(h.ops), Acked: h.acked, Failed: h.failed, Info: h.info, Deliveries: h.deliveries, Latency: h.latency.Clone()}
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
