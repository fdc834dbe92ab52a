package cluster

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// gaugePoint is one observed value of a NATS gauge.
type gaugePoint struct {
	value int64
	attrs attribute.Set
}

func collectGauges(t *testing.T, reader *sdkmetric.ManualReader) map[string][]gaugePoint {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string][]gaugePoint{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok {
				for _, dp := range g.DataPoints {
					got[m.Name] = append(got[m.Name], gaugePoint{dp.Value, dp.Attributes})
				}
			}
		}
	}
	return got
}

func attr(s attribute.Set, key string) string {
	v, _ := s.Value(attribute.Key(key))
	return v.Emit()
}

// TestNATSGaugesDurable: a durable node on its embedded server exports the
// stream's messages and bytes, its own consumer's pending counts, and the
// server's routes and slow consumers, labelled as prometheus-nats-exporter
// labels them.
func TestNATSGaugesDurable(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	n := startNode(t, Config{Name: "g1", MeterProvider: mp, NoSync: true})
	publishN(t, n, "order.created", 0, 5)

	deadline := time.Now().Add(20 * time.Second)
	for {
		got := collectGauges(t, reader)
		msgs, bytes := got[metricStreamMessages], got[metricStreamBytes]
		pending, ack := got[metricConsumerPending], got[metricConsumerAckPending]
		ok := len(msgs) == 1 && msgs[0].value == 5 && len(bytes) == 1 && bytes[0].value > 0 &&
			len(pending) == 1 && pending[0].value == 0 && len(ack) == 1 && ack[0].value == 0
		if ok {
			if s := attr(msgs[0].attrs, "stream_name"); s != wire.StreamName(n.cfg.Prefix) {
				t.Errorf("stream_name = %q, want %q", s, wire.StreamName(n.cfg.Prefix))
			}
			if c := attr(pending[0].attrs, "consumer_name"); c != "node-g1" {
				t.Errorf("consumer_name = %q, want node-g1", c)
			}
			if nd := attr(pending[0].attrs, "signalbus.node"); nd != "g1" {
				t.Errorf("signalbus.node = %q, want g1", nd)
			}
			routes, slow := got[metricRoutes], got[metricSlowConsumers]
			if len(routes) != 1 || routes[0].value != 0 || len(slow) != 1 || slow[0].value != 0 {
				t.Errorf("routes %v, slow consumers %v: want one 0 each (standalone server)", routes, slow)
			} else if id := attr(routes[0].attrs, "server_id"); id != n.server.Raw().ID() {
				t.Errorf("server_id = %q, want %q", id, n.server.Raw().ID())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gauges never showed 5 stored, all delivered and acknowledged: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNATSGaugesRoutes: routed embedded servers count their routes; a fast
// node has no stream or consumer gauges.
func TestNATSGaugesRoutes(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	first := startNode(t, Config{Name: "r0", Mode: Fast, ClusterListen: "127.0.0.1:0", MeterProvider: mp})
	startNode(t, Config{Name: "r1", Mode: Fast, ClusterListen: "127.0.0.1:0", Routes: []string{first.server.ClusterURL()}})
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := collectGauges(t, reader)
		for _, name := range []string{metricStreamMessages, metricStreamBytes, metricConsumerPending, metricConsumerAckPending} {
			if len(got[name]) != 0 {
				t.Fatalf("fast node exports %s: %v", name, got[name])
			}
		}
		if r := got[metricRoutes]; len(r) == 1 && r[0].value >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("routes never counted: %v", got[metricRoutes])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNATSGaugesAfterClose: a closed node's callback is unregistered, so
// it reports nothing rather than stale values.
func TestNATSGaugesAfterClose(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	n := startNode(t, Config{Name: "c1", Mode: Fast, MeterProvider: mp})
	if got := collectGauges(t, reader); len(got[metricRoutes]) != 1 {
		t.Fatalf("routes gauge before Close: %v", got[metricRoutes])
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := collectGauges(t, reader); len(got[metricRoutes]) != 0 {
		t.Fatalf("routes gauge after Close: %v", got[metricRoutes])
	}
}

func TestNATSGaugesClaimOnlyThisNodesConsumers(t *testing.T) {
	g := &natsGauges{n: &Node{cfg: Config{Name: "n1"}, dur: &durable{own: &pipe{consumer: "node-n1"}}}}
	members := []Member{{Name: "n1"}, {Name: "n1-b"}, {Name: "n2"}}
	for consumer, want := range map[string]bool{
		"node-n1": true, "node-n2": false, "group-billing": true,
		"sub-n1-audit": true, "sub-n2-audit": false, "sub-n1-b-audit": false,
	} {
		if got := g.mine(consumer, members); got != want {
			t.Errorf("mine(%q) = %v, want %v", consumer, got, want)
		}
	}
}
