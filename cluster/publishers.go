package cluster

import (
	"iter"
	"time"
)

// publisherIdle is how long a receiver keeps what it knows of a publisher
// it no longer hears from (the last number seen, the next one expected):
// an entry unused for between one and two periods is forgotten. Every run
// of every node is a publisher of its own (its instance), so without this
// a long-lived node would keep one entry per restart of every peer, and
// per run of every short-lived publishing process, for ever. A publisher
// heard from again after that starts afresh, as it would with a node that
// had just started: its next signal sets the baseline (durable mode, from
// its floor), and duplicates are still caught by id (durable) or were
// never sent again (fast).
const publisherIdle = 10 * time.Minute

// publisherTable maps publishers to what a receiver keeps of each,
// forgetting the ones idle for publisherIdle, without a timestamp per
// entry: entries live in two generations, a lookup moves an entry into
// the recent one, and each rotation drops the older generation (but for
// the entries keep says must stay) and makes the recent one older. Not
// safe for concurrent use: its owner's lock guards it.
type publisherTable[V any] struct {
	recent, older map[publisherKey]V
	rotated       time.Time
	idle          time.Duration
	// keep, when set, tells an entry that must outlive its idleness (a
	// stream still holding signals): rotation carries it over.
	keep func(V) bool
}

func newPublisherTable[V any](now time.Time, keep func(V) bool) *publisherTable[V] {
	return &publisherTable[V]{recent: map[publisherKey]V{}, older: map[publisherKey]V{}, rotated: now,
		idle: publisherIdle, keep: keep}
}

// get returns key's entry, marking it used.
func (t *publisherTable[V]) get(key publisherKey) (V, bool) {
	if v, ok := t.recent[key]; ok {
		return v, true
	}
	v, ok := t.older[key]
	if ok {
		delete(t.older, key)
		t.recent[key] = v
	}
	return v, ok
}

// set stores key's entry, marking it used.
func (t *publisherTable[V]) set(key publisherKey, v V) {
	delete(t.older, key)
	t.recent[key] = v
}

// rotate forgets the entries unused since the rotation before last, once
// an idle period has passed since the last one.
func (t *publisherTable[V]) rotate(now time.Time) {
	if now.Sub(t.rotated) < t.idle {
		return
	}
	t.rotated = now
	if t.keep != nil {
		for key, v := range t.older {
			if t.keep(v) {
				t.recent[key] = v
			}
		}
	}
	clear(t.older)
	t.recent, t.older = t.older, t.recent
}

// reset forgets every publisher.
func (t *publisherTable[V]) reset() {
	clear(t.recent)
	clear(t.older)
}

// len returns how many publishers the table holds.
func (t *publisherTable[V]) len() int { return len(t.recent) + len(t.older) }

// all yields every entry, without marking any used.
func (t *publisherTable[V]) all() iter.Seq2[publisherKey, V] {
	return func(yield func(publisherKey, V) bool) {
		for _, m := range []map[publisherKey]V{t.recent, t.older} {
			for key, v := range m {
				if !yield(key, v) {
					return
				}
			}
		}
	}
}
