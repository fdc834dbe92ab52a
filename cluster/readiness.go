package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// Readiness errors, for errors.Is.
var (
	// ErrNotConnected: the node has no NATS connection at the moment.
	ErrNotConnected = errors.New("not connected to NATS")
	// ErrStreamNotReady: the node's JetStream stream does not answer.
	ErrStreamNotReady = errors.New("stream not ready")
	// ErrPartitioned: the node sees fewer than a majority of the cluster.
	ErrPartitioned = errors.New("partitioned")
)

// Readiness check names, the keys of Readiness's map.
const (
	ReadyNATS       = "nats"
	ReadyStream     = "stream"
	ReadyMembership = "membership"
)

// readyStreamTimeout bounds the stream check when ctx has no deadline.
const readyStreamTimeout = 2 * time.Second

// Readiness reports each condition the node needs to serve, keyed by
// name: "nats" (connected to NATS), "stream" (durable mode only: the
// consumers of its named subscriptions and groups are created, and the
// stream answers an info request within ctx) and "membership" (not
// partitioned). A nil value is ready. It is what a load balancer's
// readiness probe asks, so it never blocks beyond ctx (2 s when ctx has
// no deadline).
func (n *Node) Readiness(ctx context.Context) map[string]error {
	checks := map[string]error{ReadyNATS: nil, ReadyMembership: nil}
	if n.closing.Load() {
		checks[ReadyNATS] = fmt.Errorf("%w: the node is closing", ErrNotConnected)
	} else {
		for _, nc := range []*nats.Conn{n.nc, n.sigs} {
			if nc != nil && !nc.IsConnected() {
				checks[ReadyNATS] = fmt.Errorf("%w: connection %s is %s", ErrNotConnected, nc.Opts.Name, nc.Status())
				break
			}
		}
	}
	if n.dur != nil {
		checks[ReadyStream] = n.streamReady(ctx)
	}
	if n.member != nil {
		n.member.mu.Lock()
		partitioned := n.member.partitioned
		up, expected := n.member.reachableLocked()
		n.member.mu.Unlock()
		if partitioned {
			checks[ReadyMembership] = fmt.Errorf("%w: %d of %d nodes reachable", ErrPartitioned, up, expected)
		}
	}
	return checks
}

func (n *Node) streamReady(ctx context.Context) error {
	select {
	case <-n.dur.ready:
	default:
		return fmt.Errorf("%w: stream %s and the node's consumer are not created yet", ErrStreamNotReady, wire.StreamName(n.cfg.Prefix))
	}
	if n := n.dur.setups.pending(); n > 0 {
		// Until their consumers exist, what is published passes them by.
		return fmt.Errorf("%w: the consumers of %d subscriptions are not created yet", ErrStreamNotReady, n)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyStreamTimeout)
		defer cancel()
	}
	if _, err := n.dur.stream.Info(ctx); err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrStreamNotReady, wire.StreamName(n.cfg.Prefix), err)
	}
	return nil
}
