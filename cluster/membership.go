package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/signalbus/signalbus/bus"
)

// Types of the signals a node publishes on its own bus (never over the
// wire) when membership changes. Their subject is the node concerned; their
// data a MembershipEvent.
const (
	TypeNodeUp            = "signalbus.cluster.node.up"
	TypeNodeDown          = "signalbus.cluster.node.down"
	TypePartitionDetected = "signalbus.cluster.partition.detected"
	TypePartitionHealed   = "signalbus.cluster.partition.healed"
)

// MemberState is whether a member is reachable.
type MemberState int

const (
	// Up: heard from within the last MissedHeartbeats intervals.
	Up MemberState = iota
	// Down: silent for longer, or departed.
	Down
)

func (s MemberState) String() string {
	if s == Up {
		return "up"
	}
	return "down"
}

// Member is a node this node has seen, itself included.
type Member struct {
	Name     string
	State    MemberState
	LastSeen time.Time
}

// MembershipEvent is the data of a membership signal.
type MembershipEvent struct {
	Node      string    `json:"node"`      // the node that went up or down; for partitions, this node
	Reachable int       `json:"reachable"` // members up, this node included
	Expected  int       `json:"expected"`  // ExpectedSize, or the largest membership seen
	Reason    string    `json:"reason"`    // "heartbeat", "missed_heartbeats", "departed"
	At        time.Time `json:"at"`        // when this node noticed
}

// heartbeat is what a node announces on the membership subject.
type heartbeat struct {
	Name    string `json:"name"`
	Leaving bool   `json:"leaving,omitempty"`
}

// membership tracks the other nodes from their heartbeats. All of it runs
// on the node's heartbeat goroutine and the NATS subscription goroutine,
// under mu.
type membership struct {
	n        *Node
	interval time.Duration
	missed   int
	expected int // Config.ExpectedSize; 0 = the peak seen

	// settled is when partition detection starts: a node needs as long
	// as a member may stay silent to hear from its peers at all.
	settled time.Time

	mu          sync.Mutex
	members     map[string]*Member
	peak        int
	partitioned bool

	sub       *nats.Subscription
	stop      chan struct{}
	done      chan struct{}
	leaveOnce sync.Once

	transitions metric.Int64Counter
	gaugeReg    metric.Registration
}

func newMembership(n *Node) *membership {
	return &membership{
		n:        n,
		interval: n.cfg.HeartbeatInterval,
		missed:   n.cfg.MissedHeartbeats,
		expected: n.cfg.ExpectedSize,
		members:  map[string]*Member{n.cfg.Name: {Name: n.cfg.Name, State: Up, LastSeen: time.Now()}},
		peak:     1,
		settled:  time.Now().Add(time.Duration(n.cfg.MissedHeartbeats) * n.cfg.HeartbeatInterval),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

func (m *membership) subject(name string) string { return m.n.cfg.MembershipSubject + "." + name }

// start subscribes to the other nodes' heartbeats, registers the metrics
// and starts announcing this node.
func (m *membership) start(meter metric.Meter) error {
	var err error
	m.transitions, err = meter.Int64Counter("signalbus.cluster.transitions",
		metric.WithUnit("{event}"), metric.WithDescription("Membership transitions this node observed: node_up, node_down, partition, heal."))
	if err != nil {
		return err
	}
	members, err := meter.Int64ObservableGauge("signalbus.cluster.members",
		metric.WithUnit("{node}"), metric.WithDescription("Nodes this node has seen, by state (up, down), itself included."))
	if err != nil {
		return err
	}
	partitioned, err := meter.Int64ObservableGauge("signalbus.cluster.partitioned",
		metric.WithDescription("1 while fewer than a majority of the expected nodes are reachable from this node, else 0."))
	if err != nil {
		return err
	}
	node := attribute.String("signalbus.node", m.n.cfg.Name)
	m.gaugeReg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		up, down := 0, 0
		for _, mem := range m.members {
			if mem.State == Up {
				up++
			} else {
				down++
			}
		}
		o.ObserveInt64(members, int64(up), metric.WithAttributes(node, attribute.String("state", "up")))
		o.ObserveInt64(members, int64(down), metric.WithAttributes(node, attribute.String("state", "down")))
		var p int64
		if m.partitioned {
			p = 1
		}
		o.ObserveInt64(partitioned, p, metric.WithAttributes(node))
		return nil
	}, members, partitioned)
	if err != nil {
		return err
	}
	m.sub, err = m.n.nc.Subscribe(m.n.cfg.MembershipSubject+".*", m.receive)
	if err != nil {
		return fmt.Errorf("subscribe %s.*: %w", m.n.cfg.MembershipSubject, err)
	}
	m.announce(false)
	go m.run()
	return nil
}

func (m *membership) announce(leaving bool) {
	b, _ := json.Marshal(heartbeat{Name: m.n.cfg.Name, Leaving: leaving})
	if err := m.n.nc.Publish(m.subject(m.n.cfg.Name), b); err != nil {
		m.n.logger.Debug("heartbeat not sent", "error", err)
	}
}

// run heartbeats and checks for silent members every interval.
func (m *membership) run() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.announce(false)
			m.check(now)
		}
	}
}

func (m *membership) receive(msg *nats.Msg) {
	var hb heartbeat
	if err := json.Unmarshal(msg.Data, &hb); err != nil || hb.Name == "" || !strings.HasSuffix(msg.Subject, "."+hb.Name) {
		m.n.logger.Warn("ignoring a malformed heartbeat", "subject", msg.Subject, "error", err)
		return
	}
	if hb.Name == m.n.cfg.Name {
		return
	}
	now := time.Now()
	var events []MembershipEvent
	var types []string
	m.mu.Lock()
	mem, known := m.members[hb.Name]
	if !known {
		mem = &Member{Name: hb.Name, State: Down}
		m.members[hb.Name] = mem
		m.peak = max(m.peak, len(m.members))
	}
	mem.LastSeen = now
	switch {
	case hb.Leaving && mem.State == Up:
		mem.State = Down
		types = append(types, TypeNodeDown)
		events = append(events, m.eventLocked(hb.Name, "departed", now))
	case !hb.Leaving && mem.State == Down:
		mem.State = Up
		types = append(types, TypeNodeUp)
		events = append(events, m.eventLocked(hb.Name, "heartbeat", now))
	}
	if typ, ev, ok := m.partitionChangeLocked(now); ok {
		types, events = append(types, typ), append(events, ev)
	}
	m.mu.Unlock()
	m.emit(types, events)
}

// check marks down the members silent for more than missed intervals.
func (m *membership) check(now time.Time) {
	limit := time.Duration(m.missed) * m.interval
	var events []MembershipEvent
	var types []string
	m.mu.Lock()
	for name, mem := range m.members {
		if name == m.n.cfg.Name {
			mem.LastSeen = now
			continue
		}
		if mem.State == Up && now.Sub(mem.LastSeen) > limit {
			mem.State = Down
			types = append(types, TypeNodeDown)
			events = append(events, m.eventLocked(name, "missed_heartbeats", now))
		}
	}
	if typ, ev, ok := m.partitionChangeLocked(now); ok {
		types, events = append(types, typ), append(events, ev)
	}
	m.mu.Unlock()
	m.emit(types, events)
}

func (m *membership) reachableLocked() (up, expected int) {
	for _, mem := range m.members {
		if mem.State == Up {
			up++
		}
	}
	expected = m.expected
	if expected == 0 {
		expected = m.peak
	}
	return up, expected
}

func (m *membership) eventLocked(node, reason string, now time.Time) MembershipEvent {
	up, expected := m.reachableLocked()
	return MembershipEvent{Node: node, Reachable: up, Expected: expected, Reason: reason, At: now}
}

// partitionChangeLocked reports a change of the partitioned state: this
// node is partitioned while fewer than a majority of the expected nodes,
// itself included, are up.
func (m *membership) partitionChangeLocked(now time.Time) (string, MembershipEvent, bool) {
	if now.Before(m.settled) {
		return "", MembershipEvent{}, false
	}
	up, expected := m.reachableLocked()
	partitioned := up < expected/2+1
	if partitioned == m.partitioned {
		return "", MembershipEvent{}, false
	}
	m.partitioned = partitioned
	ev := MembershipEvent{Node: m.n.cfg.Name, Reachable: up, Expected: expected, Reason: "majority", At: now}
	if partitioned {
		return TypePartitionDetected, ev, true
	}
	return TypePartitionHealed, ev, true
}

var transitionEvent = map[string]string{
	TypeNodeUp: "node_up", TypeNodeDown: "node_down",
	TypePartitionDetected: "partition", TypePartitionHealed: "heal",
}

// emit turns transitions into a metric, a log line and a signal on the
// local bus, outside the lock.
func (m *membership) emit(types []string, events []MembershipEvent) {
	for i, typ := range types {
		ev := events[i]
		m.transitions.Add(context.Background(), 1, metric.WithAttributes(
			attribute.String("signalbus.node", m.n.cfg.Name), attribute.String("event", transitionEvent[typ])))
		m.n.logger.Info("cluster membership changed", "event", transitionEvent[typ], "node", ev.Node,
			"reachable", ev.Reachable, "expected", ev.Expected, "reason", ev.Reason)
		sig, err := bus.NewSignal(typ, "/signalbus/cluster/"+m.n.cfg.Name, ev, bus.WithSubject(ev.Node))
		if err != nil {
			m.n.logger.Error("membership signal", "error", err)
			continue
		}
		if err := m.n.bus.Dispatch(m.n.ctx, sig); err != nil {
			m.n.logger.Debug("membership signal not dispatched", "type", typ, "error", err)
		}
	}
}

// snapshot returns the members sorted by name.
func (m *membership) snapshot() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, *mem)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// leave announces the departure and stops the heartbeat goroutine.
func (m *membership) leave() {
	m.leaveOnce.Do(func() {
		close(m.stop)
		<-m.done
		if m.sub != nil {
			_ = m.sub.Unsubscribe()
		}
		m.announce(true)
		if m.gaugeReg != nil {
			_ = m.gaugeReg.Unregister()
		}
	})
}
