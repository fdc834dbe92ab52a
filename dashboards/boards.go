package dashboards

// The metric names below are the ones telemetry/catalog lists; a test checks
// every name in every expression against that table and against a live node.

func ptr(v float64) *float64 { return &v }

var zero = ptr(0)

// Frequently used expressions.
var (
	published      = rate("messaging_client_sent_messages_total", sel(busNode), "signalbus_bus")
	consumed       = rate("messaging_client_consumed_messages_total", sel(busNode), "signalbus_bus")
	consumedPerSub = rate("messaging_client_consumed_messages_total", sel(busNode), "signalbus_bus, messaging_destination_subscription_name")
	deadLettered   = orZero(rate("signalbus_deadletter_messages_total", sel(busNode), "signalbus_bus"), consumed)
	dropped        = orZero(rate("signalbus_dispatch_dropped_total", sel(busNode), "signalbus_bus"), consumed)
	// errorRatio is the share of consumed signals that were dead-lettered
	// or dropped instead of handled.
	errorRatio = "(" + deadLettered + " + on (signalbus_bus) " + dropped + ") / " + consumed
	// consumedByNode is consumed relabelled from signalbus_bus to
	// signalbus_node, to compare with the cluster's own counters.
	consumedByNode = `sum by (signalbus_node) (label_replace(` + consumed + `, "signalbus_node", "$1", "signalbus_bus", "(.*)"))`
)

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
					q:    []query{{`max by (signalbus_node) (signalbus_cluster_members` + sel(nodeNode, `state="up"`) + `)`, "{{signalbus_node}}"}}},
				{title: "Partitioned", kind: statPanel, unit: "bool_yes_no", w: 6, h: 5,
					desc: "1 while a node sees itself in a minority partition.",
					q:    []query{{`max by (signalbus_node) (signalbus_cluster_partitioned` + sel(nodeNode) + `)`, "{{signalbus_node}}"}}},
				{title: "Outbox depth", kind: statPanel, unit: "short", w: 6, h: 5,
					desc: "Signals accepted into the outbox and not yet stored by JetStream.",
					q:    []query{{`sum by (signalbus_node) (signalbus_outbox_depth` + sel(nodeNode) + `)`, "{{signalbus_node}}"}}},
				{title: "Error ratio", kind: statPanel, unit: "percentunit", w: 6, h: 5,
					desc: "Dead-lettered or dropped signals per signal consumed.",
					q:    []query{{errorRatio, "{{signalbus_bus}}"}}},
			}},
			{title: "Traffic", panels: []panel{
				{title: "Publish rate", unit: "mps", min: zero, q: []query{{published, "{{signalbus_bus}}"}}},
				{title: "Delivery rate", unit: "mps", min: zero, q: []query{{consumed, "{{signalbus_bus}}"}}},
				{title: "p99 publish latency", unit: "s", min: zero,
					desc: "Publish call duration, 99th percentile.",
					q:    []query{{quantile(0.99, "messaging_client_operation_duration_seconds", sel(busNode), "signalbus_bus"), "{{signalbus_bus}}"}}},
				{title: "p99 delivery latency", unit: "s", min: zero,
					desc: "Signal time to handler start, 99th percentile.",
					q:    []query{{quantile(0.99, "signalbus_delivery_latency_seconds", sel(busNode), "signalbus_bus"), "{{signalbus_bus}}"}}},
				{title: "Error ratio", unit: "percentunit", min: zero, w: 24,
					desc: "Dead-lettered or dropped signals per signal consumed.",
					q:    []query{{errorRatio, "{{signalbus_bus}}"}}},
			}},
		},
	}
}

func publish() board {
	by := "signalbus_bus, messaging_destination_name"
	return board{
		uid: "signalbus-publish", title: "signalbus / Publish", file: "publish.json", tags: []string{"red"},
		desc: "Publish RED: rate by type, duration percentiles.",
		rows: []row{
			{title: "Rate", panels: []panel{
				{title: "Published by node", unit: "mps", min: zero, stack: true, q: []query{{published, "{{signalbus_bus}}"}}},
				{title: "Published by type", unit: "mps", min: zero, q: []query{{rate("messaging_client_sent_messages_total", sel(busNode), by), "{{signalbus_bus}} {{messaging_destination_name}}"}}},
			}},
			{title: "Duration", panels: []panel{
				{title: "Publish duration percentiles", unit: "s", min: zero, q: []query{
					{quantile(0.5, "messaging_client_operation_duration_seconds", sel(busNode), "signalbus_bus"), "p50 {{signalbus_bus}}"},
					{quantile(0.9, "messaging_client_operation_duration_seconds", sel(busNode), "signalbus_bus"), "p90 {{signalbus_bus}}"},
					{quantile(0.99, "messaging_client_operation_duration_seconds", sel(busNode), "signalbus_bus"), "p99 {{signalbus_bus}}"},
				}},
				{title: "p99 publish duration by type", unit: "s", min: zero, q: []query{
					{quantile(0.99, "messaging_client_operation_duration_seconds", sel(busNode), by), "{{signalbus_bus}} {{messaging_destination_name}}"},
				}},
				{title: "Mean publish duration", unit: "s", min: zero, w: 24, q: []query{
					{mean("messaging_client_operation_duration_seconds", sel(busNode), "signalbus_bus"), "{{signalbus_bus}}"},
				}},
			}},
		},
	}
}

func delivery() board {
	sub := "signalbus_bus, messaging_destination_subscription_name"
	legend := "{{signalbus_bus}} {{messaging_destination_subscription_name}}"
	return board{
		uid: "signalbus-delivery", title: "signalbus / Delivery and subscriptions", file: "delivery.json", tags: []string{"red"},
		desc: "Delivery RED per subscription, queue depth, retries, dead letters.",
		rows: []row{
			{title: "Rate and errors", panels: []panel{
				{title: "Delivered by subscription", unit: "mps", min: zero, q: []query{{consumedPerSub, legend}}},
				{title: "Error ratio", unit: "percentunit", min: zero, desc: "Dead-lettered or dropped signals per signal consumed.", q: []query{{errorRatio, "{{signalbus_bus}}"}}},
				{title: "Retries", unit: "cps", min: zero, desc: "Handler attempts retried after a failure; zero until the first retry.",
					q: []query{{orZero(rate("signalbus_dispatch_retries_total", sel(busNode), sub), consumedPerSub), legend}}},
				{title: "Dead letters", unit: "mps", min: zero, desc: "Signals parked after their last attempt failed; zero until the first.",
					q: []query{{orZero(rate("signalbus_deadletter_messages_total", sel(busNode), sub), consumedPerSub), legend}}},
				{title: "Dropped by reason", unit: "mps", min: zero, w: 24, desc: "Signals dropped: queue_full, poison, expired; zero until the first.",
					q: []query{{orZero(rate("signalbus_dispatch_dropped_total", sel(busNode), sub+", reason"), consumedPerSub), legend + " {{reason}}"}}},
			}},
			{title: "Duration and queue", panels: []panel{
				{title: "p99 handler duration", unit: "s", min: zero, q: []query{{quantile(0.99, "messaging_process_duration_seconds", sel(busNode), sub), legend}}},
				{title: "Delivery latency percentiles", unit: "s", min: zero, desc: "Signal time to handler start.", q: []query{
					{quantile(0.5, "signalbus_delivery_latency_seconds", sel(busNode), "signalbus_bus"), "p50 {{signalbus_bus}}"},
					{quantile(0.99, "signalbus_delivery_latency_seconds", sel(busNode), "signalbus_bus"), "p99 {{signalbus_bus}}"},
				}},
				{title: "Queue depth", unit: "short", min: zero, w: 24, desc: "Signals waiting in each subscription's queue.",
					q: []query{{`sum by (` + sub + `) (signalbus_subscription_queue_depth` + sel(busNode) + `)`, legend}}},
			}},
		},
	}
}

func dedupOrdering() board {
	return board{
		uid: "signalbus-dedup-ordering", title: "signalbus / Dedup and ordering", file: "dedup-ordering.json",
		desc: "Duplicates suppressed by the consumer's dedup window and signals held back to restore per-publisher order.",
		rows: []row{
			{title: "Dedup", panels: []panel{
				{title: "Dedup hits", unit: "mps", min: zero, desc: "Duplicates suppressed; zero until the first.",
					q: []query{{orZero(rate("signalbus_dedup_hits_total", sel(nodeNode), "signalbus_node"), consumedByNode), "{{signalbus_node}}"}}},
				{title: "Duplicates per signal consumed", unit: "percentunit", min: zero,
					q: []query{{orZero(rate("signalbus_dedup_hits_total", sel(nodeNode), "signalbus_node"), consumedByNode) + " / on (signalbus_node) " + consumedByNode, "{{signalbus_node}}"}}},
			}},
			{title: "Ordering", panels: []panel{
				{title: "Held to restore order", unit: "mps", min: zero, desc: "Signals held back until an earlier one from the same publisher arrived; zero until the first.",
					q: []query{{orZero(rate("signalbus_order_held_total", sel(nodeNode), "signalbus_node"), consumedByNode), "{{signalbus_node}}"}}},
				{title: "Held, total over range", unit: "short", min: zero,
					q: []query{{orZero(`sum by (signalbus_node) (increase(signalbus_order_held_total`+sel(nodeNode)+`[$__range]))`, consumedByNode), "{{signalbus_node}}"}}},
			}},
		},
	}
}

func batchingOutbox() board {
	return board{
		uid: "signalbus-batching-outbox", title: "signalbus / Batching and outbox", file: "batching-outbox.json",
		desc: "Batch sizes sent and received over NATS, and the outbox that holds signals until JetStream stores them.",
		rows: []row{
			{title: "Batching", panels: []panel{
				{title: "Batch size percentiles", unit: "short", min: zero, q: []query{
					{quantile(0.5, "signalbus_batch_size", sel(nodeNode), "signalbus_node, messaging_operation_type"), "p50 {{signalbus_node}} {{messaging_operation_type}}"},
					{quantile(0.99, "signalbus_batch_size", sel(nodeNode), "signalbus_node, messaging_operation_type"), "p99 {{signalbus_node}} {{messaging_operation_type}}"},
				}},
				{title: "Mean batch size", unit: "short", min: zero, q: []query{
					{mean("signalbus_batch_size", sel(nodeNode), "signalbus_node, messaging_operation_type"), "{{signalbus_node}} {{messaging_operation_type}}"},
				}},
				{title: "Batches per second", unit: "ops", min: zero, w: 24, q: []query{
					{rate("signalbus_batch_size_count", sel(nodeNode), "signalbus_node, messaging_operation_type"), "{{signalbus_node}} {{messaging_operation_type}}"},
				}},
			}},
			{title: "Outbox", panels: []panel{
				{title: "Outbox depth", unit: "short", min: zero, q: []query{{`sum by (signalbus_node) (signalbus_outbox_depth` + sel(nodeNode) + `)`, "{{signalbus_node}}"}}},
				{title: "Outbox growth", unit: "mps", desc: "Change of the outbox depth per second: positive while it fills.",
					q: []query{{`sum by (signalbus_node) (deriv(signalbus_outbox_depth` + sel(nodeNode) + `[5m]))`, "{{signalbus_node}}"}}},
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
				{title: "Members by state", unit: "none", min: zero, q: []query{
					{`sum by (signalbus_node, state) (signalbus_cluster_members` + sel(nodeNode) + `)`, "{{signalbus_node}} {{state}}"},
				}},
				{title: "Transitions", unit: "short", min: zero, desc: "node_up, node_down, partition and heal events over each rate window; zero until the first.",
					q: []query{{orZero(`sum by (signalbus_node, event) (increase(signalbus_cluster_transitions_total`+sel(nodeNode)+rateInterval+`))`,
						`sum by (signalbus_node) (signalbus_cluster_partitioned`+sel(nodeNode)+`)`), "{{signalbus_node}} {{event}}"}}},
			}},
			{title: "Partitions", panels: []panel{
				{title: "Partition timeline", kind: stateTimeline, unit: "none", w: 24, h: 6,
					states: map[string]stateText{"0": {"connected", "green"}, "1": {"partitioned", "red"}},
					q:      []query{{`max by (signalbus_node) (signalbus_cluster_partitioned` + sel(nodeNode) + `)`, "{{signalbus_node}}"}}},
			}},
		},
	}
}

func jetStream() board {
	return board{
		uid: "signalbus-jetstream", title: "signalbus / JetStream", file: "jetstream.json",
		desc: "The durable stream and each node's consumers, as the embedded NATS server reports them (prometheus-nats-exporter names).",
		rows: []row{
			{title: "Stream", panels: []panel{
				{title: "Stream messages", unit: "short", min: zero, q: []query{
					{`max by (signalbus_node, stream_name) (jetstream_stream_total_messages` + sel(nodeNode) + `)`, "{{signalbus_node}} {{stream_name}}"},
				}},
				{title: "Stream bytes", unit: "bytes", min: zero, q: []query{
					{`max by (signalbus_node, stream_name) (jetstream_stream_total_bytes` + sel(nodeNode) + `)`, "{{signalbus_node}} {{stream_name}}"},
				}},
			}},
			{title: "Consumers", panels: []panel{
				{title: "Consumer lag (pending)", unit: "short", min: zero, desc: "Messages in the stream the consumer has not been delivered yet.", q: []query{
					{`sum by (signalbus_node, consumer_name) (jetstream_consumer_num_pending` + sel(nodeNode) + `)`, "{{signalbus_node}} {{consumer_name}}"},
				}},
				{title: "Ack pending", unit: "short", min: zero, desc: "Delivered and not acknowledged yet.", q: []query{
					{`sum by (signalbus_node, consumer_name) (jetstream_consumer_num_ack_pending` + sel(nodeNode) + `)`, "{{signalbus_node}} {{consumer_name}}"},
				}},
			}},
			{title: "NATS server", panels: []panel{
				{title: "Routes", unit: "short", min: zero, desc: "Routes of each node's embedded nats-server to its peers (embedded NATS only).", q: []query{
					{`max by (signalbus_node) (gnatsd_varz_routes` + sel(nodeNode) + `)`, "{{signalbus_node}}"},
				}},
				{title: "Slow consumers", unit: "short", min: zero, desc: "Slow consumers each embedded nats-server has seen since it started.", q: []query{
					{`max by (signalbus_node) (gnatsd_varz_slow_consumers` + sel(nodeNode) + `)`, "{{signalbus_node}}"},
				}},
			}},
		},
	}
}

func runtimeBoard() board {
	inst := "{{service_instance_id}}"
	return board{
		uid: "signalbus-runtime", title: "signalbus / Runtime", file: "runtime.json",
		desc: "CPU, memory, goroutines, scheduling and GC of each node process.",
		rows: []row{
			{title: "Process", panels: []panel{
				{title: "CPU", unit: "percentunit", min: zero, desc: "CPU seconds per second (1 = one core).",
					q: []query{{runtime(`rate(process_cpu_seconds_total[$__rate_interval])`), inst}}},
				{title: "Resident memory", unit: "bytes", min: zero,
					q: []query{{runtime(`process_resident_memory_bytes`), inst}}},
			}},
			{title: "Go memory", panels: []panel{
				{title: "Memory used by the Go runtime", unit: "bytes", min: zero, stack: true,
					q: []query{{runtime(`sum without (go_memory_type) (go_memory_used_bytes)`), inst + " total"},
						{runtime(`go_memory_used_bytes{go_memory_type="stack"}`), inst + " stack"}}},
				{title: "Heap goal", unit: "bytes", min: zero,
					q: []query{{runtime(`go_memory_gc_goal_bytes`), inst}}},
				{title: "Allocation rate", unit: "Bps", min: zero, w: 24,
					q: []query{{runtime(`rate(go_memory_allocated_bytes_total[$__rate_interval])`), inst}}},
			}},
			{title: "Goroutines and GC", panels: []panel{
				{title: "Goroutines", unit: "short", min: zero, w: 8,
					q: []query{{runtime(`go_goroutine_count`), inst}}},
				{title: "p99 scheduling latency", unit: "s", min: zero, w: 8, desc: "Time runnable goroutines waited for a thread.",
					q: []query{{runtime(`histogram_quantile(0.99, sum by (job, instance, le) (rate(go_schedule_duration_seconds_bucket[$__rate_interval])))`), inst}}},
				{title: "GC cycles", unit: "ops", min: zero, w: 8,
					q: []query{{runtime(`rate(go_gc_duration_seconds_count[$__rate_interval])`), inst}}},
				{title: "GC pause, max", unit: "s", min: zero, w: 24, desc: "Longest stop-the-world pause of recent cycles (the largest quantile of the pause summary).",
					q: []query{{runtime(`max by (job, instance) (go_gc_duration_seconds)`), inst}}},
			}},
		},
	}
}
