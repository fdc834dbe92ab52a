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
	order        *reorderer

	// retrySeq keeps the sequence number of a signal whose publish
	// failed, so that the application's retry of the same signal fills
	// its own place in the publisher's sequence rather than leaving a gap.
	retryMu  sync.Mutex
	retrySeq map[string]uint64   // id → sequence number, until stored
	unstored map[uint64]struct{} // sequence numbers sent and not yet stored
	floor    uint64              // scan position of floorLocked
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
	held, err := heldCounter(meter)
	if err != nil {
		return nil, err
	}
	d := &durable{
		retrySeq:     map[string]uint64{},
		unstored:     map[uint64]struct{}{},
		floor:        1,
		dedupCounter: hits,
		dedupOpts: []metric.AddOption{metric.WithAttributes(
			attribute.String("messaging.system", "signalbus"), attribute.String("signalbus.node", n.cfg.Name))},
		n:     n,
		js:    js,
		ready: make(chan struct{}),
		dedup: newDedupWindow(n.cfg.DedupSize),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	nodeAttr := metric.WithAttributes(attribute.String("messaging.system", "signalbus"), attribute.String("signalbus.node", n.cfg.Name))
	d.order = newReorderer(n.cfg.ReorderGap, n.cfg.ReorderLimit, d.dispatch,
		func() {
			n.held.Add(1)
			held.Add(context.Background(), 1, nodeAttr)
		},
		func(key string, from, to uint64) {
			n.skipped.Add(int64(to - from))
			n.logger.Warn("gave up waiting for signals missing from a publisher's sequence; skipped",
				"publisher", key, "from_seq", from, "to_seq", to-1, "gap_timeout", n.cfg.ReorderGap)
		})
	return d, nil
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
		// A delivery lost in transit (its consumer leader moved) comes
		// back after AckWait; the reorder gap timeout is longer, so the
		// redelivery fills its gap before the gap is given up on.
		AckWait:       ackWait,
		MaxAckPending: 8192,
		FilterSubject: cfg.Prefix + ".>",
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	// Short pull expiry and heartbeats: when the consumer's leader moves
	// (a server dies or is cut off) the pending pull requests die with it,
	// and the client notices the silence after a missed heartbeat, not
	// after the default 30 s expiry.
	cc, err := consumer.Consume(d.receive, jetstream.PullMaxMessages(1024),
		jetstream.PullExpiry(3*time.Second), jetstream.PullHeartbeat(time.Second),
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
		seq, floor := d.sequenceFor(s.ID)
		n.stamp(msg, seq)
		msg.Header["ce-"+ExtensionFloor] = []string{strconv.FormatUint(floor, 10)}
		// No retries inside nats.go: it retries a "no responders" publish
		// after a wait while the later ones go ahead, storing them out of
		// order. A failure goes back to the caller, whose retry of the
		// same signal keeps its sequence number.
		f, err := d.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
		if err != nil {
			return fmt.Errorf("%w: publish %s: %w", ErrUnavailable, s.ID, err)
		}
		futures = append(futures, f)
	}
	var errs []error
	for i, f := range futures {
		select {
		case <-f.Ok():
			d.stored(signals[i].ID)
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

// sequenceFor returns the sequence number of the signal id — the one it
// had if an earlier publish of it failed, else the next — and the floor:
// the lowest sequence number not yet stored. Every number below the floor
// is in the stream, so a node that first hears of this publisher through
// this signal knows which earlier ones to wait for.
func (d *durable) sequenceFor(id string) (seq, floor uint64) {
	d.retryMu.Lock()
	defer d.retryMu.Unlock()
	seq, ok := d.retrySeq[id]
	if !ok {
		seq = d.n.seq.Add(1)
		if len(d.retrySeq) < maxRetrySeq {
			// Remembered until stored. An id never retried stays until
			// the map is full; new ids are then not remembered (their
			// retries take new numbers and leave a gap the reorderer
			// skips).
			d.retrySeq[id] = seq
			d.unstored[seq] = struct{}{}
		}
	}
	return seq, d.floorLocked()
}

// floorLocked is the lowest unstored sequence number (the next one when
// all are stored). The caller holds retryMu.
func (d *durable) floorLocked() uint64 {
	next := d.n.seq.Load() + 1
	for d.floor < next {
		if _, ok := d.unstored[d.floor]; ok {
			return d.floor
		}
		d.floor++
	}
	return next
}

// stored forgets the sequence number of a signal the stream acknowledged.
func (d *durable) stored(id string) {
	d.retryMu.Lock()
	if seq, ok := d.retrySeq[id]; ok {
		delete(d.unstored, seq)
	}
	delete(d.retrySeq, id)
	d.retryMu.Unlock()
}

// ackWait is the consumer's redelivery delay; Config.ReorderGap defaults
// to twice it.
const ackWait = 5 * time.Second

// maxRetrySeq bounds the remembered sequence numbers of unacknowledged
// publishes.
const maxRetrySeq = 100_000

// receive takes one stored signal from the consumer: an id already handed
// to the handlers (a redelivery, or a re-publish under another message id)
// is acknowledged and dropped; a signal a node published goes through the
// reorderer; anything else is dispatched as it comes.
func (d *durable) receive(m jetstream.Msg) {
	msg := &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
	sig, err := wire.Decode(msg)
	if err != nil {
		d.n.park(msg, err)
		_ = m.Term() // never redeliver what cannot be decoded
		return
	}
	if d.dedup.contains(sig.ID) {
		d.n.dedupHits.Add(1)
		d.dedupCounter.Add(context.Background(), 1, d.dedupOpts...)
		_ = m.Ack()
		return
	}
	if key, seq, ok := orderKey(sig); ok {
		d.order.add(key, seq, pending{sig: sig, msg: m})
		return
	}
	d.dispatch(pending{sig: sig, msg: m})
}

// dispatch queues p for the local subscriptions, then acknowledges it.
func (d *durable) dispatch(p pending) {
	if err := d.n.bus.Dispatch(d.n.ctx, p.sig); err != nil {
		if errors.Is(err, bus.ErrClosed) || d.n.ctx.Err() != nil {
			_ = p.msg.Nak() // this node is closing; take it up after restart
			return
		}
		d.n.logger.Error("dispatch failed", "signal_id", p.sig.ID, "type", p.sig.Type, "error", err)
	}
	d.dedup.add(p.sig.ID)
	_ = p.msg.Ack()
}

// close stops consuming, letting the messages in hand finish.
func (d *durable) close(ctx context.Context) error {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
	defer d.order.close()
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

// contains reports whether id was handed to the handlers recently.
func (w *dedupWindow) contains(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.ids[id]
	return ok
}

// add records id, forgetting the oldest once the window is full.
func (w *dedupWindow) add(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.ids[id]; ok {
		return
	}
	if old := w.ring[w.next]; old != "" {
		delete(w.ids, old)
	}
	w.ring[w.next] = id
	w.next = (w.next + 1) % len(w.ring)
	w.ids[id] = struct{}{}
}
