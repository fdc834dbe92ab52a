package cluster

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/signalbus/signalbus/bus"
)

// pending is a stored signal waiting to be dispatched and acknowledged.
type pending struct {
	sig bus.Signal
	msg acker
}

// reorderer restores each publisher's order in durable mode. JetStream
// keeps the stream in publish order, but a delivery lost when a consumer's
// leader moves is redelivered only after its ack wait, behind later ones;
// and a signal whose publish is retried is stored behind the ones published
// after it. Every signal carries its publisher's node, instance and
// sequence number; the reorderer dispatches each publisher's signals in
// sequence order, holding back early arrivals until the gap fills. A gap
// that stays open for the gap timeout (a publish that failed and was never
// retried) is skipped and counted, so one lost publish never stalls a
// publisher's stream; the held signals are bounded, past which the oldest
// gap is skipped at once.
//
// add is called from the consumer's goroutine and expire from the
// reorderer's own; mu serialises them, and deliveries happen under it, so
// the order reaching the bus is the order decided here.
type reorderer struct {
	deliver func(pending)
	// late takes an arrival behind its publisher's next number: a signal
	// whose gap was skipped, or a redelivery of one already delivered,
	// which only late, called under the lock, can tell from each other
	// (the timer may have released the first delivery since the
	// arrival's own checks).
	late func(pending)
	// afterSkip, when set, runs after the timer released held signals,
	// outside the lock: a deliver that only collects flushes there.
	afterSkip func()
	gap       time.Duration
	limit     int
	onHeld    func()
	onSkip    func(key publisherKey, from, to uint64)

	mu      sync.Mutex
	streams *publisherTable[*publisherStream] // forgets publishers idle for publisherIdle, unless holding
	held    int

	stop chan struct{}
	done chan struct{}
}

type publisherStream struct {
	next    uint64
	held    map[uint64]pending
	gapSeen time.Time // when the current gap was first seen
}

func newReorderer(gap time.Duration, limit int, deliver, late func(pending), afterSkip func(), onHeld func(), onSkip func(publisherKey, uint64, uint64)) *reorderer {
	if late == nil {
		late = deliver
	}
	r := &reorderer{deliver: deliver, late: late, afterSkip: afterSkip, gap: gap, limit: limit, onHeld: onHeld, onSkip: onSkip,
		streams: newPublisherTable(time.Now(), func(ps *publisherStream) bool { return len(ps.held) > 0 }),
		stop:    make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

// orderFloor returns the publisher's floor carried by s (the lowest of its
// sequence numbers that was not yet stored when s was sent), or seq.
func orderFloor(s bus.Signal, seq uint64) uint64 {
	text, _ := s.Extensions[ExtensionFloor].(string)
	return parseFloor(text, seq)
}

// parseFloor is orderFloor from the floor extension's value.
func parseFloor(text string, seq uint64) uint64 {
	floor, err := strconv.ParseUint(text, 10, 64)
	if err != nil || floor > seq {
		return seq
	}
	return floor
}

// orderKey returns the publisher key and sequence of a signal a node
// published, or ok=false for one from elsewhere (a plain NATS client),
// which carries no sequence and is dispatched as it comes.
func orderKey(s bus.Signal) (key publisherKey, seq uint64, ok bool) {
	node, _ := s.Extensions[ExtensionNode].(string)
	inst, _ := s.Extensions[ExtensionInstance].(string)
	text, _ := s.Extensions[ExtensionSequence].(string)
	return stampKey(node, inst, text)
}

// stampKey is orderKey from the values of the stamp extensions.
func stampKey(node, inst, text string) (key publisherKey, seq uint64, ok bool) {
	if node == "" || text == "" {
		return publisherKey{}, 0, false
	}
	seq, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return publisherKey{}, 0, false
	}
	return publisherKey{node: node, instance: inst}, seq, true
}

// publisherKey names one publisher's sequence: a node's name and the
// instance (one run of it) that numbered the signal. A struct rather than
// a joined string, because receivers look it up for every signal.
type publisherKey struct{ node, instance string }

// String is the key as logs show it: node/instance.
func (k publisherKey) String() string { return k.node + "/" + k.instance }

// add takes one arrival of the publisher key's signal number seq.
func (r *reorderer) add(key publisherKey, seq uint64, p pending) {
	r.arrive(key, seq, orderFloor(p.sig, seq), p)
}

// pass takes the publisher key's number seq as arrived with nothing to
// deliver: a stamped message that is not a valid signal, parked (or
// refused) instead. Its number takes its place in the sequence as a hole,
// so the publisher's later signals are not held for the gap timeout
// waiting for it, nor is it counted skipped. floor is the one it carries,
// as add reads a signal's.
func (r *reorderer) pass(key publisherKey, seq, floor uint64) {
	r.arrive(key, seq, min(floor, seq), pending{})
}

// arrive is add and pass: p is a hole (nil msg) for pass.
func (r *reorderer) arrive(key publisherKey, seq, floor uint64, p pending) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hole := p.msg == nil
	ps, _ := r.streams.get(key)
	if ps == nil {
		// The first number seen from a publisher sets its baseline: its
		// floor, below which everything was stored before it was sent
		// (and so was delivered before this node's consumer, or will be
		// redelivered to it), not its own number, which may have
		// overtaken earlier ones still in flight.
		ps = &publisherStream{next: floor, held: map[uint64]pending{}}
		r.streams.set(key, ps)
	}
	switch {
	case seq == ps.next:
		if !hole {
			r.deliver(p)
		}
		ps.next++
		r.drainLocked(ps)
	case seq < ps.next:
		// Behind the baseline, or after its gap was skipped: late, but
		// dispatched rather than lost (unless late finds it a duplicate).
		if !hole {
			r.late(p)
		}
	default:
		if prev, again := ps.held[seq]; again {
			if hole {
				return // a signal, or a hole, holds the place already
			}
			ps.held[seq] = p // a redelivery of a held signal: keep the newest delivery to ack
			if prev.msg == nil {
				r.onHeld() // it takes a hole's place: held now
			}
			return
		}
		if len(ps.held) == 0 {
			ps.gapSeen = time.Now()
		}
		ps.held[seq] = p
		r.held++
		if !hole {
			r.onHeld()
		}
		if r.held > r.limit {
			r.skipLocked(key, ps)
		}
	}
}

// drainLocked dispatches the held signals that follow ps.next.
func (r *reorderer) drainLocked(ps *publisherStream) {
	for {
		p, ok := ps.held[ps.next]
		if !ok {
			break
		}
		delete(ps.held, ps.next)
		r.held--
		if p.msg != nil { // not a hole (see pass)
			r.deliver(p)
		}
		ps.next++
	}
	if len(ps.held) > 0 {
		ps.gapSeen = time.Now() // a new gap starts here
	}
}

// skipLocked gives up on ps's current gap: the signals missing there are
// counted as skipped, and what is held after it is dispatched.
func (r *reorderer) skipLocked(key publisherKey, ps *publisherStream) {
	if len(ps.held) == 0 {
		return
	}
	keys := make([]uint64, 0, len(ps.held))
	for seq := range ps.held {
		keys = append(keys, seq)
	}
	lowest := slices.Min(keys)
	r.onSkip(key, ps.next, lowest)
	ps.next = lowest
	r.drainLocked(ps)
}

// run skips the gaps open for longer than the gap timeout.
func (r *reorderer) run() {
	defer close(r.done)
	t := time.NewTicker(max(r.gap/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			skipped := false
			r.mu.Lock()
			for key, ps := range r.streams.all() {
				if len(ps.held) > 0 && now.Sub(ps.gapSeen) >= r.gap {
					r.skipLocked(key, ps)
					skipped = true
				}
			}
			r.streams.rotate(now)
			r.mu.Unlock()
			if skipped && r.afterSkip != nil {
				r.afterSkip()
			}
		}
	}
}

// close stops the gap timer and negatively acknowledges what is still
// held, in each publisher's order: JetStream then offers it again at once
// (redeliveries go before new messages), so that after a restart the
// consumer's next reader sees it before what was published after it, not
// only once the ack wait has run out.
func (r *reorderer) close() {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ps := range r.streams.all() {
		for _, seq := range slices.Sorted(maps.Keys(ps.held)) {
			if msg := ps.held[seq].msg; msg != nil { // not a hole (see pass)
				_ = msg.Nak()
			}
			delete(ps.held, seq)
			r.held--
		}
	}
}

// heldCounter is signalbus.order.held.
func heldCounter(meter metric.Meter) (metric.Int64Counter, error) {
	return meter.Int64Counter("signalbus.order.held", metric.WithUnit("{message}"),
		metric.WithDescription("Signals held back to restore their publisher's order."))
}
