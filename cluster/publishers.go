package cluster

import (
	"iter"
	"time"
)

// publisherIdle is how long a receiver keeps what it knows of a run of a
// publishing node (the number it expects next; in fast mode the last one
// seen) after a later run of the same node appeared: an earlier run unused
// for between one and two periods is forgotten. Every run (instance) of
// every node is a publisher of its own, so without this a long-lived node
// would keep an entry per restart of every peer for ever. Only a run
// another run of its node replaced is forgotten: it will publish nothing
// more, and what it did publish has long arrived (redeliveries come within
// the ack wait). A run that is merely quiet, or cut off, is kept however
// long: forgetting it would let its next signal set a new baseline, and a
// redelivery from before that baseline would then come after it (a
// reorder), a loss while it was cut off would go uncounted, and a retried
// publish would be skipped again.
const publisherIdle = 10 * time.Minute

// maxRetired is how many forgotten runs a publisherTable remembers as
// replaced.
const maxRetired = 1024

// publisherTable maps publishers to what a receiver keeps of each, and
// forgets the replaced runs idle for publisherIdle without a timestamp per
// entry: entries live in two generations, a lookup moves an entry into the
// recent one, and each rotation drops the older generation's replaced
// runs (but for those keep says must stay) and makes the recent one older.
// Not safe for concurrent use: its owner's lock guards it.
type publisherTable[V any] struct {
	recent, older map[publisherKey]V
	// latest is each node's run that appeared last: the ones it replaced
	// may be forgotten. One entry per node name, which is stable across
	// restarts.
	latest map[string]string
	// retired remembers the last maxRetired runs forgotten, so that a late
	// message from one (a run cut off while its node restarted, whose
	// outbox drains after the heal) does not make it its node's latest
	// again, which would let the live run be forgotten while quiet.
	retired recentSet[publisherKey]
	rotated time.Time
	idle    time.Duration
	// keep, when set, tells an entry that must outlive its idleness (a
	// stream still holding signals): rotation carries it over.
	keep func(V) bool
}

func newPublisherTable[V any](now time.Time, keep func(V) bool) *publisherTable[V] {
	return &publisherTable[V]{recent: map[publisherKey]V{}, older: map[publisherKey]V{}, latest: map[string]string{},
		retired: newRecentSet[publisherKey](maxRetired), rotated: now, idle: publisherIdle, keep: keep}
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

// set stores key's entry, marking it used. A key not in the table is its
// node's latest run, unless it is one the table forgot as replaced.
func (t *publisherTable[V]) set(key publisherKey, v V) {
	if _, ok := t.recent[key]; !ok {
		if _, ok := t.older[key]; ok {
			delete(t.older, key)
		} else if !t.retired.contains(key) {
			t.latest[key.node] = key.instance
		}
	}
	t.recent[key] = v
}

// rotate forgets the replaced runs unused since the rotation before last,
// once an idle period has passed since the last one.
func (t *publisherTable[V]) rotate(now time.Time) {
	if now.Sub(t.rotated) < t.idle {
		return
	}
	t.rotated = now
	for key, v := range t.older {
		if t.latest[key.node] == key.instance || (t.keep != nil && t.keep(v)) {
			t.recent[key] = v
		} else {
			t.retired.add(key) // forgetting the run retired maxRetired runs ago
		}
	}
	clear(t.older)
	t.recent, t.older = t.older, t.recent
}

// reset forgets every publisher.
func (t *publisherTable[V]) reset() {
	clear(t.recent)
	clear(t.older)
	clear(t.latest)
	t.retired.reset()
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
