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
	// "histogram" ("summary" for go_gc_duration_seconds alone).
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
	Summary   = "summary"
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
// the runtime dashboard: the OTel Go runtime instrumentation (memory,
// goroutines, scheduling latency, GC goal), client_golang's process
// collector (CPU, resident memory, file descriptors) and its Go collector
// without the runtime/metrics series the OTel instrumentation already
// exports (GC pauses, threads, go_info). The process network families
// exist on Linux only.
var Runtime = []Metric{
	{"go.config.gogc", "go_config_gogc_percent", Gauge, "%", nil,
		"Heap size target percentage configured by the user, otherwise 100."},
	{"go.goroutine.count", "go_goroutine_count", Gauge, "{goroutine}", nil, "Count of live goroutines."},
	{"go.memory.allocated", "go_memory_allocated_bytes_total", Counter, "By", nil,
		"Memory allocated to the heap by the application."},
	{"go.memory.allocations", "go_memory_allocations_total", Counter, "{allocation}", nil,
		"Count of allocations to the heap by the application."},
	{"go.memory.gc.goal", "go_memory_gc_goal_bytes", Gauge, "By", nil, "Heap size target for the end of the GC cycle."},
	{"go.memory.used", "go_memory_used_bytes", Gauge, "By", []string{"go_memory_type"}, "Memory used by the Go runtime."},
	{"go.processor.limit", "go_processor_limit", Gauge, "{thread}", nil,
		"The number of OS threads that can execute user-level Go code simultaneously."},
	{"go.schedule.duration", "go_schedule_duration_seconds", Histogram, "s", nil,
		"The time goroutines have spent in the scheduler in a runnable state before actually running."},

	{"", "go_gc_duration_seconds", Summary, "", nil,
		"A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles."},
	{"", "go_goroutines", Gauge, "", nil, "Number of goroutines that currently exist."},
	{"", "go_threads", Gauge, "", nil, "Number of OS threads created."},
	{"", "go_info", Gauge, "", []string{"version"}, "Information about the Go environment."},
	{"", "go_memstats_last_gc_time_seconds", Gauge, "", nil, "Number of seconds since 1970 of last garbage collection."},

	{"", "process_cpu_seconds_total", Counter, "", nil, "Total user and system CPU time spent in seconds."},
	{"", "process_resident_memory_bytes", Gauge, "", nil, "Resident memory size in bytes."},
	{"", "process_virtual_memory_bytes", Gauge, "", nil, "Virtual memory size in bytes."},
	{"", "process_virtual_memory_max_bytes", Gauge, "", nil, "Maximum amount of virtual memory available in bytes."},
	{"", "process_open_fds", Gauge, "", nil, "Number of open file descriptors."},
	{"", "process_max_fds", Gauge, "", nil, "Maximum number of open file descriptors."},
	{"", "process_start_time_seconds", Gauge, "", nil, "Start time of the process since unix epoch in seconds."},
	{"", "process_network_receive_bytes_total", Counter, "", nil,
		"Number of bytes received by the process over the network."},
	{"", "process_network_transmit_bytes_total", Counter, "", nil, "Number of bytes sent by the process over the network."},
}

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
