// Package cluster spans a bus over NATS: every node runs a bus.Bus whose
// Publish reaches the subscriptions of every node.
//
//	node, err := cluster.Start(ctx, cluster.Config{
//		Name:          "node-1",
//		Listen:        "127.0.0.1:4222",
//		ClusterListen: "127.0.0.1:6222",
//		Routes:        []string{"nats://10.0.0.2:6222", "nats://10.0.0.3:6222"},
//	})
//	defer node.Close(ctx)
//	node.Bus().Subscribe("order.*", handler)
//	node.Bus().Publish(ctx, sig)
//
// By default a node runs an embedded nats-server in-process (nothing to
// install); its routes join the embedded servers of the other nodes into
// one NATS cluster. With Config.NATSURL set, the node runs no server and
// connects to an existing NATS deployment, reconnecting forever.
//
// On the wire a signal is a CloudEvent in the NATS protocol binding's
// binary mode, on the subject <prefix>.<type>: any NATS client, or the
// CloudEvents SDKs, can publish into the bus and read from it. A message
// that is not a valid CloudEvent is parked on Config.DeadLetterSubject with
// the reason, counted, and never blocks or crashes the node.
//
// # Modes
//
// Durable mode (the default) stores every signal in one JetStream stream
// over <prefix>.> before Publish returns (Nats-Msg-Id = the signal id, so
// the stream drops a re-published id within Config.DuplicateWindow); each
// node reads it through its own durable consumer, named after the node, so
// a node restarted with the same Name resumes after the last signal it
// took; and a bounded window of recent ids (Config.DedupSize) hands each id
// to the handlers once across redeliveries. The embedded store fsyncs every
// write before acknowledging it unless Config.NoSync is set.
//
// Fast mode sends over core NATS: at-most-once, in order per publishing
// node, with gaps in a publisher's sequence counted as lost. A node's
// signals have a NATS connection of their own that does not echo them
// back: the node decodes a copy of each message its own subscriptions
// want and delivers it itself, as other nodes receive it, dropping and
// counting (Stats.LocalLost) what its subscriptions are too far behind to
// take, as NATS does for a slow node. Every node receives every signal
// subject other nodes send; a message another node stamped, of a type no
// subscription on this node wants (bus.Bus.Wants), goes undecoded, its
// sequence numbers read from its headers or from the ends of its batch
// (Stats.Undecoded), and left for the nodes that want it to check and, if
// invalid, park. Messages from other clients are always decoded, and
// parked when they are not valid.
//
// # Order
//
// Every signal a node publishes carries its node (sbnode), the node's run
// (sbinst) and a per-run sequence number (sbseq). In durable mode a
// signal can reach the stream behind later ones (a publish that failed and
// was retried) or reach a consumer behind later ones (a delivery lost when
// a consumer's leader moved, redelivered after the ack wait); each node
// holds early arrivals back in a bounded reorder buffer until the gap
// fills, or skips the gap after Config.ReorderGap, counting held and
// skipped signals (Node.Stats, signalbus.order.held). A retried publish of
// the same signal keeps its sequence number, and each signal also carries
// its publisher's floor (sbfloor, the lowest number not yet stored), so a
// node hearing of a publisher for the first time knows what is still in
// flight.
//
// # Outbox
//
// Node.PublishAsync accepts signals while the cluster is unreachable into
// a bounded outbox (Config.OutboxSize) that sends them, in order, once it
// is reachable again; a full outbox refuses a batch with ErrOutboxFull.
//
// # Groups and durable subscriptions
//
// A subscription made with bus.WithGroup is a member of a cluster-wide
// group: each signal goes to one member on one node. In durable mode the
// group is one JetStream consumer its members pull from, and a signal is
// acknowledged once its member is done with it, so a member's unfinished
// signals go to another member when its node dies (after the ack wait). In
// fast mode a group is a NATS queue subscription. The members of a group
// share one pattern (ErrGroupConflict otherwise).
//
// In durable mode a subscription named with bus.WithSubscriptionName gets
// a durable consumer of its own, acknowledged after its handler, so that
// after a restart of its node, subscribing again under the same name
// resumes where it stopped: what was published meanwhile, in order, and
// nothing already handled.
//
// # Batching
//
// Every publish on a node joins one queue; one sender takes up to
// Config.BatchSize signals at a time from its head and sends them
// pipelined, waiting up to Config.BatchLinger for a partial batch to fill
// (Close does not wait). The receiving side takes what is waiting, up to
// BatchSize, and dispatches it as one batch. Each batch has a span with
// messaging.batch.message_count and one link per publish in it, and its
// size goes to signalbus.batch.size. On the wire each signal stays its own
// CloudEvents message, unless Config.Encoding is ProtobufBatch: then each
// batch (each run of one type in it) is one message in the CloudEvents
// protobuf batch format, several times faster, at the costs its
// documentation lists (readers must split batches; in durable mode a batch
// is acknowledged and redelivered as a whole).
package cluster
