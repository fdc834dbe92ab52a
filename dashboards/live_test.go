package dashboards_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/telemetry"
)

// eventOnly are the counters a node exports only once their event has
// happened, which one quiet node cannot make happen on its own: a duplicate
// delivery, a reorder, a membership transition. The live test reports them
// when absent instead of failing; the catalog test still checks their names,
// and the dashboards read them as 0 until they exist.
var eventOnly = map[string]bool{
	"signalbus_dedup_hits_total":          true,
	"signalbus_order_held_total":          true,
	"signalbus_cluster_transitions_total": true,
}

// dashboardMetrics is every metric name the dashboards' expressions select.
func dashboardMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for _, q := range targets(t) {
		e, err := parse(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for _, name := range metricNames(t, e) {
			if l := used[name]; len(l) == 0 || l[len(l)-1] != q.String() {
				used[name] = append(l, q.String())
			}
		}
	}
	return used
}

// TestLiveNodeExportsDashboardMetrics starts a durable node with the
// telemetry SDK, makes it publish, deliver, retry, dead-letter and drop,
// and checks that its /metrics has every metric the dashboards use.
func TestLiveNodeExportsDashboardMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	p, err := telemetry.New(ctx, telemetry.Config{InstanceID: "live1", SampleRatio: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	node, err := cluster.Start(ctx, cluster.Config{
		Name: "live1", Listen: "127.0.0.1:0", DataDir: t.TempDir(), ExpectedSize: 1,
		MeterProvider: p.MeterProvider, TracerProvider: p.TracerProvider,
		BusOptions: []bus.Option{bus.WithMeterProvider(p.MeterProvider), bus.WithTracerProvider(p.TracerProvider)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close(context.Background())
	srv, err := telemetry.Serve(telemetry.ServerConfig{Addr: "127.0.0.1:0", Gatherer: p.Registry})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())

	b := node.Bus()
	failing := errors.New("poison")
	if _, err := b.Subscribe("order.**", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if s.Type == "order.poison" {
			return failing
		}
		return nil
	}), bus.WithSubscriptionName("orders"),
		bus.WithRetry(bus.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Multiplier: 1})); err != nil {
		t.Fatal(err)
	}
	// A subscription whose handler is held while its one-signal queue
	// overflows: DropOldest counts the drops.
	started, release := make(chan struct{}, 1), make(chan struct{})
	if _, err := b.Subscribe("order.created", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return nil
	}), bus.WithSubscriptionName("slow"), bus.WithQueueSize(1), bus.WithOverflow(bus.DropOldest)); err != nil {
		t.Fatal(err)
	}
	defer close(release)

	publish := func(typ string, n int) {
		for range n {
			s, err := bus.NewSignal(typ, "/dashboards/live", map[string]int{"n": n})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, s); err != nil {
				t.Fatalf("publish %s: %v", typ, err)
			}
		}
	}
	publish("order.created", 1)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the slow handler never started")
	}
	publish("order.created", 10)
	publish("order.poison", 1)
	if err := node.PublishAsync(ctx, mustSignal(t, "order.created")); err != nil {
		t.Fatal(err)
	}

	used := dashboardMetrics(t)
	var missing []string
	deadline := time.After(20 * time.Second)
	for {
		names, err := scrapeNames(ctx, "http://"+srv.Addr()+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		missing = missing[:0]
		for name := range used {
			if !names[name] {
				missing = append(missing, name)
			}
		}
		if allEventOnly(missing) {
			break
		}
		select {
		case <-deadline:
			sort.Strings(missing)
			for _, name := range missing {
				if !eventOnly[name] {
					t.Errorf("the live node does not export %s, used by %v", name, used[name])
				}
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	sort.Strings(missing)
	for _, name := range missing {
		t.Logf("%s not exported yet: it counts an event this test does not cause", name)
	}
	t.Logf("%d metric names checked on a live node", len(used)-len(missing))
}

func allEventOnly(names []string) bool {
	for _, n := range names {
		if !eventOnly[n] {
			return false
		}
	}
	return true
}

func mustSignal(t *testing.T, typ string) bus.Signal {
	t.Helper()
	s, err := bus.NewSignal(typ, "/dashboards/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scrapeNames reads the sample names of a Prometheus text exposition.
func scrapeNames(ctx context.Context, url string) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("scrape " + url + ": " + resp.Status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, sc.Err()
}
