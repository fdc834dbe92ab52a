package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/signalbus/signalbus/bus"
)

// fastMembershipConfig beats every 50 ms and gives up after 4 misses, so
// tests see transitions in a fraction of a second.
func fastMembership(cfg Config) Config {
	cfg.HeartbeatInterval = 50 * time.Millisecond
	cfg.MissedHeartbeats = 4
	return cfg
}

// watcher records the membership signals a node emits on its bus.
type watcher struct {
	mu     sync.Mutex
	events []string // "<type> <node> <reason>"
}

func watch(t *testing.T, n *Node) *watcher {
	t.Helper()
	w := &watcher{}
	if _, err := n.Bus().Subscribe("signalbus.cluster.**", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		var ev MembershipEvent
		if err := s.DecodeData(&ev); err != nil {
			t.Errorf("membership signal data: %v", err)
		}
		if s.Subject != ev.Node {
			t.Errorf("membership signal subject %q, data node %q", s.Subject, ev.Node)
		}
		w.mu.Lock()
		w.events = append(w.events, fmt.Sprintf("%s %s %s", s.Type, ev.Node, ev.Reason))
		w.mu.Unlock()
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *watcher) waitFor(t *testing.T, event string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		w.mu.Lock()
		for _, e := range w.events {
			if e == event {
				w.mu.Unlock()
				return
			}
		}
		seen := append([]string(nil), w.events...)
		w.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %q among the membership signals %v", event, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitMembers(t *testing.T, n *Node, want map[string]MemberState) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := map[string]MemberState{}
		for _, m := range n.Members() {
			got[m.Name] = m.State
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s sees members %v, want %v", n.Name(), got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startMembershipCluster starts size nodes; onFirst runs once the first
// is up, before the others start.
// startMembershipCluster starts size nodes beating as fastMembership does;
// missed, when not zero, is the beats a node may miss (tolerance for a
// test that counts transitions exactly, which a stall of a loaded machine
// would add to).
func startMembershipCluster(t *testing.T, size, expected, missed int, onFirst func(*Node), mp ...metric.MeterProvider) []*Node {
	t.Helper()
	shape := func(cfg Config) Config {
		cfg = fastMembership(cfg)
		if missed > 0 {
			cfg.MissedHeartbeats = missed
		}
		return cfg
	}
	cfg := shape(Config{Name: "n0", Mode: Fast, ClusterListen: "127.0.0.1:0", ExpectedSize: expected})
	if len(mp) > 0 {
		cfg.MeterProvider = mp[0]
	}
	first := startNode(t, cfg)
	if onFirst != nil {
		onFirst(first)
	}
	nodes := []*Node{first}
	for i := 1; i < size; i++ {
		nodes = append(nodes, startNode(t, shape(Config{Name: fmt.Sprintf("n%d", i), Mode: Fast,
			ClusterListen: "127.0.0.1:0", Routes: []string{first.server.ClusterURL()}, ExpectedSize: expected})))
	}
	return nodes
}

func TestMembershipSeesEveryNode(t *testing.T) {
	var w *watcher
	nodes := startMembershipCluster(t, 3, 3, 0, func(n *Node) { w = watch(t, n) })
	all := map[string]MemberState{"n0": Up, "n1": Up, "n2": Up}
	for _, n := range nodes {
		waitMembers(t, n, all)
	}
	w.waitFor(t, TypeNodeUp+" n1 heartbeat")
	w.waitFor(t, TypeNodeUp+" n2 heartbeat")
	for _, m := range nodes[1].Members() {
		if m.LastSeen.IsZero() {
			t.Errorf("member %s has no LastSeen", m.Name)
		}
	}
}

// TestDepartureAndPartition: a node that closes is down at once on its
// peers ("departed"); once fewer than a majority of the expected three
// remain, the last one reports a partition.
func TestDepartureAndPartition(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	// Departures are announced, not missed: 40 beats (2 s) of tolerance
	// keep a stalled beat from adding a transition to the exact counts.
	nodes := startMembershipCluster(t, 3, 3, 40, nil, mp) // n0 reports to reader
	for _, n := range nodes {
		waitMembers(t, n, map[string]MemberState{"n0": Up, "n1": Up, "n2": Up})
	}
	w := watch(t, nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[2].Close(ctx); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, TypeNodeDown+" n2 departed")
	waitMembers(t, nodes[0], map[string]MemberState{"n0": Up, "n1": Up, "n2": Down})
	if err := nodes[1].Close(ctx); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, TypeNodeDown+" n1 departed")
	w.waitFor(t, TypePartitionDetected+" n0 majority")

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					state, _ := dp.Attributes.Value("state")
					got[m.Name+"/"+state.Emit()] = dp.Value
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					ev, _ := dp.Attributes.Value("event")
					got[m.Name+"/"+ev.Emit()] += dp.Value
				}
			}
		}
	}
	// A partition may also have been seen at start-up, if the peers took
	// longer than the settling time to be heard; the rest is exact.
	if got["signalbus.cluster.transitions/partition"] < 1 {
		t.Errorf("no partition transition counted: %v", got)
	}
	for key, want := range map[string]int64{
		"signalbus.cluster.members/up": 1, "signalbus.cluster.members/down": 2,
		"signalbus.cluster.partitioned/":          1,
		"signalbus.cluster.transitions/node_down": 2, "signalbus.cluster.transitions/node_up": 2,
	} {
		if got[key] != want {
			t.Errorf("%s = %d, want %d (all: %v)", key, got[key], want, got)
		}
	}
}

func TestMembershipEventData(t *testing.T) {
	ev := MembershipEvent{Node: "n1", Reachable: 2, Expected: 3, Reason: "departed", At: time.Unix(0, 0).UTC()}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"node":"n1","reachable":2,"expected":3,"reason":"departed","at":"1970-01-01T00:00:00Z"}` {
		t.Errorf("MembershipEvent JSON = %s", b)
	}
}
