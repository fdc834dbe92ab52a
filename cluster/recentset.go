package cluster

// recentSet is a set that remembers the last size keys added, forgetting
// the oldest first: the shape of every bounded memory a node keeps of what
// it saw (the ids handed to handlers, the runs a receiver forgot, what it
// parked). Its memory grows with use, not with size. Not safe for
// concurrent use: its owner's lock guards it.
type recentSet[K comparable] struct {
	keys map[K]struct{}
	ring []K // in the order added; grows to size, then wraps at next
	next int
	size int
}

func newRecentSet[K comparable](size int) recentSet[K] {
	return recentSet[K]{keys: map[K]struct{}{}, size: size}
}

// contains reports whether k is among the keys remembered.
func (s *recentSet[K]) contains(k K) bool {
	_, ok := s.keys[k]
	return ok
}

// add remembers k, forgetting the oldest key once size are held, and
// reports whether k was new.
func (s *recentSet[K]) add(k K) bool {
	if _, ok := s.keys[k]; ok {
		return false
	}
	s.keys[k] = struct{}{}
	if len(s.ring) < s.size {
		s.ring = append(s.ring, k)
		return true
	}
	delete(s.keys, s.ring[s.next])
	s.ring[s.next] = k
	s.next = (s.next + 1) % s.size
	return true
}

// len returns how many keys are remembered.
func (s *recentSet[K]) len() int { return len(s.keys) }

// reset forgets every key.
func (s *recentSet[K]) reset() {
	clear(s.keys)
	clear(s.ring)
	s.ring, s.next = s.ring[:0], 0
}
