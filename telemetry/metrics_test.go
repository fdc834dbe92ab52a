package telemetry

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/telemetry/catalog"
)

// needsFault are the catalog families that only a fault makes appear (a
// redelivery after a lost ack, a gap in a publisher's sequence); the
// cluster tests cover them, and the scrape test checks them only if seen.
var needsFault = map[string]bool{"signalbus_dedup_hits_total": true, "signalbus_order_held_total": true}

// traffic drives every instrument the scrape test expects on node n: a
// handler that succeeds, one that always fails (retries, dead letters),
// and one whose full queue drops its oldest signal. It publishes count
// signals inside a sampled root span and returns its trace id once every
// signal reached the first two handlers; release unblocks the third.
func traffic(t *testing.T, p *Providers, n *cluster.Node, count int) (traceID string) {
	t.Helper()
	var ok, dead atomic.Int64
	b := n.Bus()
	mustSub := func(pattern string, h bus.HandlerFunc, opts ...bus.SubscribeOption) {
		if _, err := b.Subscribe(pattern, h, opts...); err != nil {
			t.Fatal(err)
		}
	}
	mustSub("order.*", func(context.Context, bus.Signal) error { ok.Add(1); return nil })
	mustSub("order.*", func(context.Context, bus.Signal) error { return errors.New("refused") },
		bus.WithSubscriptionName("refuser"),
		bus.WithRetry(bus.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Multiplier: 1}),
		bus.WithDeadLetter(bus.HandlerFunc(func(context.Context, bus.Signal) error { dead.Add(1); return nil })))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	mustSub("order.*", func(ctx context.Context, _ bus.Signal) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, bus.WithSubscriptionName("stuck"), bus.WithQueueSize(1), bus.WithOverflow(bus.DropOldest))

	ctx, span := p.TracerProvider.Tracer("test").Start(context.Background(), "orders")
	for i := range count {
		sig, err := bus.NewSignal("order.created", "/test", map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, sig); err != nil {
			t.Fatalf("Publish #%d: %v", i, err)
		}
	}
	span.End()
	deadline := time.Now().Add(30 * time.Second)
	for ok.Load() < int64(count) || dead.Load() < int64(count) {
		if time.Now().After(deadline) {
			t.Fatalf("handled %d, dead-lettered %d of %d", ok.Load(), dead.Load(), count)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return span.SpanContext().TraceID().String()
}

// scrape GETs /metrics in the Prometheus text format and parses it.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := get(t, "http://"+s.Addr()+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.ResponseFormat(resp.Header))
	got := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			if err.Error() == "EOF" {
				return got
			}
			t.Fatalf("parse /metrics: %v", err)
		}
		got[mf.GetName()] = &mf
	}
}

// seriesLabelNames returns the sorted label names of one series.
func seriesLabelNames(m *dto.Metric) []string {
	var names []string
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
	}
	sort.Strings(names)
	return names
}

// upperBounds returns a histogram series' finite bucket boundaries.
func upperBounds(m *dto.Metric) []float64 {
	var bounds []float64
	for _, b := range m.GetHistogram().GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) {
			bounds = append(bounds, b.GetUpperBound())
		}
	}
	return bounds
}

// wantBuckets are the explicit boundaries of the histograms a node's own
// instruments record: durations on bus.LatencyBuckets (the SDK's default
// boundaries are shaped for milliseconds), batch sizes in powers of two.
var wantBuckets = map[string][]float64{
	"messaging_client_operation_duration_seconds": bus.LatencyBuckets,
	"messaging_process_duration_seconds":          bus.LatencyBuckets,
	"signalbus_delivery_latency_seconds":          bus.LatencyBuckets,
	"signalbus_batch_size":                        {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096},
}

var promTypes = map[dto.MetricType]string{
	dto.MetricType_COUNTER: catalog.Counter, dto.MetricType_GAUGE: catalog.Gauge,
	dto.MetricType_HISTOGRAM: catalog.Histogram, dto.MetricType_SUMMARY: catalog.Summary,
}

// TestScrapeMatchesCatalog: a live durable node's /metrics has every
// family of the catalog, with its type, help and label set, and no family
// the catalog does not list; OpenMetrics names each unit the name implies.
func TestScrapeMatchesCatalog(t *testing.T) {
	pa, pb := newProviders(t, Config{InstanceID: "a"}), newProviders(t, Config{InstanceID: "b"})
	a, _ := startPair(t, pa, pb)
	srv := serve(t, ServerConfig{Gatherer: pa.Registry})
	traffic(t, pa, a, 5)

	var got map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = scrape(t, srv)
		var missing []string
		for _, list := range [][]catalog.Metric{catalog.Metrics, catalog.Runtime} {
			for _, m := range list {
				if got[m.Prometheus] == nil && !needsFault[m.Prometheus] {
					missing = append(missing, m.Prometheus)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("families never scraped: %v", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, list := range [][]catalog.Metric{catalog.Metrics, catalog.Runtime} {
		for _, m := range list {
			mf := got[m.Prometheus]
			if mf == nil {
				continue
			}
			if typ := promTypes[mf.GetType()]; typ != m.Type {
				t.Errorf("%s: type %s, catalog says %s", m.Prometheus, typ, m.Type)
			}
			if mf.GetHelp() != m.Help {
				t.Errorf("%s: help %q, catalog says %q", m.Prometheus, mf.GetHelp(), m.Help)
			}
			want := m.Labels
			if want == nil {
				want = []string{}
			}
			// Every series carries the catalog's label set, not only
			// the family as a whole: a dashboard's by (...) reads each.
			for _, series := range mf.GetMetric() {
				if labels := seriesLabelNames(series); strings.Join(labels, ",") != strings.Join(want, ",") {
					t.Errorf("%s: a series with labels %v, catalog says %v", m.Prometheus, labels, want)
				}
				if buckets, ok := wantBuckets[m.Prometheus]; ok {
					if got := upperBounds(series); !slices.Equal(got, buckets) {
						t.Errorf("%s: bucket boundaries %v, want %v", m.Prometheus, got, buckets)
					}
				}
			}
		}
	}
	for name := range wantBuckets {
		if got[name] == nil {
			t.Errorf("histogram %s was not scraped: its buckets are unchecked", name)
		}
	}
	for name := range got {
		if _, ok := catalog.Lookup(name); !ok {
			t.Errorf("scraped family %s is not in the catalog", name)
		}
	}

	// Units: the exporter writes no UNIT metadata, so the unit lives in
	// the name alone: "s" and "By" as a suffix, units in braces dropped.
	for _, m := range catalog.Metrics {
		if m.Instrument == "" {
			continue
		}
		base := strings.TrimSuffix(m.Prometheus, "_total")
		suffix := map[string]string{"s": "_seconds", "By": "_bytes"}[m.Unit]
		if suffix != "" && !strings.HasSuffix(base, suffix) {
			t.Errorf("%s: unit %s, yet no %s suffix", m.Prometheus, m.Unit, suffix)
		}
		if suffix == "" && (strings.HasSuffix(base, "_seconds") || strings.HasSuffix(base, "_ratio")) {
			t.Errorf("%s: unit %q, yet a unit suffix", m.Prometheus, m.Unit)
		}
	}
	// The OpenMetrics scrape has every family too (exemplars are only
	// there).
	_, om := get(t, "http://"+srv.Addr()+"/metrics", "Accept", "application/openmetrics-text; version=1.0.0")
	for name := range got {
		base := strings.TrimSuffix(name, "_total")
		if !bytes.Contains(om, []byte("# TYPE "+base+" ")) {
			t.Errorf("OpenMetrics scrape has no family %s", base)
		}
	}
}

// TestExemplarsCarryTraceIDs: a publish inside a sampled span leaves an
// exemplar with its trace id on the publish duration histogram, and the
// OpenMetrics scrape shows it.
func TestExemplarsCarryTraceIDs(t *testing.T) {
	p := newProviders(t, Config{InstanceID: "x"})
	n := startNode(t, withProviders(cluster.Config{Name: "x"}, p))
	srv := serve(t, ServerConfig{Gatherer: p.Registry})
	traceID := traffic(t, p, n, 3)

	mfs, err := p.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "messaging_client_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				for _, l := range b.GetExemplar().GetLabel() {
					if l.GetName() == "trace_id" && l.GetValue() == traceID {
						found = true
					}
				}
			}
		}
	}
	if !found {
		t.Errorf("no bucket of messaging_client_operation_duration_seconds has an exemplar with trace_id %s", traceID)
	}
	resp, om := get(t, "http://"+srv.Addr()+"/metrics", "Accept", "application/openmetrics-text; version=1.0.0")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q: OpenMetrics not negotiated", ct)
	}
	if !bytes.Contains(om, []byte(`trace_id="`+traceID+`"`)) {
		t.Errorf("OpenMetrics scrape has no exemplar with trace_id %s", traceID)
	}
}
