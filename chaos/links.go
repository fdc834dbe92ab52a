package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Link is the network fault on the link between two nodes.
type Link struct {
	Down    bool          // packets dropped both ways (a partition, a black hole)
	Latency time.Duration // added each way
}

// Links is the network-fault state of a cluster's links, kept by a
// backend: the Cluster methods that fault links change it, with the
// same checks and errors whatever the backend, and the backend then
// applies Link(i, j) to each pair its own way. It is not safe for
// concurrent use: the backend holds its own lock around it.
type Links struct {
	names []string
	links map[[2]int]Link
}

// NewLinks returns the state of a healthy cluster of these nodes.
func NewLinks(names []string) *Links {
	return &Links{names: slices.Clone(names), links: map[[2]int]Link{}}
}

// Index returns the index of node name, or an error wrapping
// ErrUnknownNode.
func (l *Links) Index(name string) (int, error) {
	if i := slices.Index(l.names, name); i >= 0 {
		return i, nil
	}
	return -1, fmt.Errorf("%w: %q (the nodes are %s)", ErrUnknownNode, name, strings.Join(l.names, ", "))
}

// Link returns the fault on the link between nodes i and j.
func (l *Links) Link(i, j int) Link { return l.links[pair(i, j)] }

// Partition sets the links between nodes of different groups down and
// those within a group up; a node in no group is cut from all. Latency
// stays as it was.
func (l *Links) Partition(groups ...[]string) error {
	group := make([]int, len(l.names))
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, name := range members {
			i, err := l.Index(name)
			if err != nil {
				return err
			}
			if group[i] >= 0 {
				return fmt.Errorf("%w: %s is in two groups", ErrBadFault, name)
			}
			group[i] = g
		}
	}
	for i := range l.names {
		for j := i + 1; j < len(l.names); j++ {
			l.setDown(i, j, group[i] != group[j])
		}
	}
	return nil
}

// Isolate cuts node from every other node.
func (l *Links) Isolate(node string) error {
	if _, err := l.Index(node); err != nil {
		return err
	}
	rest := slices.DeleteFunc(slices.Clone(l.names), func(n string) bool { return n == node })
	return l.Partition([]string{node}, rest)
}

// Bridge cuts a from b and sets both links to bridge up; every other
// link stays as it was.
func (l *Links) Bridge(a, bridge, b string) error {
	ia, err := l.Index(a)
	if err != nil {
		return err
	}
	ibr, err := l.Index(bridge)
	if err != nil {
		return err
	}
	ib, err := l.Index(b)
	if err != nil {
		return err
	}
	if ia == ib || ia == ibr || ib == ibr {
		return fmt.Errorf("%w: bridge %s–%s–%s needs three nodes", ErrBadFault, a, bridge, b)
	}
	l.setDown(ia, ib, true)
	l.setDown(ia, ibr, false)
	l.setDown(ib, ibr, false)
	return nil
}

// BlackHole sets the link between from and to down.
func (l *Links) BlackHole(from, to string) error {
	i, j, err := l.pair(from, to)
	if err != nil {
		return err
	}
	l.setDown(i, j, true)
	return nil
}

// Slow sets the latency of the link between from and to.
func (l *Links) Slow(from, to string, latency time.Duration) error {
	i, j, err := l.pair(from, to)
	if err != nil {
		return err
	}
	if latency < 0 {
		return fmt.Errorf("%w: latency %v", ErrBadFault, latency)
	}
	k := pair(i, j)
	link := l.links[k]
	link.Latency = latency
	l.links[k] = link
	return nil
}

// Heal clears every link fault.
func (l *Links) Heal() { clear(l.links) }

func (l *Links) pair(from, to string) (int, int, error) {
	i, err := l.Index(from)
	if err != nil {
		return 0, 0, err
	}
	j, err := l.Index(to)
	if err != nil {
		return 0, 0, err
	}
	if i == j {
		return 0, 0, fmt.Errorf("%w: a link from %s to itself", ErrBadFault, from)
	}
	return i, j, nil
}

func (l *Links) setDown(i, j int, down bool) {
	k := pair(i, j)
	link := l.links[k]
	link.Down = down
	l.links[k] = link
}

func pair(i, j int) [2]int {
	if i > j {
		i, j = j, i
	}
	return [2]int{i, j}
}
