package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// durable is the JetStream side of a node in durable mode: one stream over
// <prefix>.>, publishes acknowledged by it, and one durable consumer per
// node that feeds the node's bus.
//
// Start does not wait for JetStream (in a cluster its meta leader may be
// elected only once enough servers are up): setup runs in the background,
// retrying until the stream and the consumer exist. Until then a durable
// Publish waits within its ctx and then fails with ErrUnavailable.
type durable struct {
	n     *Node
	js    jetstream.JetStream
	ready chan struct{} // closed once the stream and consumer exist
	cc    jetstream.ConsumeContext
	dedup *dedupWindow

	stop chan struct{}
	done chan struct{}

	dedupCounter metric.Int64Counter
	dedupOpts    []metric.AddOption
}

// streamName is the stream of a prefix: JetStream names cannot hold dots.
func streamName(prefix string) string {
	name := make([]byte, 0, len(prefix))
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if c == '.' {
			c = '_'
		}
		name = append(name, c)
	}
	return "SIGNALBUS_" + string(name)
}

func newDurable(n *Node, meter metric.Meter) (*durable, error) {
	js, err := jetstream.New(n.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	hits, err := meter.Int64Counter("signalbus.dedup.hits", metric.WithUnit("{message}"),
		metric.WithDescription("Duplicate signals (an id already handed to the handlers) suppressed by this node."))
	if err != nil {
		return nil, err
	}
	return &durable{
		dedupCounter: hits,
		dedupOpts: []metric.AddOption{metric.WithAttributes(
			attribute.String("messaging.system", "signalbus"), attribute.String("signalbus.node", n.cfg.Name))},
		n:     n,
		js:    js,
		ready: make(chan struct{}),
		dedup: newDedupWindow(n.cfg.DedupSize),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}, nil
}

// start runs the setup in the background.
func (d *durable) start() { go d.setup() }

func (d *durable) setup() {
	defer close(d.done)
	wait := 50 * time.Millisecond
	for {
		err := d.trySetup()
		if err == nil {
			close(d.ready)
			return
		}
		d.n.logger.Debug("JetStream not ready; retrying", "error", err, "wait", wait)
		select {
		case <-d.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (d *durable) trySetup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg := d.n.cfg
	want := jetstream.StreamConfig{
		Name:       streamName(cfg.Prefix),
		Subjects:   []string{cfg.Prefix + ".>"},
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.DuplicateWindow,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	}
	// Create, never update: every node runs this at start, and nats-server
	// v2.15.2 races a stream update against a concurrent consumer create
	// (filestore UpdateConfig vs ConsumerStore, seen under -race). Creating
	// a stream that exists with the same config is a no-op; one that
	// exists with another config is used as it is, with a warning.
	stream, err := d.js.CreateStream(ctx, want)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		stream, err = d.js.Stream(ctx, want.Name)
		if err == nil {
			d.n.logger.Warn("the stream exists with another configuration; using it as it is",
				"stream", want.Name, "replicas", stream.CachedInfo().Config.Replicas)
		}
	}
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	consumer, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "node-" + cfg.Name,
		// A node that is new to the stream starts from now; one that
		// restarts with the same name resumes after its last ack.
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 8192,
		FilterSubject: cfg.Prefix + ".>",
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	cc, err := consumer.Consume(d.receive, jetstream.PullMaxMessages(1024),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			d.n.logger.Debug("JetStream consume", "error", err)
		}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	d.cc = cc
	return nil
}

// Send stores the batch: every signal is published asynchronously (the
// server keeps one connection's publishes in order), then Send waits for
// every acknowledgement. Publish returns nil only once all are stored.
func (d *durable) Send(ctx context.Context, signals []bus.Signal) error {
	select {
	case <-d.ready:
	case <-ctx.Done():
		return fmt.Errorf("%w: no stream yet: %w", ErrUnavailable, ctx.Err())
	}
	n := d.n
	futures := make([]jetstream.PubAckFuture, 0, len(signals))
	for _, s := range signals {
		msg, err := wire.Encode(s, n.cfg.Prefix)
		if err != nil {
			return fmt.Errorf("encode %s: %w", s.ID, err)
		}
		msg.Header["ce-"+ExtensionNode] = []string{n.cfg.Name}
		msg.Header["ce-"+ExtensionSequence] = []string{strconv.FormatUint(n.seq.Add(1), 10)}
		f, err := d.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("%w: publish %s: %w", ErrUnavailable, s.ID, err)
		}
		futures = append(futures, f)
	}
	var errs []error
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("signal %s: %w", signals[i].ID, err))
		case <-ctx.Done():
			return fmt.Errorf("%w: %d of %d signals not acknowledged: %w", ErrUnavailable, len(futures)-i, len(futures), ctx.Err())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

// receive hands one stored signal to the node's bus, once: a redelivered
// or re-published id within the dedup window is acknowledged and dropped.
// The ack follows the dispatch into the local queues.
func (d *durable) receive(m jetstream.Msg) {
	msg := &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
	sig, err := wire.Decode(msg)
	if err != nil {
		d.n.park(msg, err)
		_ = m.Term() // never redeliver what cannot be decoded
		return
	}
	if d.dedup.seen(sig.ID) {
		d.n.dedupHits.Add(1)
		d.dedupCounter.Add(context.Background(), 1, d.dedupOpts...)
		_ = m.Ack()
		return
	}
	if err := d.n.bus.Dispatch(d.n.ctx, sig); err != nil {
		if errors.Is(err, bus.ErrClosed) || d.n.ctx.Err() != nil {
			d.dedup.forget(sig.ID)
			_ = m.Nak() // this node is closing; take it up after restart
			return
		}
		d.n.logger.Error("dispatch failed", "signal_id", sig.ID, "type", sig.Type, "error", err)
	}
	_ = m.Ack()
}

// close stops consuming, letting the messages in hand finish.
func (d *durable) close(ctx context.Context) error {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
	if d.cc == nil {
		return nil
	}
	d.cc.Drain()
	select {
	case <-d.cc.Closed():
		return nil
	case <-ctx.Done():
		d.cc.Stop()
		return fmt.Errorf("drain consumer: %w", ctx.Err())
	}
}

// dedupWindow remembers the last ids seen, up to a count, so a handler sees
// each id once across redeliveries and re-publishes.
type dedupWindow struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

func newDedupWindow(size int) *dedupWindow {
	return &dedupWindow{ids: make(map[string]struct{}, size), ring: make([]string, size)}
}

// seen records id and reports whether it was already in the window.
func (w *dedupWindow) seen(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.ids[id]; ok {
		return true
	}
	if old := w.ring[w.next]; old != "" {
		delete(w.ids, old)
	}
	w.ring[w.next] = id
	w.next = (w.next + 1) % len(w.ring)
	w.ids[id] = struct{}{}
	return false
}

// forget removes id, for a signal that was not delivered after all.
func (w *dedupWindow) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.ids, id)
}
