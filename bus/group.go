package bus

import (
	"context"
	"fmt"
	"sync/atomic"
)

// WithGroup makes the subscription a member of a group: each signal that
// matches goes to one member of the group instead of to every member. On a
// plain bus the members are this bus's subscriptions with the same group
// name; the bus picks them in turn, skipping a member whose queue is full
// while another has room. On a clustered bus (package cluster) the group
// spans the cluster: each signal goes to one member on one node, and
// another member takes over when a node dies.
//
// A group shares work, so it shares order too: each member sees its share
// in publish order, but two signals handled by two members may finish in
// either order. The name is [A-Za-z0-9_-]+.
func WithGroup(name string) SubscribeOption {
	return func(c *subConfig) error {
		if name == "" {
			return fmt.Errorf("%w: WithGroup: empty group name", ErrInvalidOption)
		}
		for i := 0; i < len(name); i++ {
			if !isSegmentByte(name[i]) {
				return fmt.Errorf("%w: WithGroup: group name %q has %q at offset %d; names are [A-Za-z0-9_-]+",
					ErrInvalidOption, name, name[i], i)
			}
		}
		c.group = name
		return nil
	}
}

// subGroup is one group of a bus: its members share the turn counter.
type subGroup struct {
	name    string
	members int // guarded by Bus.mu
	turn    atomic.Uint64
}

// Group returns the subscription's group name, or "" when it has none.
func (s *Subscription) Group() string { return s.cfg.group }

// joinGroup returns the bus's group called name, making it if needed. The
// caller holds b.mu.
func (b *Bus) joinGroup(name string) *subGroup {
	if b.groups == nil {
		b.groups = make(map[string]*subGroup)
	}
	g := b.groups[name]
	if g == nil {
		g = &subGroup{name: name}
		b.groups[name] = g
	}
	g.members++
	return g
}

// leaveGroup drops a member, and the group with its last. The caller holds
// b.mu.
func (b *Bus) leaveGroup(g *subGroup) {
	g.members--
	if g.members == 0 {
		delete(b.groups, g.name)
	}
}

// offerToGroup queues e for one member: the next in turn with room, or,
// when every queue is full, the next in turn under its overflow policy.
// A member that closed since members was read is passed over (the signal
// goes to the next one); only when all have closed is e for none of them.
func (b *Bus) offerToGroup(ctx context.Context, members []*Subscription, e *envelope) error {
	first := int(members[0].group.turn.Add(1) % uint64(len(members)))
	for i := range members {
		s := members[(first+i)%len(members)]
		if res, _, _ := s.queue.push(ctx, e, Reject); res == pushed {
			return nil
		}
	}
	for i := range members {
		taken, err := members[(first+i)%len(members)].offer(ctx, e)
		if taken || err != nil {
			return err
		}
	}
	return nil
}
