package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/signalbus/signalbus/bus"
)

// ErrOutboxFull is returned by PublishAsync when the outbox has no room for
// the batch; none of the batch was taken.
var ErrOutboxFull = errors.New("cluster outbox full")

type asyncKey struct{}

// PublishAsync publishes like Bus().Publish, except that it does not wait
// for the cluster: the signals are validated, filled and traced, then
// queued in the node's bounded outbox, which sends them in order as soon
// as the cluster is reachable (stored by the stream in durable mode),
// retrying for as long as it takes. It returns ErrOutboxFull, taking none
// of the batch, when the outbox (Config.OutboxSize) has no room. A
// synchronous Publish on the node waits for the outbox to drain first, so
// one publisher's order holds across both. The outbox lives in memory:
// Close drains it within its ctx and reports what it could not send.
func (n *Node) PublishAsync(ctx context.Context, signals ...bus.Signal) error {
	return n.bus.Publish(context.WithValue(ctx, asyncKey{}, true), signals...)
}

// outbox is the node's queue of signals accepted by PublishAsync and not
// yet sent. A single goroutine sends from its head, in order.
type outbox struct {
	n     *Node
	send  func(context.Context, []bus.Signal) error
	limit int

	mu    sync.Mutex
	items []bus.Signal
	empty chan struct{} // closed while the outbox is empty
	wake  chan struct{}

	gaugeReg metric.Registration
	stop     chan struct{}
	done     chan struct{}
}

func newOutbox(n *Node, send func(context.Context, []bus.Signal) error, meter metric.Meter) (*outbox, error) {
	o := &outbox{n: n, send: send, limit: n.cfg.OutboxSize, empty: make(chan struct{}),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	close(o.empty)
	depth, err := meter.Int64ObservableGauge("signalbus.outbox.depth", metric.WithUnit("{message}"),
		metric.WithDescription("Signals accepted by PublishAsync and not yet sent to the cluster."))
	if err != nil {
		return nil, err
	}
	node := metric.WithAttributes(attribute.String("signalbus.node", n.cfg.Name))
	o.gaugeReg, err = meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		obs.ObserveInt64(depth, int64(o.depth()), node)
		return nil
	}, depth)
	if err != nil {
		return nil, err
	}
	go o.run()
	return o, nil
}

// Send is the node's transport: asynchronous publishes go to the outbox,
// synchronous ones wait for it to be empty, then go out directly.
func (o *outbox) Send(ctx context.Context, signals []bus.Signal) error {
	if async, _ := ctx.Value(asyncKey{}).(bool); async {
		return o.put(signals)
	}
	if err := o.waitEmpty(ctx); err != nil {
		return fmt.Errorf("%w: outbox not drained: %w", ErrUnavailable, err)
	}
	return o.send(ctx, signals)
}

func (o *outbox) put(signals []bus.Signal) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items)+len(signals) > o.limit {
		return fmt.Errorf("%w: %d queued, %d more do not fit in %d", ErrOutboxFull, len(o.items), len(signals), o.limit)
	}
	if len(o.items) == 0 {
		o.empty = make(chan struct{})
	}
	o.items = append(o.items, signals...)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

func (o *outbox) depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items)
}

func (o *outbox) waitEmpty(ctx context.Context) error {
	o.mu.Lock()
	empty := o.empty
	o.mu.Unlock()
	select {
	case <-empty:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run sends the head of the outbox until it is stored, then the next.
func (o *outbox) run() {
	defer close(o.done)
	wait := 50 * time.Millisecond
	// size is the batch sent at once: pipelined while sends succeed, one
	// at a time after a failure, until one succeeds, so that nothing is
	// stored out of order while the cluster comes back.
	size := outboxBatch
	for {
		o.mu.Lock()
		batch := o.items[:min(len(o.items), size):min(len(o.items), size)]
		o.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-o.stop:
				return
			case <-o.wake:
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := o.send(ctx, batch)
		cancel()
		if err != nil {
			o.n.logger.Debug("outbox: cluster unreachable; will retry", "queued", o.depth(), "error", err, "wait", wait)
			select {
			case <-o.stop:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
			size = 1
			continue
		}
		wait, size = 50*time.Millisecond, outboxBatch
		o.mu.Lock()
		o.items = o.items[len(batch):]
		if len(o.items) == 0 {
			o.items = nil
			close(o.empty)
		}
		o.mu.Unlock()
	}
}

// outboxBatch is how many signals the outbox sends at once.
const outboxBatch = 256

// close waits, within ctx, for the outbox to drain, then stops its
// goroutine; what was still queued is reported in the error.
func (o *outbox) close(ctx context.Context) error {
	err := o.waitEmpty(ctx)
	close(o.stop)
	<-o.done
	_ = o.gaugeReg.Unregister()
	if err != nil {
		left := o.depth()
		o.n.logger.Error("closing with signals still in the outbox; they were not sent", "count", left)
		return fmt.Errorf("outbox: %d signals not sent: %w", left, err)
	}
	return nil
}
