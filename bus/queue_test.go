package bus

// These tests are in package bus: they check pushRunToAll's all-or-nothing
// rule on queues directly, which no public call can set up exactly.

import (
	"strconv"
	"testing"
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
