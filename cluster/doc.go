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
// node, with gaps in a publisher's sequence counted as lost.
//
// # Status
//
// Not built yet: consumer groups (bus.WithGroup), named durable
// subscriptions that resume on their own, the reorder buffer that restores
// a publisher's order after publish retries, the outbox (PublishAsync),
// configurable publish batching, and the tests under injected faults
// (restart, isolation, flapping) on a three-node R3 cluster.
package cluster
