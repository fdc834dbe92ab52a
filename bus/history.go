package bus

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// history is the bounded in-memory log behind Replay: a ring of the last n
// published signals, in publish order.
type history struct {
	mu    sync.Mutex
	ring  []Signal
	next  int
	count int
}

func newHistory(n int) *history { return &history{ring: make([]Signal, n)} }

func (h *history) add(s Signal) {
	h.mu.Lock()
	h.ring[h.next] = s
	h.next = (h.next + 1) % len(h.ring)
	if h.count < len(h.ring) {
		h.count++
	}
	h.mu.Unlock()
}

// snapshot returns the retained signals accepted by keep, oldest first.
func (h *history) snapshot(keep func(Signal) bool) []Signal {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Signal, 0, h.count)
	start := (h.next - h.count + len(h.ring)) % len(h.ring)
	for i := 0; i < h.count; i++ {
		s := h.ring[(start+i)%len(h.ring)]
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// Replay calls h, in the caller's goroutine, for every signal in the
// history (WithHistory) whose type matches pattern and whose Time is not
// before since, oldest first in publish order. It stops at the first
// handler error, or when ctx ends, and returns it wrapped. A bus without
// history returns ErrNoHistory. Replay reads a snapshot: signals published
// while it runs are not included. It still works after Close.
func (b *Bus) Replay(ctx context.Context, pattern string, since time.Time, h Handler) error {
	if h == nil {
		return fmt.Errorf("replay %q: %w: nil handler", pattern, ErrInvalidOption)
	}
	pm, err := newPatternMatcher(pattern)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if b.history == nil {
		return fmt.Errorf("replay %q: %w", pattern, ErrNoHistory)
	}
	signals := b.history.snapshot(func(s Signal) bool {
		return !s.Time.Before(since) && pm.matches(s.Type)
	})
	for _, s := range signals {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("replay %q: %w", pattern, err)
		}
		if err := callHandler(ctx, h, s); err != nil {
			return fmt.Errorf("replay %q: signal %s: %w", pattern, s.ID, err)
		}
	}
	return nil
}
