// Package containers is the container backend of chaos.Cluster: a cluster
// of signalbus nodes, each in its own Docker container started with
// testcontainers-go, with real kills (SIGKILL), pauses (the cgroup
// freezer) and partitions (iptables DROP rules in the node's network
// namespace).
//
//	c, err := containers.Start(ctx, containers.Spec{Nodes: 3})
//	if err != nil { … }
//	defer c.Close(context.Background())
//	_ = c.Isolate(ctx, "n1")   // n1's peers see its routes go silent
//	_ = c.Heal(ctx)
//	_ = c.WaitReady(ctx)
//
// # Image
//
// The node image is built FROM scratch from a static signalbus binary
// (Spec.Binary, or one built from the module with CGO_ENABLED=0); no
// image is ever pulled. It holds /signalbus and an empty /data, the
// node's store, which a container's writable layer keeps across a kill
// and a start. There is no shell in it: readiness is waited for over
// HTTP.
//
// # Topology
//
// The nodes share a private Docker network and are named n1 … nN, which
// are also their aliases on it. Each serves NATS clients on 4222 and HTTP
// (/metrics, /healthz, /readyz) on 9464, both mapped to free ports on the
// host's 127.0.0.1 (ClientURL, HTTPURL; they change at each start).
//
// Every route between two nodes passes through a fault proxy in this
// process, on the network's gateway address: node i dials node j at
// gateway:P[i][j], which forwards to j's 6222, so Slow can delay a link.
// Every node advertises the route address localhost:1, which nats-server
// never dials (it resolves to itself), so route gossip cannot teach a
// node a direct address that would bypass the proxies; CheckRoutes
// verifies it from the nodes' own TCP tables.
//
// # Faults
//
// A network fault (Partition, Isolate, Bridge, BlackHole) marks links
// down; each running node's namespace then drops, in one iptables chain,
// every packet to and from a cut peer's address and from and to the
// proxy ports of its side of the link. Packets vanish, nothing is
// refused, so peers see timeouts. Heal empties the chain. A restarted
// node gets the rules of the faults in force as soon as its process
// runs; until they are in, the route proxies of its down links drop
// everything, so nothing crosses a cut link meanwhile.
//
// Pause and Resume use the engine's pause (the process is frozen, its
// sockets stay open). Kill sends SIGKILL; Restart starts the same
// container again on its writable layer, so /data survives. A SIGKILL does
// not drop the host's page cache: it cannot show a power loss.
//
// # Clean-up
//
// There is no reaper (its image cannot be pulled here): every container,
// network and image carries the labels LabelRun and LabelOwner, Close
// removes what the cluster made, Start first removes what dead processes
// left (SweepStale), and Sweep removes everything this process made, for a
// signal handler.
package containers
