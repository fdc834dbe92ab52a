// Package cluster spans a bus over NATS: every node runs a bus.Bus whose
// Publish reaches the subscriptions of every node.
//
//	node, err := cluster.Start(ctx, cluster.Config{
//		Name:          "node-1",
//		Mode:          cluster.Fast,
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
// # Status
//
// Fast mode (core NATS: at-most-once, in order per publishing node, gaps
// counted) works. Durable mode (JetStream, the default Mode), consumer
// groups, membership and partition detection, the outbox and the reorder
// buffer are not built yet: Start refuses Mode Durable with
// ErrNotImplemented.
package cluster
