package catalog

import "sort"

// Metric is one metric family as a node exports it.
type Metric struct {
	// Instrument is the OpenTelemetry instrument name; "" for a metric a
	// Prometheus collector writes directly.
	Instrument string
	// Prometheus is the family name as scraped. For a histogram it is the
	// base name, without _bucket, _sum or _count.
	Prometheus string
	// Type is the Prometheus type as exposed: "counter", "gauge" or
	// "histogram".
	Type string
	// Unit is the OTel unit ("s", "By", "{message}"); "" when none.
	Unit string
	// Labels are the label names every series of the family carries,
	// sorted; a histogram's le is not listed.
	Labels []string
	// Help is the description the node exports.
	Help string
}

// Types of Metric.Type.
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
)

// Label names that several families share.
const (
	// LabelBus is the node name on the bus's metrics (the bus is named
	// after its node).
	LabelBus = "signalbus_bus"
	// LabelNode is the node name on the cluster's and NATS metrics.
	LabelNode = "signalbus_node"
	// LabelType is the signal type on publish metrics.
	LabelType = "messaging_destination_name"
	// LabelSubscription is the subscription name on delivery metrics.
	LabelSubscription = "messaging_destination_subscription_name"
	// LabelSystem is always "signalbus".
	LabelSystem = "messaging_system"
	// LabelStream and LabelConsumer name a JetStream stream and consumer,
	// as prometheus-nats-exporter does.
	LabelStream   = "stream_name"
	LabelConsumer = "consumer_name"
	// LabelServerID is the embedded nats-server's id.
	LabelServerID = "server_id"
)

var (
	pubLabels    = []string{LabelType, LabelSystem, LabelBus}
	subLabels    = []string{LabelSubscription, LabelSystem, LabelBus}
	streamLabels = []string{LabelNode, LabelStream}
)

// Metrics lists every metric family a node exports from its bus, its
// cluster node and its NATS connection, plus target_info. The runtime and
// process families are in Runtime.
var Metrics = []Metric{
	{"messaging.client.sent.messages", "messaging_client_sent_messages_total", Counter, "{message}", pubLabels,
		"Signals accepted by Publish and routed to subscriptions."},
	{"messaging.client.consumed.messages", "messaging_client_consumed_messages_total", Counter, "{message}", subLabels,
		"Signals taken from a subscription queue for delivery to its handler."},
	{"messaging.client.operation.duration", "messaging_client_operation_duration_seconds", Histogram, "s", pubLabels,
		"Duration of Publish calls, validation and routing included."},
	{"messaging.process.duration", "messaging_process_duration_seconds", Histogram, "s", subLabels,
		"Duration of one handler run (one attempt)."},
	{"signalbus.delivery.latency", "signalbus_delivery_latency_seconds", Histogram, "s", subLabels,
		"Time from the signal's time attribute to the start of its first handler run."},
	{"signalbus.dispatch.retries", "signalbus_dispatch_retries_total", Counter, "{attempt}", subLabels,
		"Handler attempts made after a failed one."},
	{"signalbus.deadletter.messages", "signalbus_deadletter_messages_total", Counter, "{message}", subLabels,
		"Signals whose handler failed every attempt, handed to the dead-letter handler."},
	{"signalbus.dispatch.dropped", "signalbus_dispatch_dropped_total", Counter, "{message}",
		[]string{LabelSubscription, LabelSystem, "reason", LabelBus},
		"Signals not delivered to a subscription, by reason."},
	{"signalbus.subscription.queue.depth", "signalbus_subscription_queue_depth", Gauge, "{message}", subLabels,
		"Signals waiting in a subscription's queue."},
	{"signalbus.dedup.hits", "signalbus_dedup_hits_total", Counter, "{message}", []string{LabelSystem, LabelNode},
		"Duplicate signals (an id already handed to the handlers) suppressed by this node."},
	{"signalbus.order.held", "signalbus_order_held_total", Counter, "{message}", []string{LabelSystem, LabelNode},
		"Signals held back to restore their publisher's order."},
	{"signalbus.outbox.depth", "signalbus_outbox_depth", Gauge, "{message}", []string{LabelNode},
		"Signals accepted by PublishAsync and not yet sent to the cluster."},
	{"signalbus.batch.size", "signalbus_batch_size", Histogram, "{message}",
		[]string{"messaging_operation_type", LabelSystem, LabelNode},
		"Signals per batch a node sent (messaging.operation.type=send) or received (receive)."},
	{"signalbus.cluster.members", "signalbus_cluster_members", Gauge, "{node}", []string{LabelNode, "state"},
		"Nodes this node has seen, by state (up, down), itself included."},
	{"signalbus.cluster.partitioned", "signalbus_cluster_partitioned", Gauge, "", []string{LabelNode},
		"1 while fewer than a majority of the expected nodes are reachable from this node, else 0."},
	{"signalbus.cluster.transitions", "signalbus_cluster_transitions_total", Counter, "{event}", []string{"event", LabelNode},
		"Membership transitions this node observed: node_up, node_down, partition, heal."},

	// NATS, under prometheus-nats-exporter's names so that NATS
	// dashboards read them too.
	{"jetstream_stream_total_messages", "jetstream_stream_total_messages", Gauge, "{message}", streamLabels,
		"Messages stored in the node's JetStream stream."},
	{"jetstream_stream_total_bytes", "jetstream_stream_total_bytes", Gauge, "By", streamLabels,
		"Bytes stored in the node's JetStream stream."},
	{"jetstream_consumer_num_pending", "jetstream_consumer_num_pending", Gauge, "{message}",
		[]string{LabelConsumer, LabelNode, LabelStream},
		"Messages of the stream not yet delivered to one of this node's consumers."},
	{"jetstream_consumer_num_ack_pending", "jetstream_consumer_num_ack_pending", Gauge, "{message}",
		[]string{LabelConsumer, LabelNode, LabelStream},
		"Messages delivered to one of this node's consumers and not yet acknowledged."},
	{"gnatsd_varz_routes", "gnatsd_varz_routes", Gauge, "{route}", []string{LabelServerID, LabelNode},
		"Routes of the node's embedded nats-server to its peers."},
	{"gnatsd_varz_slow_consumers", "gnatsd_varz_slow_consumers", Gauge, "{connection}", []string{LabelServerID, LabelNode},
		"Slow consumers the node's embedded nats-server has seen since it started."},

	{"", "target_info", Gauge, "",
		[]string{"service_instance_id", "service_name", "service_version",
			"telemetry_sdk_language", "telemetry_sdk_name", "telemetry_sdk_version"},
		"Target metadata"},
}

// Runtime lists the Go runtime and process families a node exports, for
// dashboards; their label sets are empty.
var Runtime = []Metric{}

// Embedded reports whether m exists only on a node that runs an embedded
// nats-server (the varz gauges): a node on an external NATS URL reads
// only the stream and consumer state, over the JetStream API.
func Embedded(m Metric) bool {
	return m.Prometheus == "gnatsd_varz_routes" || m.Prometheus == "gnatsd_varz_slow_consumers"
}

// Durable reports whether m exists only in durable mode.
func Durable(m Metric) bool {
	switch m.Prometheus {
	case "signalbus_dedup_hits_total", "signalbus_order_held_total", "jetstream_stream_total_messages",
		"jetstream_stream_total_bytes", "jetstream_consumer_num_pending", "jetstream_consumer_num_ack_pending":
		return true
	}
	return false
}

var index = func() map[string]Metric {
	m := make(map[string]Metric)
	for _, list := range [][]Metric{Metrics, Runtime} {
		for _, x := range list {
			m[x.Prometheus] = x
		}
	}
	return m
}()

// Lookup returns the metric scraped as prometheusName (a histogram by its
// base name).
func Lookup(prometheusName string) (Metric, bool) {
	m, ok := index[prometheusName]
	return m, ok
}

func init() {
	for _, list := range [][]Metric{Metrics, Runtime} {
		for _, m := range list {
			if !sort.StringsAreSorted(m.Labels) {
				panic("catalog: labels of " + m.Prometheus + " are not sorted")
			}
		}
	}
}
