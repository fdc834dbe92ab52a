package bus

// These tests are in package bus: they drive queues (pushRunToAll's
// all-or-nothing rule) and group offers directly, in states no public call
// sets up exactly.

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func runOf(n int) []envelope {
	envs := make([]envelope, n)
	for i := range envs {
		envs[i].sig = Signal{ID: strconv.Itoa(i), Type: "q.run", Source: "/test"}
	}
	return envs
}

func queued(q *queue) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var ids []string
	for i := range q.n {
		ids = append(ids, q.buf[(q.head+i)%len(q.buf)].sig.ID)
	}
	return ids
}

func TestPushRunToAllIsAllOrNothing(t *testing.T) {
	const run = 5
	for _, tc := range []struct {
		name string
		// prepare sets up the second of two queues (the first has room).
		prepare func(q *queue)
		ok      bool
	}{
		{"both have room", func(*queue) {}, true},
		{"exactly enough room", func(q *queue) {
			for range q.capacity - run {
				q.push(t.Context(), &envelope{sig: Signal{ID: "old"}}, Block)
			}
		}, true},
		{"one short of room", func(q *queue) {
			for range q.capacity - run + 1 {
				q.push(t.Context(), &envelope{sig: Signal{ID: "old"}}, Block)
			}
		}, false},
		{"closed", func(q *queue) { q.close() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := newQueue(8), newQueue(8)
			tc.prepare(second)
			before := len(queued(second))
			defer func() {
				// Every lock taken was released, whichever queue refused.
				for _, q := range []*queue{first, second} {
					if !q.mu.TryLock() {
						t.Fatal("a queue is still locked")
					}
					q.mu.Unlock()
				}
			}()
			h := newHistory(16)
			qs := runQueuesOf([]*Subscription{{queue: second}, {queue: first}})
			if qs[0] != first {
				t.Fatal("runQueuesOf did not order the queues by creation")
			}
			if got := pushRunToAll(qs, runOf(run), h); got != tc.ok {
				t.Fatalf("pushRunToAll = %v, want %v", got, tc.ok)
			}
			want := 0
			if tc.ok {
				want = run
			}
			if n := len(queued(first)); n != want {
				t.Errorf("first queue holds %d, want %d", n, want)
			}
			if n := len(queued(second)) - before; n != want {
				t.Errorf("second queue took %d, want %d", n, want)
			}
			if h.count != want {
				t.Errorf("history holds %d, want %d", h.count, want)
			}
			if tc.ok {
				if got := queued(first); got[0] != "0" || got[run-1] != strconv.Itoa(run-1) {
					t.Errorf("first queue holds %v, want the run in order", got)
				}
			}
		})
	}
}

func TestPushRunToAllRefusedByTheFirstQueue(t *testing.T) {
	first, second := newQueue(8), newQueue(8)
	first.close()
	if pushRunToAll(runQueuesOf([]*Subscription{{queue: first}, {queue: second}}), runOf(3), nil) {
		t.Fatal("pushRunToAll took a run with a closed queue")
	}
	for _, q := range []*queue{first, second} {
		if !q.mu.TryLock() {
			t.Fatal("a queue is still locked")
		}
		q.mu.Unlock()
	}
	if n := len(queued(second)); n != 0 {
		t.Errorf("the open queue took %d", n)
	}
}

// TestPushRunToAllRecordsTheHistoryBeforeWorkersSeeTheRun holds the
// history's lock while a run is pushed: until the run is in the history,
// no worker may find any of it in a queue (a handler that replays the
// history must find its own signal).
func TestPushRunToAllRecordsTheHistoryBeforeWorkersSeeTheRun(t *testing.T) {
	q, h := newQueue(8), newHistory(8)
	h.mu.Lock()
	done := make(chan bool)
	go func() { done <- pushRunToAll(runQueuesOf([]*Subscription{{queue: q}}), runOf(3), h) }()
	// Poll as a worker would: the queue must read empty whenever it can
	// be locked, until the history lets go.
	sawHeld := false
	deadline := time.Now().Add(5 * time.Second)
	var held time.Time
	for time.Now().Before(deadline) {
		if q.mu.TryLock() {
			n := q.n
			q.mu.Unlock()
			if n > 0 {
				t.Fatalf("a worker could take %d signals of the run before the history had them", n)
			}
			continue
		}
		if !sawHeld {
			sawHeld, held = true, time.Now()
		}
		if time.Since(held) > 50*time.Millisecond {
			break // still held while the history is locked: as it must be
		}
	}
	if !sawHeld {
		t.Fatal("pushRunToAll never took the queue's lock")
	}
	h.mu.Unlock()
	if !<-done {
		t.Fatal("pushRunToAll refused a run the queue had room for")
	}
	if n := len(queued(q)); n != 3 || h.count != 3 {
		t.Errorf("queue holds %d, history %d; want 3 and 3", n, h.count)
	}
}

// TestOfferToGroupPassesOverAClosedMember: when no member has room and the
// member whose turn it is has closed, the signal goes to the next member
// (under its overflow policy), not nowhere.
func TestOfferToGroupPassesOverAClosedMember(t *testing.T) {
	b, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	hold := make(chan struct{})
	defer close(hold)
	// Buffered: the handler's send must not depend on the test already
	// waiting for it (unbuffered, the send was lost when the handler ran
	// first, and the test waited for ever).
	inHandler := make(chan struct{}, 1)
	a, err := b.Subscribe("g.x", HandlerFunc(func(context.Context, Signal) error {
		select {
		case inHandler <- struct{}{}:
		default:
		}
		<-hold
		return nil
	}), WithGroup("g"), WithQueueSize(1), WithOverflow(DropOldest))
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Subscribe("g.x", HandlerFunc(func(context.Context, Signal) error { return nil }), WithGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	info := b.types.get("g.x")
	members := b.router.route(info.routes, "g.x").groups[0] // read before the second member closes
	ctx := context.Background()
	push := func(id string) error {
		return b.offerToGroup(ctx, members, &envelope{sig: Signal{ID: id, Type: "g.x", Source: "/t"}, info: info})
	}
	// a takes one signal into its handler and one into its queue: full.
	a.group.turn.Store(1) // the next turn is a's: (1+1) % 2 == 0
	if err := push("1"); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	a.group.turn.Store(1)
	if err := push("2"); err != nil {
		t.Fatal(err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	a.group.turn.Store(0) // the next turn is the closed member's
	if err := push("3"); err != nil {
		t.Fatal(err)
	}
	if got := queued(a.queue); len(got) != 1 || got[0] != "3" {
		t.Errorf("a's queue holds %v, want the signal the closed member could not take (3), its oldest dropped", got)
	}
}
