package dashboards

// The metric names below are the ones telemetry/catalog lists; a test checks
// every name in every expression against that table and against a live node.

func ptr(v float64) *float64 { return &v }

var zero = ptr(0)

// The label sets series are grouped by.
const (
	byBus  = "signalbus_bus"
	byNode = "signalbus_node"
	bySub  = "signalbus_bus, messaging_destination_subscription_name"
)

// Frequently used expressions.
var (
	published      = rate("messaging_client_sent_messages_total", sel(busNode), byBus)
	consumed       = rate("messaging_client_consumed_messages_total", sel(busNode), byBus)
	consumedPerSub = rate("messaging_client_consumed_messages_total", sel(busNode), bySub)
	deadLettered   = orZero(rate("signalbus_deadletter_messages_total", sel(busNode), byBus), consumed)
	dropped        = orZero(rate("signalbus_dispatch_dropped_total", sel(busNode), byBus), consumed)
	// errorRatio is the share of consumed signals that were dead-lettered
	// or dropped instead of handled.
	errorRatio = grouped{"(" + deadLettered.expr + " + on (" + byBus + ") " + dropped.expr + ") / " + consumed.expr, byBus}
	// consumedByNode is consumed relabelled from signalbus_bus to
	// signalbus_node, to compare with the cluster's own counters.
	consumedByNode = grouped{`sum by (signalbus_node) (label_replace(` + consumed.expr + `, "signalbus_node", "$1", "signalbus_bus", "(.*)"))`, byNode}
	dedupHits      = orZero(rate("signalbus_dedup_hits_total", sel(nodeNode), byNode), consumedByNode)
	outboxDepth    = gauge("sum", "signalbus_outbox_depth", sel(nodeNode), byNode)
	partitioned    = gauge("max", "signalbus_cluster_partitioned", sel(nodeNode), byNode)
)

// errorRatioPanel is the error ratio in the kind and place p gives.
func errorRatioPanel(p panel) panel {
	p.title, p.unit, p.desc = "Error ratio", "percentunit", "Dead-lettered or dropped signals per signal consumed."
	p.q = []query{errorRatio.query()}
	return p
}

// runtimePanel shows a process-level expression of each node, from 0.
func runtimePanel(title, unit, desc, expr string, w uint32) panel {
	return panel{title: title, unit: unit, min: zero, w: w, desc: desc,
		q: []query{{runtime(expr), legend("service_instance_id")}}}
}

func boards() []board {
	return []board{overview(), publish(), delivery(), dedupOrdering(), batchingOutbox(), clusterBoard(), jetStream(), runtimeBoard()}
}

func overview() board {
	return board{
		uid: "signalbus-overview", title: "signalbus / Overview", file: "overview.json",
		desc: "One screen: nodes up, traffic, errors, latency, outbox, partitions.",
		rows: []row{
			{title: "Health", panels: []panel{
				{title: "Members up", kind: statPanel, unit: "none", w: 6, h: 5,
					desc: "Members each node sees up, itself included.",
					q:    []query{gauge("max", "signalbus_cluster_members", sel(nodeNode, `state="up"`), byNode).query()}},
				{title: "Partitioned", kind: statPanel, unit: "bool_yes_no", w: 6, h: 5,
					desc: "1 while a node sees itself in a minority partition.",
					q:    []query{partitioned.query()}},
				{title: "Outbox depth", kind: statPanel, unit: "short", w: 6, h: 5,
					desc: "Signals accepted into the outbox and not yet stored by JetStream.",
					q:    []query{outboxDepth.query()}},
				errorRatioPanel(panel{kind: statPanel, w: 6, h: 5}),
			}},
			{title: "Traffic", panels: []panel{
				{title: "Publish rate", unit: "mps", min: zero, q: []query{published.query()}},
				{title: "Delivery rate", unit: "mps", min: zero, q: []query{consumed.query()}},
				{title: "p99 publish latency", unit: "s", min: zero,
					desc: "Publish call duration, 99th percentile.",
					q:    []query{quantile(0.99, "messaging_client_operation_duration_seconds", sel(busNode), byBus).query()}},
				{title: "p99 delivery latency", unit: "s", min: zero,
					desc: "Signal time to handler start, 99th percentile.",
					q:    []query{quantile(0.99, "signalbus_delivery_latency_seconds", sel(busNode), byBus).query()}},
				errorRatioPanel(panel{min: zero, w: 24}),
			}},
		},
	}
}

func publish() board {
	const duration = "messaging_client_operation_duration_seconds"
	byType := "signalbus_bus, messaging_destination_name"
	return board{
		uid: "signalbus-publish", title: "signalbus / Publish", file: "publish.json", tags: []string{"red"},
		desc: "Publish RED: rate by type, duration percentiles.",
		rows: []row{
			{title: "Rate", panels: []panel{
				{title: "Published by node", unit: "mps", min: zero, stack: true, q: []query{published.query()}},
				{title: "Published by type", unit: "mps", min: zero, q: []query{rate("messaging_client_sent_messages_total", sel(busNode), byType).query()}},
			}},
			{title: "Duration", panels: []panel{
				{title: "Publish duration percentiles", unit: "s", min: zero, q: percentiles(duration, sel(busNode), byBus, 0.5, 0.9, 0.99)},
				{title: "p99 publish duration by type", unit: "s", min: zero, q: []query{quantile(0.99, duration, sel(busNode), byType).query()}},
				{title: "Mean publish duration", unit: "s", min: zero, w: 24, q: []query{mean(duration, sel(busNode), byBus).query()}},
			}},
		},
	}
}

func delivery() board {
	return board{
		uid: "signalbus-delivery", title: "signalbus / Delivery and subscriptions", file: "delivery.json", tags: []string{"red"},
		desc: "Delivery RED per subscription, queue depth, retries, dead letters.",
		rows: []row{
			{title: "Rate and errors", panels: []panel{
				{title: "Delivered by subscription", unit: "mps", min: zero, q: []query{consumedPerSub.query()}},
				errorRatioPanel(panel{min: zero}),
				{title: "Retries", unit: "cps", min: zero, desc: "Handler attempts retried after a failure; zero until the first retry.",
					q: []query{orZero(rate("signalbus_dispatch_retries_total", sel(busNode), bySub), consumedPerSub).query()}},
				{title: "Dead letters", unit: "mps", min: zero, desc: "Signals parked after their last attempt failed; zero until the first.",
					q: []query{orZero(rate("signalbus_deadletter_messages_total", sel(busNode), bySub), consumedPerSub).query()}},
				{title: "Dropped by reason", unit: "mps", min: zero, w: 24, desc: "Signals not delivered: queue_full (its queue was full, under drop_oldest or reject), shutdown (still queued when the bus closed); zero until the first.",
					q: []query{orZero(rate("signalbus_dispatch_dropped_total", sel(busNode), bySub+", reason"), consumedPerSub).query()}},
			}},
			{title: "Duration and queue", panels: []panel{
				{title: "p99 handler duration", unit: "s", min: zero, q: []query{quantile(0.99, "messaging_process_duration_seconds", sel(busNode), bySub).query()}},
				{title: "Delivery latency percentiles", unit: "s", min: zero, desc: "Signal time to handler start.",
					q: percentiles("signalbus_delivery_latency_seconds", sel(busNode), byBus, 0.5, 0.99)},
				{title: "Queue depth", unit: "short", min: zero, w: 24, desc: "Signals waiting in each subscription's queue.",
					q: []query{gauge("sum", "signalbus_subscription_queue_depth", sel(busNode), bySub).query()}},
			}},
		},
	}
}

func dedupOrdering() board {
	const held = "signalbus_order_held_total"
	return board{
		uid: "signalbus-dedup-ordering", title: "signalbus / Dedup and ordering", file: "dedup-ordering.json",
		desc: "Duplicates suppressed by the consumer's dedup window and signals held back to restore per-publisher order.",
		rows: []row{
			{title: "Dedup", panels: []panel{
				{title: "Dedup hits", unit: "mps", min: zero, desc: "Duplicates suppressed; zero until the first.",
					q: []query{dedupHits.query()}},
				{title: "Duplicates per signal consumed", unit: "percentunit", min: zero,
					q: []query{{dedupHits.expr + " / on (" + byNode + ") " + consumedByNode.expr, legend(byNode)}}},
			}},
			{title: "Ordering", panels: []panel{
				{title: "Held to restore order", unit: "mps", min: zero, desc: "Signals held back until an earlier one from the same publisher arrived; zero until the first.",
					q: []query{orZero(rate(held, sel(nodeNode), byNode), consumedByNode).query()}},
				{title: "Held, total over range", unit: "short", min: zero,
					q: []query{orZero(increase(held, sel(nodeNode), "$__range", byNode), consumedByNode).query()}},
			}},
		},
	}
}

func batchingOutbox() board {
	const size = "signalbus_batch_size"
	by := "signalbus_node, messaging_operation_type"
	return board{
		uid: "signalbus-batching-outbox", title: "signalbus / Batching and outbox", file: "batching-outbox.json",
		desc: "Batch sizes sent and received over NATS, and the outbox that holds signals until JetStream stores them.",
		rows: []row{
			{title: "Batching", panels: []panel{
				{title: "Batch size percentiles", unit: "short", min: zero, q: percentiles(size, sel(nodeNode), by, 0.5, 0.99)},
				{title: "Mean batch size", unit: "short", min: zero, q: []query{mean(size, sel(nodeNode), by).query()}},
				{title: "Batches per second", unit: "ops", min: zero, w: 24, q: []query{rate(size+"_count", sel(nodeNode), by).query()}},
			}},
			{title: "Outbox", panels: []panel{
				{title: "Outbox depth", unit: "short", min: zero, q: []query{outboxDepth.query()}},
				{title: "Outbox growth", unit: "mps", desc: "Change of the outbox depth per second: positive while it fills.",
					q: []query{{`sum by (signalbus_node) (deriv(signalbus_outbox_depth` + sel(nodeNode) + `[5m]))`, legend(byNode)}}},
			}},
		},
	}
}

func clusterBoard() board {
	return board{
		uid: "signalbus-cluster", title: "signalbus / Cluster", file: "cluster.json",
		desc: "Membership as each node sees it, transitions, and the partition timeline.",
		rows: []row{
			{title: "Membership", panels: []panel{
				{title: "Members by state", unit: "none", min: zero,
					q: []query{gauge("sum", "signalbus_cluster_members", sel(nodeNode), "signalbus_node, state").query()}},
				{title: "Transitions", unit: "short", min: zero, desc: "node_up, node_down, partition and heal events over each rate window; zero until the first.",
					q: []query{orZero(increase("signalbus_cluster_transitions_total", sel(nodeNode), "$__rate_interval", "signalbus_node, event"),
						gauge("sum", "signalbus_cluster_partitioned", sel(nodeNode), byNode)).query()}},
			}},
			{title: "Partitions", panels: []panel{
				{title: "Partition timeline", kind: stateTimeline, unit: "none", w: 24, h: 6,
					states: map[string]stateText{"0": {"connected", "green"}, "1": {"partitioned", "red"}},
					q:      []query{partitioned.query()}},
			}},
		},
	}
}

func jetStream() board {
	byStream := "signalbus_node, stream_name"
	byConsumer := "signalbus_node, consumer_name"
	return board{
		uid: "signalbus-jetstream", title: "signalbus / JetStream", file: "jetstream.json",
		desc: "The durable stream and each node's consumers, as the embedded NATS server reports them (prometheus-nats-exporter names).",
		rows: []row{
			{title: "Stream", panels: []panel{
				{title: "Stream messages", unit: "short", min: zero, q: []query{gauge("max", "jetstream_stream_total_messages", sel(nodeNode), byStream).query()}},
				{title: "Stream bytes", unit: "bytes", min: zero, q: []query{gauge("max", "jetstream_stream_total_bytes", sel(nodeNode), byStream).query()}},
			}},
			{title: "Consumers", panels: []panel{
				{title: "Consumer lag (pending)", unit: "short", min: zero, desc: "Messages in the stream the consumer has not been delivered yet.",
					q: []query{gauge("sum", "jetstream_consumer_num_pending", sel(nodeNode), byConsumer).query()}},
				{title: "Ack pending", unit: "short", min: zero, desc: "Delivered and not acknowledged yet.",
					q: []query{gauge("sum", "jetstream_consumer_num_ack_pending", sel(nodeNode), byConsumer).query()}},
			}},
			{title: "NATS server", panels: []panel{
				{title: "Routes", unit: "short", min: zero, desc: "Routes of each node's embedded nats-server to its peers (embedded NATS only).",
					q: []query{gauge("max", "gnatsd_varz_routes", sel(nodeNode), byNode).query()}},
				{title: "Slow consumers", unit: "short", min: zero, desc: "Slow consumers each embedded nats-server has seen since it started.",
					q: []query{gauge("max", "gnatsd_varz_slow_consumers", sel(nodeNode), byNode).query()}},
			}},
		},
	}
}

func runtimeBoard() board {
	return board{
		uid: "signalbus-runtime", title: "signalbus / Runtime", file: "runtime.json",
		desc: "CPU, memory, goroutines, scheduling and GC of each node process.",
		rows: []row{
			{title: "Process", panels: []panel{
				runtimePanel("CPU", "percentunit", "CPU seconds per second (1 = one core).", `rate(process_cpu_seconds_total[$__rate_interval])`, 0),
				runtimePanel("Resident memory", "bytes", "", `process_resident_memory_bytes`, 0),
			}},
			{title: "Go memory", panels: []panel{
				{title: "Memory used by the Go runtime", unit: "bytes", min: zero, stack: true,
					desc: "Memory the Go runtime uses, by node and kind (stack: goroutine stacks; other: the rest). No two series overlap, so the top of the stack is the total of the nodes shown.",
					q:    []query{{runtime(`go_memory_used_bytes`), legend("service_instance_id, go_memory_type")}}},
				runtimePanel("Heap goal", "bytes", "", `go_memory_gc_goal_bytes`, 0),
				runtimePanel("Allocation rate", "Bps", "", `rate(go_memory_allocated_bytes_total[$__rate_interval])`, 24),
			}},
			{title: "Goroutines and GC", panels: []panel{
				runtimePanel("Goroutines", "short", "", `go_goroutine_count`, 8),
				runtimePanel("p99 scheduling latency", "s", "Time runnable goroutines waited for a thread.",
					`histogram_quantile(0.99, sum by (job, instance, le) (rate(go_schedule_duration_seconds_bucket[$__rate_interval])))`, 8),
				runtimePanel("GC cycles", "ops", "", `rate(go_gc_duration_seconds_count[$__rate_interval])`, 8),
				runtimePanel("GC pause, max", "s", "Longest stop-the-world pause of recent cycles (the largest quantile of the pause summary).",
					`max by (job, instance) (go_gc_duration_seconds)`, 24),
			}},
		},
	}
}
