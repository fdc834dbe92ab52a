package cluster

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// NATS gauges, named as prometheus-nats-exporter names them so that
// dashboards made for it read a node's /metrics too. The names carry
// underscores already: the Prometheus exporter keeps them as they are
// (units in braces add no suffix; "By" would add _bytes, which the
// bytes gauge's name already ends in).
const (
	metricStreamMessages     = "jetstream_stream_total_messages"
	metricStreamBytes        = "jetstream_stream_total_bytes"
	metricConsumerPending    = "jetstream_consumer_num_pending"
	metricConsumerAckPending = "jetstream_consumer_num_ack_pending"
	metricRoutes             = "gnatsd_varz_routes"
	metricSlowConsumers      = "gnatsd_varz_slow_consumers"
)

// natsStatsTimeout bounds the JetStream requests one collection makes, so
// that a scrape never waits long on an unreachable cluster.
const natsStatsTimeout = 500 * time.Millisecond

// natsStatsMaxAge is how long a collection is reused: scrapes of several
// readers (or a fast scraper) share one round of requests.
const natsStatsMaxAge = time.Second

type consumerStats struct {
	name                string
	pending, ackPending int64
}

type natsStats struct {
	at              time.Time
	ok              bool // stream info answered
	messages, bytes int64
	consumers       []consumerStats
}

// natsGauges reads the stream's and this node's consumers' state for the
// gauge callback, at most once per natsStatsMaxAge.
type natsGauges struct {
	n       *Node
	refresh sync.Mutex // held while one collection runs; others use the last
	mu      sync.Mutex
	last    natsStats
}

// startNATSMetrics registers the NATS gauges on meter. Stream and
// consumer gauges exist in durable mode; the route and slow consumer
// gauges when the node runs an embedded server (an external server has
// its own monitoring).
func (n *Node) startNATSMetrics(meter metric.Meter) (metric.Registration, error) {
	var insts []metric.Observable
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			n.logger.Warn("cannot create gauge", "metric", name, "error", err)
		}
		insts = append(insts, g)
		return g
	}
	var streamMsgs, streamBytes, pending, ackPending, routes, slow metric.Int64ObservableGauge
	if n.dur != nil {
		streamMsgs = gauge(metricStreamMessages, "{message}", "Messages stored in the node's JetStream stream.")
		streamBytes = gauge(metricStreamBytes, "By", "Bytes stored in the node's JetStream stream.")
		pending = gauge(metricConsumerPending, "{message}",
			"Messages of the stream not yet delivered to one of this node's consumers.")
		ackPending = gauge(metricConsumerAckPending, "{message}",
			"Messages delivered to one of this node's consumers and not yet acknowledged.")
	}
	if n.server != nil {
		routes = gauge(metricRoutes, "{route}", "Routes of the node's embedded nats-server to its peers.")
		slow = gauge(metricSlowConsumers, "{connection}",
			"Slow consumers the node's embedded nats-server has seen since it started.")
	}
	if len(insts) == 0 {
		return nil, nil
	}
	g := &natsGauges{n: n}
	node := attribute.String("signalbus.node", n.cfg.Name)
	stream := attribute.String("stream_name", wire.StreamName(n.cfg.Prefix))
	streamAttrs := metric.WithAttributes(node, stream)
	return meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if n.closing.Load() {
			return nil
		}
		if n.server != nil {
			raw := n.server.Raw()
			attrs := metric.WithAttributes(node, attribute.String("server_id", raw.ID()))
			o.ObserveInt64(routes, int64(raw.NumRoutes()), attrs)
			o.ObserveInt64(slow, raw.NumSlowConsumers(), attrs)
		}
		if n.dur == nil {
			return nil
		}
		st := g.stats(ctx)
		if !st.ok {
			return nil // no value rather than a wrong one
		}
		o.ObserveInt64(streamMsgs, st.messages, streamAttrs)
		o.ObserveInt64(streamBytes, st.bytes, streamAttrs)
		for _, c := range st.consumers {
			attrs := metric.WithAttributes(node, stream, attribute.String("consumer_name", c.name))
			o.ObserveInt64(pending, c.pending, attrs)
			o.ObserveInt64(ackPending, c.ackPending, attrs)
		}
		return nil
	}, insts...)
}

// stats returns a collection at most natsStatsMaxAge old, collecting one
// if none is and no other caller is already collecting.
func (g *natsGauges) stats(ctx context.Context) natsStats {
	g.mu.Lock()
	last := g.last
	g.mu.Unlock()
	if time.Since(last.at) < natsStatsMaxAge || !g.refresh.TryLock() {
		return last
	}
	defer g.refresh.Unlock()
	st := g.collect(ctx)
	g.mu.Lock()
	g.last = st
	g.mu.Unlock()
	return st
}

func (g *natsGauges) collect(ctx context.Context) natsStats {
	st := natsStats{at: time.Now()}
	d := g.n.dur
	select {
	case <-d.ready:
	default:
		return st // the stream is not created yet
	}
	ctx, cancel := context.WithTimeout(ctx, natsStatsTimeout)
	defer cancel()
	info, err := d.stream.Info(ctx)
	if err != nil {
		return st
	}
	st.ok, st.messages, st.bytes = true, int64(info.State.Msgs), int64(info.State.Bytes)
	members := g.n.Members()
	lister := d.stream.ListConsumers(ctx)
	for ci := range lister.Info() {
		if g.mine(ci.Name, members) {
			st.consumers = append(st.consumers, consumerStats{ci.Name, int64(ci.NumPending), int64(ci.NumAckPending)})
		}
	}
	if err := lister.Err(); err != nil {
		// A listing cut short would make consumers' series vanish from a
		// scrape, which reads as lag gone: report the last full list.
		g.mu.Lock()
		st.consumers = g.last.consumers
		g.mu.Unlock()
		g.n.logger.Debug("cannot list the stream's consumers; reporting the last list", "error", err)
	}
	return st
}

// mine reports whether consumer is one this node reads: its own, its
// named durable subscriptions' (sub-<node>-<name>), and the groups'
// (which every member of a group reads, and so reports). A longer member
// name that extends this one with '-' claims its own sub- consumers.
func (g *natsGauges) mine(consumer string, members []Member) bool {
	name := g.n.cfg.Name
	if consumer == g.n.dur.own.consumer || strings.HasPrefix(consumer, "group-") {
		return true
	}
	if !strings.HasPrefix(consumer, "sub-"+name+"-") {
		return false
	}
	for _, m := range members {
		if len(m.Name) > len(name) && strings.HasPrefix(m.Name, name+"-") && strings.HasPrefix(consumer, "sub-"+m.Name+"-") {
			return false
		}
	}
	return true
}
