package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/signalbus/signalbus/bus"
)

// The bus's instruments and attributes the demo reads (DESIGN.md,
// "Telemetry names").
const (
	metricSent        = "messaging.client.sent.messages"
	metricConsumed    = "messaging.client.consumed.messages"
	metricRetries     = "signalbus.dispatch.retries"
	metricDeadLetters = "signalbus.deadletter.messages"
	metricQueueDepth  = "signalbus.subscription.queue.depth"
	metricLatency     = "signalbus.delivery.latency"

	attrDestination  = attribute.Key("messaging.destination.name")
	attrSubscription = attribute.Key("messaging.destination.subscription.name")
)

// busMetrics is what one Collect of the demo's ManualReader says about the
// bus. Counters and the histogram are cumulative since the bus started.
type busMetrics struct {
	sentByType     map[string]int64 // by messaging.destination.name
	consumedBySub  map[string]int64 // by subscription name
	retries        int64
	deadLetters    int64
	queueMax       int64     // deepest subscription queue at the collection
	latencyBounds  []float64 // delivery latency histogram, all subscriptions
	latencyBuckets []uint64
}

// collectBusMetrics reads the bus's instruments from r.
func collectBusMetrics(ctx context.Context, r sdkmetric.Reader) (busMetrics, error) {
	var rm metricdata.ResourceMetrics
	if err := r.Collect(ctx, &rm); err != nil {
		return busMetrics{}, fmt.Errorf("collect metrics: %w", err)
	}
	m := busMetrics{sentByType: map[string]int64{}, consumedBySub: map[string]int64{}}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != bus.ScopeName {
			continue
		}
		for _, inst := range sm.Metrics {
			switch inst.Name {
			case metricSent:
				sumByAttr(inst.Data, attrDestination, m.sentByType)
			case metricConsumed:
				sumByAttr(inst.Data, attrSubscription, m.consumedBySub)
			case metricRetries:
				m.retries = sumAll(inst.Data)
			case metricDeadLetters:
				m.deadLetters = sumAll(inst.Data)
			case metricQueueDepth:
				if g, ok := inst.Data.(metricdata.Gauge[int64]); ok {
					for _, dp := range g.DataPoints {
						m.queueMax = max(m.queueMax, dp.Value)
					}
				}
			case metricLatency:
				if h, ok := inst.Data.(metricdata.Histogram[float64]); ok {
					for _, dp := range h.DataPoints {
						m.addLatency(dp.Bounds, dp.BucketCounts)
					}
				}
			}
		}
	}
	return m, nil
}

func sumByAttr(data metricdata.Aggregation, key attribute.Key, into map[string]int64) {
	s, ok := data.(metricdata.Sum[int64])
	if !ok {
		return
	}
	for _, dp := range s.DataPoints {
		v, _ := dp.Attributes.Value(key)
		into[v.AsString()] += dp.Value
	}
}

func sumAll(data metricdata.Aggregation) int64 {
	s, ok := data.(metricdata.Sum[int64])
	if !ok {
		return 0
	}
	var n int64
	for _, dp := range s.DataPoints {
		n += dp.Value
	}
	return n
}

// addLatency adds one subscription's buckets to the bus-wide histogram.
// Every subscription records with the same boundaries (bus.LatencyBuckets).
func (m *busMetrics) addLatency(bounds []float64, counts []uint64) {
	if m.latencyBuckets == nil {
		m.latencyBounds = bounds
		m.latencyBuckets = make([]uint64, len(counts))
	}
	if len(counts) != len(m.latencyBuckets) {
		return
	}
	for i, c := range counts {
		m.latencyBuckets[i] += c
	}
}

func (m *busMetrics) published() int64 { return sum(m.sentByType) }
func (m *busMetrics) delivered() int64 { return sum(m.consumedBySub) }

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// latencySince returns the delivery latency buckets recorded since prev was
// collected (all of them when prev has none).
func (m *busMetrics) latencySince(prev *busMetrics) []uint64 {
	if prev == nil || len(prev.latencyBuckets) != len(m.latencyBuckets) {
		return m.latencyBuckets
	}
	d := make([]uint64, len(m.latencyBuckets))
	for i := range d {
		d[i] = m.latencyBuckets[i] - prev.latencyBuckets[i]
	}
	return d
}

// quantile estimates the q-quantile (0 < q ≤ 1) of a histogram from its
// explicit buckets the way Prometheus's histogram_quantile does: find the
// bucket the rank falls in and interpolate linearly inside it, taking 0 as
// the lower edge of the first. counts has one entry per bound plus the
// overflow bucket, whose values are only known to exceed the last bound, so
// a rank there gives the last bound. ok is false for an empty histogram.
func quantile(q float64, bounds []float64, counts []uint64) (v float64, ok bool) {
	if len(bounds) == 0 || len(counts) != len(bounds)+1 {
		return 0, false
	}
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0, false
	}
	rank := q * float64(total)
	var below uint64
	for i, c := range counts {
		if c > 0 && float64(below+c) >= rank {
			if i == len(bounds) {
				return bounds[len(bounds)-1], true
			}
			lo := 0.0
			if i > 0 {
				lo = bounds[i-1]
			}
			return lo + (bounds[i]-lo)*(rank-float64(below))/float64(c), true
		}
		below += c
	}
	return bounds[len(bounds)-1], true
}

// formatSeconds renders a latency in seconds as a short duration: whole
// microseconds below a millisecond, three digits above.
func formatSeconds(s float64, ok bool) string {
	if !ok {
		return "-"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
