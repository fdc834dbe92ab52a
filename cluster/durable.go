package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

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
	n      *Node
	js     jetstream.JetStream
	stream jetstream.Stream // set before ready is closed
	ready  chan struct{}    // closed once the stream and the node's consumer exist
	own    *pipe            // the node's consumer, feeding Dispatch
	// ownStart is the last stream sequence before the node's own consumer
	// starts: it never sees a message up to it, so the other consumers
	// (groups', named subscriptions') park what they refuse of those (see
	// pipe.parks). Unknown (math.MaxUint64) until setup has read it.
	ownStart atomic.Uint64
	parked   *parkedOnce // what the node parked of stored messages (see pipe.parks)

	stop    chan struct{}
	done    chan struct{}
	started bool           // start ran: done will close
	later   sync.WaitGroup // awaitLater's goroutines, which end on stop
	setups  pendingSetups

	dedupCounter metric.Int64Counter
	dedupOpts    []metric.AddOption
	heldCounter  metric.Int64Counter
	nodeAttr     metric.MeasurementOption
	batchSize    metric.Int64Histogram
	receiveAttrs metric.MeasurementOption
	tracer       trace.Tracer
	prop         propagation.TextMapPropagator

	// retrySeq keeps the sequence number of a signal whose publish
	// failed, so that the application's retry of the same signal fills
	// its own place in the publisher's sequence rather than leaving a gap.
	retryMu  sync.Mutex
	retrySeq map[string]uint64   // id → sequence number, until stored
	unstored map[uint64]struct{} // sequence numbers sent and not yet stored
	floor    uint64              // scan position of floorLocked
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
		heldCounter: held,
		nodeAttr:    metric.WithAttributes(attribute.String("messaging.system", "signalbus"), attribute.String("signalbus.node", n.cfg.Name)),
		n:           n,
		js:          js,
		ready:       make(chan struct{}),
		parked:      newParkedOnce(),
		setups:      newPendingSetups(),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if d.batchSize, err = batchSizeHistogram(meter); err != nil {
		return nil, err
	}
	d.receiveAttrs = metric.WithAttributes(attribute.String("messaging.system", "signalbus"),
		attribute.String("signalbus.node", n.cfg.Name), attribute.String("messaging.operation.type", "receive"))
	d.tracer, d.prop = n.cfg.TracerProvider.Tracer(ScopeName), propagation.TraceContext{}
	d.own = d.newPipe("node-"+n.cfg.Name, true, nil, d.dispatchBatch)
	d.own.park = true
	d.ownStart.Store(math.MaxUint64)
	return d, nil
}

// newPipe makes the receiving side of one consumer: ordered restores each
// publisher's order before delivery. Signals go one by one to deliver, or,
// when batch is set, in batches: what is waiting when the pipe gets to it,
// up to Config.BatchSize, goes to batch at once. batch must not keep its
// slice: the pipe fills the same array again.
func (d *durable) newPipe(consumer string, ordered bool, deliver func(pending), batch func([]pending)) *pipe {
	n := d.n
	p := &pipe{d: d, consumer: consumer, dedup: newDedupWindow(n.cfg.DedupSize), deliver: deliver}
	var afterSkip func()
	if batch != nil {
		p.batch, p.deliver, afterSkip = batch, p.collect, p.flush
		p.max = n.cfg.BatchSize
		p.arrivals = make(chan jetstream.Msg, p.max)
		p.stopArrivals = make(chan struct{})
		p.batchDone = make(chan struct{})
		go p.runBatches()
	}
	if ordered {
		p.order = newReorderer(n.cfg.ReorderGap, n.cfg.ReorderLimit, p.deliver, p.deliverLate, afterSkip,
			func() {
				n.held.Add(1)
				d.heldCounter.Add(context.Background(), 1, d.nodeAttr)
			},
			func(key publisherKey, from, to uint64) {
				n.skipped.Add(int64(to - from))
				n.logger.Warn("gave up waiting for signals missing from a publisher's sequence; skipped",
					"consumer", consumer, "publisher", key.String(), "from_seq", from, "to_seq", to-1, "gap_timeout", n.cfg.ReorderGap)
			})
	}
	return p
}

// start runs the setup in the background.
func (d *durable) start() {
	d.started = true
	go d.setup()
}

func (d *durable) setup() {
	defer close(d.done)
	if retryUntil(d.stop, d.n.logger, "JetStream", d.trySetup) {
		close(d.ready)
	}
}

// retryUntil calls try until it succeeds (true) or stop is closed (false),
// backing off from 50 ms to 2 s.
func retryUntil(stop <-chan struct{}, logger *slog.Logger, what string, try func() error) bool {
	wait := 50 * time.Millisecond
	for {
		err := try()
		if err == nil {
			return true
		}
		logger.Debug(what+" not ready; retrying", "error", err, "wait", wait)
		select {
		case <-stop:
			return false
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
		Name:       wire.StreamName(cfg.Prefix),
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
	d.stream = stream
	d.n.streamMaxMsg.Store(int64(stream.CachedInfo().Config.MaxMsgSize))
	ownCfg := jetstream.ConsumerConfig{
		Durable:   d.own.consumer,
		AckPolicy: jetstream.AckExplicitPolicy,
		// A delivery lost in transit (its consumer leader moved) comes
		// back after AckWait; the reorder gap timeout is longer, so the
		// redelivery fills its gap before the gap is given up on.
		AckWait:       ackWait,
		MaxAckPending: 8192,
		FilterSubject: cfg.Prefix + ".>",
		Replicas:      cfg.Replicas,
	}
	if err := d.placeOwnStart(ctx, stream, &ownCfg); err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	consumer, err := stream.CreateOrUpdateConsumer(ctx, ownCfg)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	return d.own.consume(consumer)
}

// placeOwnStart sets where the node's own consumer starts, and records it
// in ownStart. A node new to the stream starts after what is stored now,
// at a sequence number rather than "new", so that the other consumers
// know exactly which messages it will never see; one that restarts with
// the same name keeps its consumer's start and resumes after its last
// ack. No other consumer of the node compares with ownStart before setup
// is done (they consume once the stream is ready), so a retried setup
// reads the start again.
func (d *durable) placeOwnStart(ctx context.Context, stream jetstream.Stream, cfg *jetstream.ConsumerConfig) error {
	existing, err := stream.Consumer(ctx, cfg.Durable)
	switch {
	case err == nil:
		made := existing.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq = made.DeliverPolicy, made.OptStartSeq
		start := uint64(0) // made to start otherwise, where is unknown: the own consumer alone parks
		if made.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && made.OptStartSeq > 0 {
			start = made.OptStartSeq - 1
		}
		d.ownStart.Store(start)
		return nil
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	start := info.State.LastSeq
	d.ownStart.Store(start)
	cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start+1
	return nil
}

// Send stores the batch: every signal is published asynchronously (the
// server keeps one connection's publishes in order), then Send waits for
// every acknowledgement. Publish returns nil only once all are stored.
// It first waits for the stream, and for the consumers of the groups and
// named subscriptions made before it, so that those see what it sends.
func (d *durable) Send(ctx context.Context, signals []bus.Signal) error {
	select {
	case <-d.ready:
	case <-ctx.Done():
		return fmt.Errorf("%w: no stream yet: %w", ErrUnavailable, ctx.Err())
	}
	if err := d.setups.wait(ctx); err != nil {
		return fmt.Errorf("%w: subscriptions' consumers not ready: %w", ErrUnavailable, err)
	}
	n := d.n
	// Each future stands for the signals its message carries.
	futures := make([]pubAck, 0, len(signals))
	// No retries inside nats.go: it retries a "no responders" publish
	// after a wait while the later ones go ahead, storing them out of
	// order. A failure goes back to the caller, whose retry of the same
	// signal keeps its sequence number.
	publish := func(msg *nats.Msg, carried []bus.Signal) error {
		f, err := d.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
		if err != nil {
			return fmt.Errorf("%w: publish %s: %w", ErrUnavailable, carried[0].ID, err)
		}
		futures = append(futures, pubAck{future: f, signals: carried})
		return nil
	}
	err := n.encode(signals, func(i int) (uint64, uint64) { return d.sequenceFor(signals[i].ID) }, nil,
		func(msg *nats.Msg, carried []bus.Signal) error {
			// A binary message carries its signal's id as Nats-Msg-Id; a
			// batch is named by its first and last ids: a retry that
			// repeats the batch is dropped by the stream, and one that
			// carries less (the outbox retries one signal at a time)
			// holds only signals the stored batch has, which the
			// consumers' dedup window drops.
			if _, named := msg.Header[nats.MsgIdHdr]; !named {
				msg.Header[nats.MsgIdHdr] = []string{carried[0].ID + ".." + carried[len(carried)-1].ID}
			}
			return publish(msg, carried)
		})
	// What was published before a failure to publish is waited for too:
	// the caller then knows what it need not send again.
	acked, ackErr := d.await(ctx, futures)
	if errors.Is(ackErr, bus.ErrInvalidSignal) {
		// A signal refused for good, alone: its number is forgotten, so
		// this must not read as a failure to retry.
		return ackErr
	}
	return partlySent(acked, cmp.Or(err, ackErr))
}

// pubAck is the acknowledgement to come of one message and the signals it
// carries.
type pubAck struct {
	future  jetstream.PubAckFuture
	signals []bus.Signal
}

// await waits for the acknowledgements of the messages of one Send, in
// order, and returns how many signals the acknowledged ones before the
// first that was not carry (the caller sends the others again). A signal
// stored forgets its sequence number; one stored behind a failure keeps
// it, for its retry (which the stream or the consumers' dedup window
// drop) to carry the same, or the receivers would wait for a number that
// never comes. The acknowledgements still to come when ctx ends are
// waited for in the background, so that the floor moves past what they
// store.
func (d *durable) await(ctx context.Context, futures []pubAck) (acked int, err error) {
	var errs []error
	for i, f := range futures {
		select {
		case <-f.future.Ok():
			d.acknowledged(f.signals, len(errs) == 0)
			if len(errs) == 0 {
				acked += len(f.signals)
			}
		case err := <-f.future.Err():
			switch refused := refusedForGood(err); {
			case refused && len(f.signals) > 1:
				// A batch over the stream's own size limit, set or
				// lowered since the node read it: read it again, so that
				// batches are packed under it from now on.
				d.readLimits(ctx)
			case refused && len(futures) == 1:
				// The stream will never store this signal: not a failure
				// to retry, so that the outbox gives it up (giveUp; its
				// sequence number is skipped by the receivers after their
				// reorder gap) instead of retrying it for ever at its head,
				// holding every later publish.
				return 0, fmt.Errorf("signal %s: %w: the stream refuses it: %w", f.signals[0].ID, bus.ErrInvalidSignal, err)
			}
			errs = append(errs, fmt.Errorf("signal %s: %w", f.signals[0].ID, err))
		case <-ctx.Done():
			d.awaitLater(futures[i:])
			return acked, fmt.Errorf("%w: %d of %d messages not acknowledged: %w", ErrUnavailable, len(futures)-i, len(futures), ctx.Err())
		}
	}
	if len(errs) > 0 {
		// Retried, one signal at a time after a failure: a refusal for
		// good is then told from the others above.
		return acked, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
	}
	return acked, nil
}

// readLimits reads the stream's message size limit again.
func (d *durable) readLimits(ctx context.Context) {
	info, err := d.stream.Info(ctx)
	if err != nil {
		d.n.logger.Debug("could not read the stream's limits", "error", err)
		return
	}
	d.n.streamMaxMsg.Store(int64(info.Config.MaxMsgSize))
}

// awaitLater waits, on a goroutine that ends with the node, for
// acknowledgements a Send stopped waiting for.
func (d *durable) awaitLater(futures []pubAck) {
	// Copies holding the ids: the caller's signals are the outbox's to use
	// again once Send returns.
	waits := make([]pubAck, len(futures))
	for i, f := range futures {
		waits[i].future = f.future
		for _, s := range f.signals {
			waits[i].signals = append(waits[i].signals, bus.Signal{ID: s.ID})
		}
	}
	d.later.Go(func() {
		for _, w := range waits {
			select {
			case <-w.future.Ok():
				d.acknowledged(w.signals, false)
			case <-w.future.Err():
			case <-d.stop:
				return
			}
		}
	})
}

// refusedForGood reports whether a stream's refusal of a message would
// be the same every time it is sent: a message or its headers over the
// stream's limits (which an operator may set lower than the node's checks
// at Publish know).
func refusedForGood(err error) bool {
	apiErr, ok := errors.AsType[*jetstream.APIError](err)
	return ok && (apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum || apiErr.ErrorCode == errCodeHeaderExceedsMaximum)
}

// errCodeHeaderExceedsMaximum is nats-server's JSStreamHeaderExceedsMaximumErr
// (headers over 64 KiB), which nats.go names no constant for.
const errCodeHeaderExceedsMaximum jetstream.ErrorCode = 10097

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

// acknowledged records signals the stream stored: the floor may move
// past their sequence numbers, which they forget, unless they are to be
// sent again (forget false).
func (d *durable) acknowledged(signals []bus.Signal, forget bool) {
	d.retryMu.Lock()
	defer d.retryMu.Unlock()
	for _, s := range signals {
		if seq, ok := d.retrySeq[s.ID]; ok {
			delete(d.unstored, seq)
		}
		if forget {
			delete(d.retrySeq, s.ID)
		}
	}
}

// giveUp forgets the sequence numbers of signals the outbox gave up for
// good, so that the floor does not stay under them.
func (d *durable) giveUp(signals []bus.Signal) { d.acknowledged(signals, true) }

// ackWait is the consumer's redelivery delay; Config.ReorderGap defaults
// to twice it.
const ackWait = 5 * time.Second

// maxRetrySeq bounds the remembered sequence numbers of unacknowledged
// publishes.
const maxRetrySeq = 100_000

// pipe is the receiving side of one JetStream consumer: it decodes what
// arrives, drops ids already handed on (redeliveries, re-publishes under
// another message id), restores each publisher's order when asked to, and
// hands each signal to deliver, which acknowledges it.
type pipe struct {
	d        *durable
	consumer string
	dedup    *dedupWindow
	order    *reorderer // nil: deliver as received
	deliver  func(pending)
	park     bool // park everything refused (the node's own consumer does; it sees every message but those before ownStart)
	cc       jetstream.ConsumeContext

	// Batching (the node's own consumer): the consumer's callback queues
	// each arrival; runBatches takes what is waiting, and what the
	// reorderer releases is collected, then handed to batch by flush.
	batch        func([]pending)
	max          int
	arrivals     chan jetstream.Msg
	stopArrivals chan struct{}
	batchDone    chan struct{}
	collectMu    sync.Mutex
	collected    []pending
	flushMu      sync.Mutex // one flush at a time, so batches keep their order
	// spare is the array of the batch flushed last, emptied, for collect
	// to fill again: collect and a flush in progress never share one
	// (batch does not keep its slice).
	spare []pending

	// inFlight holds the ids handed on and not yet done with, when
	// deliver acknowledges only after the handler: a redelivery of one of
	// them is left unacknowledged, and the first delivery's ack covers it.
	mu       sync.Mutex
	inFlight map[string]struct{}

	// events is receive's decoding buffer: receive runs on one goroutine
	// at a time (runBatches, or the consumer's callback), and hands each
	// signal on by value.
	events []wire.Event
	stamps wire.Decoder // reads the stamps of events that do not decode
}

// consume starts taking messages from consumer. Short pull expiry and
// heartbeats: when the consumer's leader moves (a server dies or is cut
// off) the pending pull requests die with it, and the client notices the
// silence after a missed heartbeat, not after the default 30 s expiry.
func (p *pipe) consume(consumer jetstream.Consumer) error {
	callback := p.receive
	if p.batch != nil {
		callback = p.arrive
	}
	cc, err := consumer.Consume(callback, jetstream.PullMaxMessages(1024),
		jetstream.PullExpiry(3*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			p.d.n.logger.Debug("JetStream consume", "consumer", p.consumer, "error", err)
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", p.consumer, err)
	}
	p.mu.Lock()
	p.cc = cc
	p.mu.Unlock()
	return nil
}

// receive takes one stored message from the consumer: one signal, or a
// batch of them (Config.Encoding), each settled on its own share of the
// message's acknowledgement.
func (p *pipe) receive(m jetstream.Msg) {
	n := p.d.n
	msg := &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
	if !wire.IsBatch(msg) {
		sig, err := wire.Decode(msg)
		if err != nil {
			if key, seq, ok := binaryStampKey(msg); ok && p.order != nil {
				floor, _ := wire.BinaryAttribute(msg, ExtensionFloor)
				p.order.pass(key, seq, parseFloor(floor, seq))
			}
			p.refuse(msg, m, err)
			return
		}
		p.receiveSignal(sig, m)
		return
	}
	events, err := wire.AppendBatch(p.events[:0], msg.Data)
	if err != nil {
		p.refuse(msg, m, err)
		return
	}
	defer func() {
		clear(events)
		p.events = events[:0]
	}()
	if len(events) == 0 {
		_ = m.Ack() // an empty batch: nothing to deliver
		return
	}
	shared := newBatchAck(m, len(events))
	for i, e := range events {
		if e.Err != nil {
			if key, seq, floor, ok := eventStampKey(&p.stamps, e.Raw); ok && p.order != nil {
				p.order.pass(key, seq, floor)
			}
			if p.parks(m, i, "") {
				n.parkEvent(msg, e)
			}
			_ = shared.share().Term()
			continue
		}
		p.receiveSignal(e.Signal, shared.share())
	}
}

// refuse parks (when this pipe parks it) and terminates a message that
// holds no signal: it would never decode, so it must never come back.
func (p *pipe) refuse(msg *nats.Msg, m jetstream.Msg, err error) {
	if p.parks(m, -1, "") {
		p.d.n.park(msg, err)
	}
	_ = m.Term()
}

// parks reports whether this pipe parks what it refuses of a stored
// message (the whole message when index is -1 and id empty, the event at
// index of a batch, or the decoded signal id): the node parks each message
// it refuses once. Its own consumer, which sees every message stored after
// its start, parks those; another consumer (a group's, a named
// subscription's) parks what was stored before it, such as a group's
// backlog from before this node joined, which overlapping groups may hold
// alike. A redelivery (a batch comes back whole when one of its signals
// asks for it) is not parked again: the node remembers what it parked
// (see parkedOnce). When the message's place cannot be told, it parks: a
// message parked twice rather than one lost.
func (p *pipe) parks(m acker, index int, id string) bool {
	meta, err := m.Metadata()
	if err != nil {
		return true
	}
	seq := meta.Sequence.Stream
	if !p.park && seq > p.d.ownStart.Load() {
		return false
	}
	key := parkKey{seq: seq, index: index}
	if id != "" {
		// A signal is its id wherever it is stored: an outbox retry
		// may have stored it twice, as the pipes' dedup windows know.
		key = parkKey{index: -1, id: id}
	}
	return p.d.parked.first(key)
}

// parkKey names one refused message, or one event of a batch message, by
// its place in the stream; or one refused signal by its id.
type parkKey struct {
	seq   uint64
	index int
	id    string
}

// maxParkedKept bounds parkedOnce: refused messages are rare, and past
// that many the oldest may be parked a second time if redelivered.
const maxParkedKept = 4096

// parkedOnce remembers the stored messages a node parked, the last
// maxParkedKept of them, so that each is parked once however many of the
// node's consumers (or redeliveries) bring it.
type parkedOnce struct {
	mu   sync.Mutex
	keys recentSet[parkKey]
}

func newParkedOnce() *parkedOnce { return &parkedOnce{keys: newRecentSet[parkKey](maxParkedKept)} }

// first records k and reports whether it is new.
func (s *parkedOnce) first(k parkKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys.add(k)
}

// receiveSignal takes one stored signal: an id already handed on is
// acknowledged and dropped; a signal a node published goes through the
// reorderer; anything else is delivered as it comes.
func (p *pipe) receiveSignal(sig bus.Signal, ack acker) {
	if p.duplicate(sig.ID, ack) {
		return
	}
	if p.order != nil {
		if key, seq, ok := orderKey(sig); ok {
			p.order.add(key, seq, pending{sig: sig, msg: ack})
			return
		}
	}
	p.deliver(pending{sig: sig, msg: ack})
}

// duplicate reports whether the signal id was handed on before: one still
// in a handler's queue (the first delivery's ack will cover this one), or
// one done with, whose redelivery it acknowledges and counts. The
// in-flight set is looked at first: a delivery enters the dedup window
// before it leaves that set (attachment.deliver), so one of the two looks
// finds it whenever its handler finishes.
func (p *pipe) duplicate(id string, ack acker) bool {
	if p.handling(id) {
		return true
	}
	if p.dedup.contains(id) {
		p.d.n.dedupHits.Add(1)
		p.d.dedupCounter.Add(context.Background(), 1, p.d.dedupOpts...)
		_ = ack.Ack()
		return true
	}
	return false
}

// deliverLate is the reorderer's late: it checks again, under the
// reorderer's lock, for a signal the timer released (and so delivered)
// after this arrival's own check in receiveSignal.
func (p *pipe) deliverLate(pd pending) {
	if !p.duplicate(pd.sig.ID, pd.msg) {
		p.deliver(pd)
	}
}

// arrive queues one arrival for runBatches.
func (p *pipe) arrive(m jetstream.Msg) {
	select {
	case p.arrivals <- m:
	case <-p.stopArrivals:
		_ = m.Nak() // the pipe is closing; redelivered after restart
	}
}

// runBatches takes each arrival and whatever else is already waiting, up
// to the batch size, through receive, then flushes what that released.
func (p *pipe) runBatches() {
	defer close(p.batchDone)
	for {
		select {
		case m := <-p.arrivals:
			p.receive(m)
		case <-p.stopArrivals:
			for {
				select {
				case m := <-p.arrivals:
					p.receive(m)
				default:
					p.flush()
					return
				}
			}
		}
	more:
		for i := 1; i < p.max; i++ {
			select {
			case m := <-p.arrivals:
				p.receive(m)
			default:
				break more
			}
		}
		p.flush()
	}
}

// collect is deliver when batching. The id is remembered at once, so
// that a redelivery arriving before the flush is recognised.
func (p *pipe) collect(pd pending) {
	p.dedup.add(pd.sig.ID)
	p.collectMu.Lock()
	p.collected = append(p.collected, pd)
	p.collectMu.Unlock()
}

// flush hands everything collected so far to batch, in collection order.
func (p *pipe) flush() {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.collectMu.Lock()
	batch := p.collected
	p.collected = p.spare[:0]
	p.collectMu.Unlock()
	if len(batch) > 0 {
		p.batch(batch)
	}
	clear(batch) // no references to delivered messages kept
	if cap(batch) > 4*p.max {
		// A release of many held signals at once: not kept for ever.
		batch = nil
	}
	p.spare = batch[:0]
}

func (p *pipe) handling(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.inFlight[id]
	return ok
}

// track marks id as handed on, not yet done with (done=false), or done.
func (p *pipe) track(id string, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if done {
		delete(p.inFlight, id)
		return
	}
	if p.inFlight == nil {
		p.inFlight = map[string]struct{}{}
	}
	p.inFlight[id] = struct{}{}
}

// close stops consuming, letting the messages in hand finish; what the
// reorderer still holds is not delivered, and negatively acknowledged, so
// that JetStream offers it again at once (reorderer.close).
func (p *pipe) close(ctx context.Context) error {
	if p.order != nil {
		defer p.order.close()
	}
	p.mu.Lock()
	cc := p.cc
	p.mu.Unlock()
	var err error
	if cc != nil {
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-ctx.Done():
			cc.Stop()
			err = fmt.Errorf("drain consumer %s: %w", p.consumer, ctx.Err())
		}
	}
	if p.batch != nil {
		close(p.stopArrivals)
		<-p.batchDone
	}
	return err
}

// dispatchBatch queues a batch for the local subscriptions under one
// receive span linking each signal's producer, and acknowledges each
// signal once it is queued.
func (d *durable) dispatchBatch(batch []pending) {
	n := d.n
	ctx, span := d.tracer.Start(n.ctx, "receive", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		signals := make([]bus.Signal, len(batch))
		for i := range batch {
			signals[i] = batch[i].sig
		}
		span.SetAttributes(attribute.String("messaging.system", "signalbus"),
			attribute.String("messaging.operation.name", "receive"), attribute.String("messaging.operation.type", "receive"),
			attribute.Int("messaging.batch.message_count", len(batch)), attribute.String("signalbus.node", n.cfg.Name))
		addSignalLinks(span, d.prop, signals)
	}
	d.batchSize.Record(ctx, int64(len(batch)), d.receiveAttrs)
	// One Dispatch per signal: each is acknowledged only once queued, and
	// a batch cut short by Close must tell which were.
	for _, p := range batch {
		switch err := n.bus.Dispatch(n.ctx, p.sig); {
		case err == nil:
		case errors.Is(err, bus.ErrClosed), n.ctx.Err() != nil:
			_ = p.msg.Nak() // this node is closing; take it up after restart
			continue
		case errors.Is(err, bus.ErrInvalidSignal):
			// Stored, so a valid CloudEvent, but over this node's own
			// limits: kept on the dead-letter subject, not dropped. This
			// consumer sees every message stored after its start, so it
			// parks those (attachments refuse the same signal, and leave
			// it to it).
			if d.own.parks(p.msg, -1, p.sig.ID) {
				n.parkSignal(p.sig, err)
			}
		default:
			n.logger.Error("dispatch failed", "signal_id", p.sig.ID, "type", p.sig.Type, "error", err)
		}
		_ = p.msg.Ack()
	}
	span.End()
}

// close stops consuming, letting the messages in hand finish.
func (d *durable) close(ctx context.Context) error {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	if d.started {
		<-d.done
	}
	d.later.Wait()
	return d.own.close(ctx)
}

// dedupWindow remembers the last ids seen, up to a count, so a handler sees
// each id once across redeliveries and re-publishes.
type dedupWindow struct {
	mu  sync.Mutex
	ids recentSet[string]
}

// newDedupWindow makes a window of size ids. Its memory grows with use,
// not with size: a quiet consumer costs little.
func newDedupWindow(size int) *dedupWindow {
	return &dedupWindow{ids: newRecentSet[string](size)}
}

// contains reports whether id was handed to the handlers recently.
func (w *dedupWindow) contains(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ids.contains(id)
}

// add records id, forgetting the oldest once the window is full.
func (w *dedupWindow) add(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ids.add(id)
}

// pendingSetups counts the consumers being set up in the background.
type pendingSetups struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n is 0
}

func newPendingSetups() pendingSetups {
	idle := make(chan struct{})
	close(idle)
	return pendingSetups{idle: idle}
}

func (p *pendingSetups) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		p.idle = make(chan struct{})
	}
	p.n++
}

func (p *pendingSetups) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n == 0 {
		close(p.idle)
	}
}

// pending returns how many setups are under way.
func (p *pendingSetups) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// wait returns once none is pending, or ctx's error.
func (p *pendingSetups) wait(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	return waitClosed(ctx, idle)
}

// waitClosed waits until ch is closed or ctx ends.
func waitClosed(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch: // already closed: done, whatever ctx says
		return nil
	default:
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
