package containers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/signalbus/signalbus/chaos"
	"github.com/signalbus/signalbus/e2e/internal/netns"
)

// Partition cuts the links between nodes of different groups and restores
// the links inside each group; a node in no group is cut from all. A node
// in two groups is an ErrBadFault.
func (c *Cluster) Partition(ctx context.Context, groups ...[]string) error {
	return c.fault(ctx, func(l *chaos.Links) error { return l.Partition(groups...) },
		"op", "partition", "groups", fmt.Sprint(groups))
}

// Isolate cuts node from every other node.
func (c *Cluster) Isolate(ctx context.Context, name string) error {
	return c.fault(ctx, func(l *chaos.Links) error { return l.Isolate(name) }, "op", "isolate", "node", name)
}

// Bridge cuts a from b and restores both links to bridge; every other link
// is left as it was.
func (c *Cluster) Bridge(ctx context.Context, a, bridge, b string) error {
	return c.fault(ctx, func(l *chaos.Links) error { return l.Bridge(a, bridge, b) },
		"op", "bridge", "a", a, "bridge", bridge, "b", b)
}

// BlackHole drops every packet on the link between from and to, both
// ways, without closing its connections.
func (c *Cluster) BlackHole(ctx context.Context, from, to string) error {
	return c.fault(ctx, func(l *chaos.Links) error { return l.BlackHole(from, to) },
		"op", "blackhole", "from", from, "to", to)
}

// Slow delays everything on the route link between from and to by
// latency in each direction (a round trip by twice that), at the route
// proxies; 0 removes the delay.
func (c *Cluster) Slow(ctx context.Context, from, to string, latency time.Duration) error {
	return c.fault(ctx, func(l *chaos.Links) error { return l.Slow(from, to, latency) },
		"op", "slow", "from", from, "to", to, "latency", latency)
}

// Heal undoes every network fault: it empties every node's rule chain
// and takes the latency off every proxy. Paused and killed nodes stay so.
func (c *Cluster) Heal(ctx context.Context) error {
	return c.fault(ctx, func(l *chaos.Links) error { l.Heal(); return nil }, "op", "heal")
}

// fault changes the link faults with change, logs it and puts the result
// in force.
func (c *Cluster) fault(ctx context.Context, change func(*chaos.Links) error, attrs ...any) error {
	c.mu.Lock()
	err := change(c.links)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.log.Info("fault", attrs...)
	return c.applyNet(ctx)
}

// dropsLocked are the packets node i's namespace drops: for every peer j
// whose link is down, all traffic with j's address (were a route to
// bypass the proxies), and i's side of the proxied link: its connections
// to proxy [i][j] on the gateway. j drops its own side, proxy [j][i], in
// its namespace.
func (c *Cluster) dropsLocked(i int) []netns.Drop {
	var drops []netns.Drop
	for j, peer := range c.nodes {
		if j == i || !c.links.Link(i, j).Down {
			continue
		}
		if peer.ip.IsValid() {
			drops = append(drops, netns.Drop{Peer: peer.ip})
		}
		drops = append(drops, netns.Drop{Peer: c.gateway, Port: c.proxyPort(i, j)})
	}
	return drops
}

// applyNet puts the faults in force everywhere: every live node's rules
// and every proxy.
func (c *Cluster) applyNet(ctx context.Context) error {
	c.mu.Lock()
	var all []int
	for i, n := range c.nodes {
		if (n.state == running || n.state == paused) && n.pid > 0 {
			all = append(all, i)
		}
	}
	c.mu.Unlock()
	return c.applyRules(ctx, all)
}

// applyRules replaces the rules in the namespaces of the nodes idx with
// those of the faults in force, then sets every proxy.
func (c *Cluster) applyRules(ctx context.Context, idx []int) error {
	c.netMu.Lock()
	defer c.netMu.Unlock()
	type job struct {
		i     int
		pid   int
		drops []netns.Drop
	}
	c.mu.Lock()
	jobs := make([]job, len(idx))
	for k, i := range idx {
		jobs[k] = job{i, c.nodes[i].pid, c.dropsLocked(i)}
	}
	c.mu.Unlock()
	var errs []error
	done := make([]bool, len(jobs))
	for k, j := range jobs {
		if err := netns.Apply(ctx, j.pid, j.drops); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.names[j.i], err))
			continue
		}
		done[k] = true
	}
	c.mu.Lock()
	for k, j := range jobs {
		// Unless it was killed meanwhile, which clears it.
		if n := c.nodes[j.i]; n.pid == j.pid {
			n.guarded = done[k]
		}
	}
	c.applyProxiesLocked()
	c.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("containers: network faults: %w", err)
	}
	return nil
}

// applyProxiesLocked sets every route proxy's latency, and black-holes
// those of a down link with an end whose rules are not in place yet.
func (c *Cluster) applyProxiesLocked() {
	for i, n := range c.nodes {
		for j, peer := range c.nodes {
			if i == j {
				continue
			}
			p, l := c.proxies[i][j], c.links.Link(i, j)
			p.SetLatency(l.Latency)
			if l.Down && (!n.guarded || !peer.guarded) {
				p.Blackhole()
			} else {
				p.Restore()
			}
		}
	}
}

// CheckRoutes checks, from every live node's own TCP table, that no route
// bypasses the proxies: every route connection a node accepted comes
// from the gateway (a proxy), and none goes straight to a peer's route
// port. A route learnt from gossip would show here.
func (c *Cluster) CheckRoutes() error {
	c.mu.Lock()
	type live struct {
		name string
		pid  int
		ip   netip.Addr
	}
	var nodes []live
	for _, n := range c.nodes {
		if (n.state == running || n.state == paused) && n.pid > 0 {
			nodes = append(nodes, live{n.name, n.pid, n.ip})
		}
	}
	c.mu.Unlock()
	var bad []string
	for _, n := range nodes {
		conns, err := netns.Established(n.pid)
		if err != nil {
			return fmt.Errorf("containers: routes of %s: %w", n.name, err)
		}
		for _, cn := range conns {
			switch {
			case cn.Local.Port() == RoutePort && cn.Remote.Addr() != c.gateway:
				bad = append(bad, fmt.Sprintf("%s accepted a route from %s", n.name, cn.Remote))
			case cn.Remote.Port() == RoutePort && cn.Remote.Addr() != n.ip:
				bad = append(bad, fmt.Sprintf("%s dialled a route to %s directly", n.name, cn.Remote))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("containers: routes bypass the proxies: %s", strings.Join(bad, "; "))
	}
	return nil
}
