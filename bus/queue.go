package bus

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// envelope is a queued signal with what the consumer side needs from the
// publish: the producer's span context (to parent the process span without
// re-parsing traceparent) and the cached per-type names.
type envelope struct {
	sig      Signal
	producer trace.SpanContext
	info     *typeInfo
	// done, when set (a signal fed by a SubscriptionTransport), is told
	// how the subscription finished with the signal.
	done func(error)
}

// finish tells e's feeder, if any, how the subscription finished with it.
func (e *envelope) finish(err error) {
	if e.done != nil {
		e.done(err)
	}
}

// queue is a subscription's bounded FIFO. It is a ring buffer under a mutex
// rather than a channel so that the worker takes every waiting signal in one
// lock (amortising the hand-off under load), so that DropOldest can drop the
// head atomically, and so that memory grows with use, not with capacity:
// a bus with 100 000 idle subscriptions does not hold 100 000 full buffers.
type queue struct {
	order    uint64 // creation order: the order pushRunToAll locks queues in
	mu       sync.Mutex
	buf      []envelope // ring; len(buf) grows up to capacity
	head, n  int
	capacity int
	closed   bool
	// nonEmpty wakes the worker; it has room for one token, so a push
	// to an empty queue never blocks.
	nonEmpty chan struct{}
	// space is closed (and replaced) to wake publishers blocked on a full
	// queue; it is only created while someone waits.
	space chan struct{}
}

// queuesMade numbers queues in creation order.
var queuesMade atomic.Uint64

func newQueue(capacity int) *queue {
	initial := min(capacity, 16)
	return &queue{order: queuesMade.Add(1), buf: make([]envelope, initial), capacity: capacity, nonEmpty: make(chan struct{}, 1)}
}

type pushResult int

const (
	pushed pushResult = iota
	pushedDropped
	pushFull
	pushClosed
)

// push appends e. When the queue is full it applies the policy: Block waits
// (until ctx ends), DropOldest replaces the head (returned, so that its
// feeder can be told), Reject reports pushFull.
func (q *queue) push(ctx context.Context, e *envelope, policy Overflow) (pushResult, envelope, error) {
	q.mu.Lock()
	for {
		if q.closed {
			q.mu.Unlock()
			return pushClosed, envelope{}, nil
		}
		if q.n < q.capacity {
			break
		}
		switch policy {
		case DropOldest:
			dropped := q.buf[q.head]
			q.buf[q.head] = envelope{}
			q.head = q.wrap(q.head + 1)
			q.n--
			q.appendLocked(e)
			q.mu.Unlock()
			return pushedDropped, dropped, nil
		case Reject:
			q.mu.Unlock()
			return pushFull, envelope{}, nil
		}
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return pushFull, envelope{}, ctx.Err()
		}
		q.mu.Lock()
	}
	wasEmpty := q.n == 0
	q.appendLocked(e)
	q.mu.Unlock()
	if wasEmpty {
		q.wake()
	}
	return pushed, envelope{}, nil
}

// maxRunQueues bounds how many queues pushRunToAll locks at once: a type
// routed to more subscriptions queues its signals one at a time.
const maxRunQueues = 8

// runQueuesOf returns the queues of subs in the order pushRunToAll locks
// them (by creation), or nil when the run path does not apply.
func runQueuesOf(subs []*Subscription) []*queue {
	if len(subs) == 0 || len(subs) > maxRunQueues {
		return nil
	}
	qs := make([]*queue, len(subs))
	for i, s := range subs {
		qs[i] = s.queue
	}
	slices.SortFunc(qs, func(a, b *queue) int { return cmp.Compare(a.order, b.order) })
	return slices.CompactFunc(qs, func(a, b *queue) bool { return a == b })
}

// pushRunToAll appends envs to every queue of qs, and records them in
// history (if any), when every queue is open and has room for all of
// them; otherwise it changes nothing and returns false. The queues stay
// locked together until the run is in all of them and in the history, so
// no worker (nor a Replay from a handler) sees part of it: the outcome is
// that of pushing the signals one by one, each to every queue. Queues are
// locked in creation order (qs is sorted so), which rules out deadlock
// between publishers locking overlapping sets.
func pushRunToAll(qs []*queue, envs []envelope, h *history) bool {
	if len(qs) == 0 {
		return false
	}
	for i, q := range qs {
		q.mu.Lock()
		if q.closed || q.capacity-q.n < len(envs) {
			for _, held := range qs[:i+1] {
				held.mu.Unlock()
			}
			return false
		}
	}
	var wasEmpty [maxRunQueues]bool
	for i, q := range qs {
		wasEmpty[i] = q.n == 0
		for j := range envs {
			q.appendLocked(&envs[j])
		}
	}
	if h != nil {
		for j := range envs {
			h.add(envs[j].sig)
		}
	}
	for i, q := range qs {
		q.mu.Unlock()
		if wasEmpty[i] {
			q.wake()
		}
	}
	return true
}

// wake tells the worker the queue has something, if it was not told yet.
func (q *queue) wake() {
	select {
	case q.nonEmpty <- struct{}{}:
	default:
	}
}

func (q *queue) appendLocked(e *envelope) {
	if q.n == len(q.buf) {
		grown := make([]envelope, min(q.capacity, 2*len(q.buf)))
		copied := copy(grown, q.buf[q.head:])
		copy(grown[copied:], q.buf[:q.head])
		q.buf, q.head = grown, 0
	}
	q.buf[q.wrap(q.head+q.n)] = *e
	q.n++
}

// wrap maps a position at most one lap past the ring's end into it: a
// compare instead of a division, on every push and take.
func (q *queue) wrap(i int) int {
	if i >= len(q.buf) {
		i -= len(q.buf)
	}
	return i
}

// maxTake bounds how many envelopes the worker takes from the queue at once.
// Those are out of the queue, so a subscription holds at most its queue size
// plus maxTake signals.
const maxTake = 64

// take moves up to maxTake queued envelopes into dst and returns it, waiting
// while the queue is empty. ok is false once the queue is closed and empty.
func (q *queue) take(dst []envelope) (out []envelope, ok bool) {
	for {
		q.mu.Lock()
		if q.n > 0 {
			for k := 0; q.n > 0 && k < maxTake; k++ {
				dst = append(dst, q.buf[q.head])
				q.buf[q.head] = envelope{}
				q.head = q.wrap(q.head + 1)
				q.n--
			}
			if q.space != nil {
				close(q.space)
				q.space = nil
			}
			q.mu.Unlock()
			return dst, true
		}
		if q.closed {
			q.mu.Unlock()
			return dst, false
		}
		q.mu.Unlock()
		<-q.nonEmpty
	}
}

// close stops intake; the worker still takes what is queued.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	q.wake()
}

// discard empties the queue, telling each envelope's feeder err, and
// returns how many envelopes it held.
func (q *queue) discard(err error) int {
	q.mu.Lock()
	dropped := make([]envelope, 0, q.n)
	for ; q.n > 0; q.n-- {
		dropped = append(dropped, q.buf[q.head])
		q.buf[q.head] = envelope{}
		q.head = q.wrap(q.head + 1)
	}
	q.head = 0
	q.mu.Unlock()
	for i := range dropped {
		dropped[i].finish(err)
	}
	return len(dropped)
}

func (q *queue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
