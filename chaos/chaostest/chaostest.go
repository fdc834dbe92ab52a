// Package chaostest is the conformance suite of chaos.Cluster backends:
// every backend passes the same tests, so a scenario means the same on
// each. Each test injects a fault and checks what a node shows of it from
// outside: its /readyz and /metrics over HTTPURL, and NATS traffic over
// ClientURL.
package chaostest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/chaos"
)

// PartitionVisibleWithin is how soon a partition must show in the
// partitioned gauge of an isolated node (the contract).
const PartitionVisibleWithin = 15 * time.Second

// Backend is what the suite needs of the cluster under test: a running
// cluster of at least three nodes, and a way to wait until it is whole
// again (every node up, ready, not partitioned).
type Backend struct {
	Cluster   chaos.Cluster
	WaitReady func(ctx context.Context) error
}

// Run runs every conformance test against b, one after another (they
// share the cluster, and each leaves it healed and whole).
func Run(t *testing.T, b Backend) {
	nodes := b.Cluster.Nodes()
	if len(nodes) < 3 {
		t.Fatalf("the suite needs three nodes, the cluster has %v", nodes)
	}
	for _, tc := range []struct {
		name string
		test func(*testing.T, Backend)
	}{
		{"BadInput", testBadInput},
		{"Isolate", testIsolate},
		{"Partition", testPartition},
		{"Bridge", testBridge},
		{"BlackHole", testBlackHole},
		{"Slow", testSlow},
		{"Pause", testPause},
		{"KillRestart", testKillRestart},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.test(t, b) }) {
			return // the cluster may be left faulted: the rest would mislead
		}
	}
}

func deadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// restore heals and waits for the cluster to be whole.
func restore(t *testing.T, b Backend) {
	t.Helper()
	ctx := deadline(t, 90*time.Second)
	if err := b.Cluster.Heal(ctx); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	if err := b.WaitReady(ctx); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
}

func testBadInput(t *testing.T, b Backend) {
	c := b.Cluster
	ctx := deadline(t, 30*time.Second)
	n := c.Nodes()
	for name, err := range map[string]error{
		"Kill":      c.Kill(ctx, "nope"),
		"Restart":   c.Restart(ctx, "nope"),
		"Pause":     c.Pause(ctx, "nope"),
		"Resume":    c.Resume(ctx, "nope"),
		"Isolate":   c.Isolate(ctx, "nope"),
		"Partition": c.Partition(ctx, []string{n[0]}, []string{"nope"}),
		"Bridge":    c.Bridge(ctx, n[0], "nope", n[1]),
		"Slow":      c.Slow(ctx, "nope", n[0], time.Millisecond),
		"BlackHole": c.BlackHole(ctx, n[0], "nope"),
	} {
		if !errors.Is(err, chaos.ErrUnknownNode) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("%s of an unknown node: %v, want chaos.ErrUnknownNode naming it", name, err)
		}
	}
	for name, err := range map[string]error{
		"BlackHole to itself":  c.BlackHole(ctx, n[0], n[0]),
		"Slow to itself":       c.Slow(ctx, n[0], n[0], time.Millisecond),
		"Slow, negative":       c.Slow(ctx, n[0], n[1], -time.Second),
		"Bridge of two":        c.Bridge(ctx, n[0], n[0], n[1]),
		"Partition, twice one": c.Partition(ctx, []string{n[0]}, []string{n[0], n[1]}),
	} {
		if !errors.Is(err, chaos.ErrBadFault) {
			t.Errorf("%s: %v, want chaos.ErrBadFault", name, err)
		}
	}
	if c.ClientURL("nope") != "" || c.HTTPURL("nope") != "" {
		t.Error("an unknown node has URLs")
	}
	restore(t, b)
}

func testIsolate(t *testing.T, b Backend) {
	c, n := b.Cluster, b.Cluster.Nodes()
	ctx := deadline(t, 60*time.Second)
	if err := c.Isolate(ctx, n[0]); err != nil {
		t.Fatal(err)
	}
	WaitGauge(t, c, n[0], "signalbus_cluster_partitioned", 1, PartitionVisibleWithin)
	waitReadyz(t, c, n[0], http.StatusServiceUnavailable, PartitionVisibleWithin)
	for _, other := range n[1:] {
		if v, err := Gauge(ctx, c, other, "signalbus_cluster_partitioned"); err != nil || v != 0 {
			t.Errorf("%s, on the majority side: partitioned = %v, %v; want 0", other, v, err)
		}
	}
	restore(t, b)
	WaitGauge(t, c, n[0], "signalbus_cluster_partitioned", 0, PartitionVisibleWithin)
}

func testPartition(t *testing.T, b Backend) {
	c, n := b.Cluster, b.Cluster.Nodes()
	ctx := deadline(t, 60*time.Second)
	// The last node is in no group: it is cut from all.
	if err := c.Partition(ctx, n[:len(n)-1]); err != nil {
		t.Fatal(err)
	}
	last := n[len(n)-1]
	WaitGauge(t, c, last, "signalbus_cluster_partitioned", 1, PartitionVisibleWithin)
	restore(t, b)
}

func testBridge(t *testing.T, b Backend) {
	c, n := b.Cluster, b.Cluster.Nodes()
	ctx := deadline(t, 60*time.Second)
	if err := c.Bridge(ctx, n[0], n[1], n[2]); err != nil {
		t.Fatal(err)
	}
	// n[0] and n[2] no longer talk; each still has a majority through n[1].
	WaitUnreachable(t, c, n[0], n[2])
	if err := RoundTrip(ctx, c, n[0], n[1], 10*time.Second); err != nil {
		t.Errorf("through the bridge %s–%s: %v", n[0], n[1], err)
	}
	if err := RoundTrip(ctx, c, n[2], n[1], 10*time.Second); err != nil {
		t.Errorf("through the bridge %s–%s: %v", n[2], n[1], err)
	}
	restore(t, b)
	if err := RoundTrip(ctx, c, n[0], n[2], 10*time.Second); err != nil {
		t.Errorf("after Heal, %s–%s: %v", n[0], n[2], err)
	}
}

func testBlackHole(t *testing.T, b Backend) {
	c, n := b.Cluster, b.Cluster.Nodes()
	ctx := deadline(t, 60*time.Second)
	if err := c.BlackHole(ctx, n[0], n[1]); err != nil {
		t.Fatal(err)
	}
	WaitUnreachable(t, c, n[0], n[1])
	if err := RoundTrip(ctx, c, n[0], n[2], 10*time.Second); err != nil {
		t.Errorf("beside the black hole, %s–%s: %v", n[0], n[2], err)
	}
	restore(t, b)
	if err := RoundTrip(ctx, c, n[0], n[1], 10*time.Second); err != nil {
		t.Errorf("after Heal, %s–%s: %v", n[0], n[1], err)
	}
}

// testSlow checks a lower bound only: latency added to a link can only
// make a round trip over it longer, however busy the machine.
func testSlow(t *testing.T, b Backend) {
	c, n := b.Cluster, b.Cluster.Nodes()
	ctx := deadline(t, 60*time.Second)
	const latency = 300 * time.Millisecond
	if err := c.Slow(ctx, n[0], n[1], latency); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skipf("this backend cannot slow a link: %v", err)
		}
		t.Fatal(err)
	}
	var took time.Duration
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := RoundTrip(ctx, c, n[0], n[1], 10*time.Second)
		took = time.Since(start)
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("over the slow link: %v", err)
		}
	}
	if took < latency {
		t.Errorf("a round trip over a link slowed by %v took %v", latency, took)
	}
	restore(t, b)
}

func testPause(t *testing.T, b Backend) {
	c, n := b.Cluster, b.Cluster.Nodes()
	ctx := deadline(t, 90*time.Second)
	victim := n[len(n)-1]
	if err := c.Pause(ctx, victim); err != nil {
		t.Fatal(err)
	}
	// A frozen process keeps its sockets: a request times out rather
	// than being refused.
	probe, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := get(probe, c.HTTPURL(victim)+"/healthz")
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GET /healthz of a paused node: %v, want a timeout", err)
	}
	// Its peers see it go.
	WaitGauge(t, c, n[0], `signalbus_cluster_members{state="up"}`, float64(len(n)-1), PartitionVisibleWithin)
	if err := c.Resume(ctx, victim); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, c, victim, http.StatusOK, 60*time.Second)
	restore(t, b)
}

func testKillRestart(t *testing.T, b Backend) {
	c, n := b.Cluster, b.Cluster.Nodes()
	ctx := deadline(t, 120*time.Second)
	victim := n[1]
	if err := c.Kill(ctx, victim); err != nil {
		t.Fatal(err)
	}
	probe, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := get(probe, c.HTTPURL(victim)+"/healthz")
	cancel()
	if err == nil {
		t.Errorf("a killed node answers /healthz")
	}
	if nc, err := nats.Connect(c.ClientURL(victim), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Errorf("a killed node takes a NATS connection")
	}
	WaitGauge(t, c, n[0], `signalbus_cluster_members{state="up"}`, float64(len(n)-1), PartitionVisibleWithin)
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitReady(ctx); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	waitReadyz(t, c, victim, http.StatusOK, 30*time.Second)
	if err := RoundTrip(ctx, c, victim, n[0], 10*time.Second); err != nil {
		t.Errorf("after Restart, %s–%s: %v", victim, n[0], err)
	}
	restore(t, b)
}

// get returns the status of a GET of url.
func get(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// Gauge returns the value of a gauge on node's /metrics: name is a family
// name, optionally with one label matcher ("signalbus_cluster_members
// {state=\"up\"}"); the sum if several series match.
func Gauge(ctx context.Context, c chaos.Cluster, node, name string) (float64, error) {
	family, matcher, _ := strings.Cut(strings.TrimSuffix(name, "}"), "{")
	probe, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(probe, http.MethodGet, c.HTTPURL(node)+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	found, sum := false, 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, family+"{") && !strings.HasPrefix(line, family+" ") {
			continue
		}
		if labels, _, _ := strings.Cut(line[len(family):], "}"); matcher != "" && !strings.Contains(labels, matcher) {
			continue
		}
		fields := strings.Fields(line[strings.LastIndexByte(line, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		found, sum = true, sum+v
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%s has no series %s", node, name)
	}
	return sum, nil
}

// WaitGauge waits, to within, until node's gauge (as Gauge names it) is want.
func WaitGauge(t *testing.T, c chaos.Cluster, node, name string, want float64, within time.Duration) {
	t.Helper()
	ctx := deadline(t, within)
	var v float64
	var err error
	for ctx.Err() == nil {
		if v, err = Gauge(ctx, c, node, name); err == nil && v == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s's %s = %v (%v) after %v, want %v", node, name, v, err, within, want)
}

func waitReadyz(t *testing.T, c chaos.Cluster, node string, want int, within time.Duration) {
	t.Helper()
	ctx := deadline(t, within)
	var code int
	var err error
	for ctx.Err() == nil {
		if code, err = get(ctx, c.HTTPURL(node)+"/readyz"); err == nil && code == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s's /readyz = %d (%v) after %v, want %d", node, code, err, within, want)
}

// RoundTrip sends a request from a client of node from to a responder on
// node to and waits for the reply: the message crosses the cluster link
// between them.
func RoundTrip(ctx context.Context, c chaos.Cluster, from, to string, timeout time.Duration) error {
	resp, err := nats.Connect(c.ClientURL(to), nats.Timeout(5*time.Second), nats.NoReconnect(), nats.IgnoreDiscoveredServers())
	if err != nil {
		return fmt.Errorf("connect to %s: %w", to, err)
	}
	defer resp.Close()
	subject := "chaostest.ping." + nats.NewInbox()[len(nats.InboxPrefix):]
	if _, err := resp.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		return err
	}
	if err := resp.Flush(); err != nil {
		return err
	}
	req, err := nats.Connect(c.ClientURL(from), nats.Timeout(5*time.Second), nats.NoReconnect(), nats.IgnoreDiscoveredServers())
	if err != nil {
		return fmt.Errorf("connect to %s: %w", from, err)
	}
	defer req.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The responder's interest reaches from's server over the route,
	// which may take a moment: a request with no responders yet is tried
	// again.
	for {
		_, err := req.RequestWithContext(ctx, subject, []byte("ping"))
		if err == nil {
			return nil
		}
		if !errors.Is(err, nats.ErrNoResponders) || ctx.Err() != nil {
			return fmt.Errorf("request %s→%s: %w", from, to, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitUnreachable waits until a request from from to to fails: interest
// already known on both sides may let the first few through before the
// fault is in place everywhere.
func WaitUnreachable(t *testing.T, c chaos.Cluster, from, to string) {
	t.Helper()
	ctx := deadline(t, 30*time.Second)
	for ctx.Err() == nil {
		if err := RoundTrip(ctx, c, from, to, 2*time.Second); err != nil {
			return
		}
	}
	t.Fatalf("%s still reaches %s under the fault", from, to)
}
