package chaos

import (
	"context"
	"errors"
	"io"
	"time"
)

// Cluster is a running cluster of signalbus nodes that faults can be
// injected into. Nodes are named; every method naming a node returns an
// error wrapping ErrUnknownNode for a name not in Nodes. Faults compose:
// a partition over a slow link keeps both until Heal. Heal undoes every
// network fault (partitions, isolations, bridges, slow links, black
// holes); it does not resume paused or restart killed nodes.
//
// The methods are safe for concurrent use. A method that cannot inject
// its fault returns an error and leaves the cluster as it was as far as
// it can; the caller then heals and stops.
type Cluster interface {
	// Nodes returns the node names, in a fixed order.
	Nodes() []string

	// Kill stops node at once (SIGKILL for a process; for an embedded
	// node, its server and connections are dropped without a drain).
	Kill(ctx context.Context, node string) error
	// Restart starts a killed node again on its own data: same name,
	// same store. Restarting a running node kills it first.
	Restart(ctx context.Context, node string) error
	// Pause freezes node: its process stops running and its sockets stay
	// open, so its peers see timeouts, not closed connections.
	Pause(ctx context.Context, node string) error
	// Resume lets a paused node run again.
	Resume(ctx context.Context, node string) error

	// Partition cuts the cluster links between nodes of different
	// groups; a node in no group is cut from all. Packets are dropped,
	// not refused, so peers see timeouts.
	Partition(ctx context.Context, groups ...[]string) error
	// Isolate cuts node from every other node.
	Isolate(ctx context.Context, node string) error
	// Bridge cuts a from b; both still reach bridge (Jepsen's bridge).
	Bridge(ctx context.Context, a, bridge, b string) error
	// Heal undoes every network fault.
	Heal(ctx context.Context) error

	// Slow adds latency to the cluster link between from and to.
	Slow(ctx context.Context, from, to string, latency time.Duration) error
	// BlackHole drops everything on the cluster link from and to
	// without closing it.
	BlackHole(ctx context.Context, from, to string) error

	// ClientURL is the NATS client URL of node, reachable from the
	// caller's process. It may change after a Restart.
	ClientURL(node string) string
	// HTTPURL is the base URL of node's HTTP listener (/metrics,
	// /readyz), reachable from the caller's process. It may change after
	// a Restart.
	HTTPURL(node string) string
}

// Recorder is the part of a backend that hands back what a node's
// workload recorded (see the loadtest package): its file, which survives
// a kill, read even while the node is killed or paused.
type Recorder interface {
	// Record returns node's workload record as written so far.
	Record(ctx context.Context, node string) (io.ReadCloser, error)
}

// Errors a Cluster's methods wrap.
var (
	// ErrUnknownNode: a node name not in Nodes.
	ErrUnknownNode = errors.New("chaos: unknown node")
	// ErrBadFault: a fault that does not make sense (a node partitioned
	// from itself, a bridge whose ends are the same node, a negative
	// latency).
	ErrBadFault = errors.New("chaos: bad fault")
)
