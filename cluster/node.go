package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/natsserver"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// Sentinel errors of the cluster package.
var (
	// ErrUnavailable is returned by a durable Publish whose ctx ended
	// before the store acknowledged, and by Start when NATS cannot be
	// reached; it wraps the NATS error.
	ErrUnavailable = errors.New("cluster unavailable")
)

// ScopeName is the instrumentation scope of the cluster's metrics.
const ScopeName = "github.com/signalbus/signalbus/cluster"

// Extension attributes the node adds to every signal it sends: the
// publishing node and its per-node sequence number, from which receivers
// detect gaps (fast mode) and restore order (durable mode).
const (
	ExtensionNode     = wire.ExtensionNode
	ExtensionInstance = wire.ExtensionInstance // one run of the node: its sequence restarts at 1 with a new instance
	ExtensionSequence = wire.ExtensionSequence
	ExtensionFloor    = wire.ExtensionFloor // durable mode: every lower sequence number is already stored
)

// Node is one member of a signalbus cluster: a local bus whose Publish and
// Subscribe reach every node, over NATS.
type Node struct {
	cfg      Config
	logger   *slog.Logger
	server   *natsserver.Server // nil with an external NATSURL
	tmpDir   string             // removed on Close when DataDir was empty
	nc       *nats.Conn
	sigs     *nats.Conn // fast mode: the signals' connection, without echo (see ownDelivery)
	bus      *bus.Bus
	recv     *receiver    // fast mode: core NATS on <prefix>.>
	own      *ownDelivery // fast mode: this node's signals to its own subscriptions
	dur      *durable     // durable mode: JetStream
	out      *outbox      // PublishAsync's queue, in front of either
	attached attachments  // groups and durable subscriptions fed by their own consumers
	// fastGroups are the fast groups' patterns: the receiver decodes what
	// they take, to park what they cannot.
	fastGroups groupPatterns
	seq        atomic.Uint64
	// streamMaxMsg is the stream's max_msg_size (durable mode; 0 or -1:
	// none), which packLimit keeps batches under.
	streamMaxMsg atomic.Int64
	msgs         msgPool // fast mode: batch messages, used again once published
	instance     string  // random per Start: tells this run's sequence from an earlier one's
	member       *membership
	natsGauges   metric.Registration // the NATS gauges' callback; nil when none

	ctx    context.Context // ends when Close begins draining
	cancel context.CancelFunc

	gapsMu sync.Mutex
	last   *publisherTable[uint64] // publisher → last sequence seen (fast mode)

	parked    atomic.Int64
	lost      atomic.Int64
	drops     dropCounts
	localLost atomic.Int64
	dedupHits atomic.Int64
	held      atomic.Int64
	skipped   atomic.Int64
	undecoded atomic.Int64

	closing   atomic.Bool // Close has begun
	closeOnce sync.Once
	closeErr  error
}

// Start starts a node: the embedded NATS server unless Config.NATSURL is
// set, the connection, and the node's bus. It returns once this node's own
// server is up and connected; it does not wait for the rest of the cluster,
// so nodes may start concurrently and in any order.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, logger: cfg.Logger.With("node", cfg.Name), last: newPublisherTable[uint64](time.Now(), nil),
		instance: strconv.FormatUint(rand.Uint64()&0xffffffffffff, 36)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			if n.member != nil {
				n.member.leave()
			}
			if n.out != nil {
				_ = n.out.close(context.Background())
			}
			if n.dur != nil {
				_ = n.dur.close(context.Background())
			}
			n.release(context.Background())
		}
	}()

	url := cfg.NATSURL
	if url == "" {
		if err := n.startServer(ctx); err != nil {
			return nil, err
		}
		url = n.server.ClientURL()
	}
	var err error
	if n.nc, err = n.dial(ctx, url, "signalbus-"+cfg.Name); err != nil {
		return nil, err
	}
	send := fastTransport{n}.Send
	var giveUp func([]bus.Signal) // fast mode: a signal given up keeps no number (fastTransport.Send gives it back)
	if cfg.Mode == Fast {
		// The receiver reads a synchronous subscription, whose messages
		// wait in a channel of SyncQueueLen: nats.go's default, 64 Ki,
		// would be its limit whatever SetPendingLimits says (at one
		// signal per message, a receiver 64 Ki signals behind would
		// lose). See receiverQueueLen for what the channel costs.
		if n.sigs, err = n.dial(ctx, url, "signalbus-"+cfg.Name+"-signals", nats.NoEcho(), nats.SyncQueueLen(receiverQueueLen)); err != nil {
			return nil, err
		}
	}
	if cfg.Mode == Durable {
		d, err := newDurable(n, cfg.MeterProvider.Meter(ScopeName))
		if err != nil {
			return nil, fmt.Errorf("cluster: start %s: JetStream: %w", cfg.Name, err)
		}
		n.dur, send, giveUp = d, d.Send, d.giveUp
	}
	out, err := newOutbox(n, send, giveUp, cfg.MeterProvider.Meter(ScopeName))
	if err != nil {
		return nil, fmt.Errorf("cluster: start %s: outbox: %w", cfg.Name, err)
	}
	n.out = out
	var transport bus.Transport = nodeTransport{outbox: out, n: n}
	opts := append([]bus.Option{bus.WithName(cfg.Name), bus.WithLogger(cfg.Logger)}, cfg.BusOptions...)
	opts = append(opts, bus.WithTransport(transport))
	b, err := bus.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", cfg.Name, err)
	}
	n.bus = b
	if n.dur != nil {
		n.dur.start()
	} else {
		n.recv, err = newReceiver(n, cfg.MeterProvider.Meter(ScopeName))
		if err != nil {
			return nil, fmt.Errorf("cluster: start %s: subscribe %s.>: %w", cfg.Name, cfg.Prefix, err)
		}
		n.own = newOwnDelivery(n, n.recv) // ends with n.ctx should Start fail
	}
	n.member = newMembership(n)
	if err := n.member.start(cfg.MeterProvider.Meter(ScopeName)); err != nil {
		n.member = nil
		return nil, fmt.Errorf("cluster: start %s: membership: %w", cfg.Name, err)
	}
	if n.natsGauges, err = n.startNATSMetrics(cfg.MeterProvider.Meter(ScopeName)); err != nil {
		return nil, fmt.Errorf("cluster: start %s: NATS metrics: %w", cfg.Name, err)
	}
	flushCtx, cancel := withDefaultTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := n.flush(flushCtx); err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w: %w", cfg.Name, ErrUnavailable, err)
	}
	ok = true
	return n, nil
}

func (n *Node) startServer(ctx context.Context) error {
	dir := n.cfg.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "signalbus-"+n.cfg.Name+"-")
		if err != nil {
			return fmt.Errorf("cluster: start %s: store dir: %w", n.cfg.Name, err)
		}
		n.tmpDir, dir = tmp, tmp
	}
	opts := natsserver.Options{
		Name:          n.cfg.Name,
		Listen:        n.cfg.Listen,
		ClusterListen: n.cfg.ClusterListen,
		Routes:        n.cfg.Routes,
		StoreDir:      dir,
		// Fast mode stores nothing; JetStream is for durable mode.
		JetStream:  n.cfg.Mode == Durable,
		SyncAlways: !n.cfg.NoSync,
		Logger:     n.logger,
	}
	if n.cfg.ClusterListen != "" {
		opts.ClusterName = n.cfg.ClusterName
		opts.ClusterAdvertise = n.cfg.ClusterAdvertise
	}
	srv, err := natsserver.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("cluster: start %s: embedded nats-server: %w", n.cfg.Name, err)
	}
	n.server = srv
	return nil
}

// dial connects to NATS as name, retrying until ctx or the connect timeout
// ends.
func (n *Node) dial(ctx context.Context, url, name string, extra ...nats.Option) (*nats.Conn, error) {
	connectCtx, cancel := context.WithTimeout(ctx, n.cfg.ConnectTimeout)
	defer cancel()
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1), // a node reconnects forever
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ErrorHandler(n.natsError),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: the node closed its connection itself
				n.logger.Warn("disconnected from NATS", "connection", name, "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			n.logger.Info("reconnected to NATS", "connection", name, "url", nc.ConnectedUrlRedacted())
		}),
	}
	opts = append(opts, extra...)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		select {
		case <-connectCtx.Done():
			return nil, fmt.Errorf("cluster: start %s: connect %s as %s: %w: %w", n.cfg.Name, url, name, ErrUnavailable, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// flush waits until the server has processed what the node's connections
// sent.
func (n *Node) flush(ctx context.Context) error {
	var errs []error
	for _, nc := range []*nats.Conn{n.nc, n.sigs} {
		if nc == nil {
			continue
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", nc.Opts.Name, err))
		}
	}
	return errors.Join(errs...)
}

// signalConn is the connection that carries the node's signals: the
// echo-less one in fast mode, the only one in durable mode.
func (n *Node) signalConn() *nats.Conn {
	if n.sigs != nil {
		return n.sigs
	}
	return n.nc
}

// natsError logs what nats.go reports: a slow consumer once per episode
// of drops (dropCounts counts them all), anything else as it comes.
func (n *Node) natsError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
		dropped, _ := sub.Dropped()
		n.logger.Error("slow consumer: NATS drops signals for this node (Stats.SlowLost)",
			"subject", sub.Subject, "dropped_by_this_subscription", dropped)
		return
	}
	n.logger.Error("NATS error", "error", err)
}

// dropCounts adds up what nats.go dropped for the node's slow
// subscriptions (Stats.SlowLost). nats.go counts per subscription
// (Subscription.Dropped) and calls the error handler only once per
// episode of drops, so the counts are read from the subscriptions when
// asked, and each one's kept when it ends.
type dropCounts struct {
	mu    sync.Mutex
	live  map[*nats.Subscription]struct{}
	ended int64
}

// watch counts s's drops from now on.
func (d *dropCounts) watch(s *nats.Subscription) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.live == nil {
		d.live = map[*nats.Subscription]struct{}{}
	}
	d.live[s] = struct{}{}
}

// drain drains s within ctx (drainSubscription) and keeps its count of
// drops, read as long as nats.go tells it: messages that arrive before the
// server has the unsubscription can still be dropped while s drains, and
// once s has ended nats.go no longer says how many were.
func (d *dropCounts) drain(ctx context.Context, s *nats.Subscription) error {
	last := -1
	err := drainSubscription(ctx, s, func() {
		if dropped, err := s.Dropped(); err == nil {
			last = dropped
		}
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.live[s]; ok && last >= 0 {
		d.ended += int64(last)
	}
	delete(d.live, s)
	return err
}

// add counts k messages dropped by the node itself past a subscription's
// limits (mergedFeed), as nats.go counts those it drops.
func (d *dropCounts) add(k int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended += k
}

func (d *dropCounts) total() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	total := d.ended
	for s := range d.live {
		if dropped, err := s.Dropped(); err == nil {
			total += int64(dropped)
		}
	}
	return total
}

// Bus returns the node's bus: Publish on it reaches the subscriptions of
// every node; Subscribe receives what any node publishes.
func (n *Node) Bus() *bus.Bus { return n.bus }

// ClientURL returns the embedded server's client URL, or "" when the node
// uses an external NATS.
func (n *Node) ClientURL() string {
	if n.server == nil {
		return ""
	}
	return n.server.ClientURL()
}

// Members returns every node this node has seen, itself included, sorted
// by name.
func (n *Node) Members() []Member { return n.member.snapshot() }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Stats are counters of what the node could not deliver.
type Stats struct {
	// Parked counts the messages (or events of a batch message) set aside
	// as not valid CloudEvents, or as signals this node's bus refused (over
	// its data limit): published on the dead-letter subject or, should
	// that fail, logged at error level.
	Parked   int64
	Lost     int64 // signals missing from a publisher's sequence (fast mode)
	SlowLost int64 // messages this node's NATS client dropped because it consumed too slowly
	// LocalLost counts signals this node published that its own
	// subscriptions did not get (fast mode; SlowLost's counterpart for the
	// node's own signals, which do not come back through NATS): because
	// they were too far behind (over a million signals, or 256 MiB, waiting
	// for them), because the node was closing when they were published, or
	// because its Close ran out of time before they were delivered.
	LocalLost int64
	DedupHits int64 // duplicates suppressed before the handlers (durable mode)
	Held      int64 // signals held back to restore a publisher's order (durable mode)
	Skipped   int64 // sequence numbers given up on after the reorder gap timeout (durable mode)
	// Undecoded counts the messages of other nodes that the
	// node let go without decoding them, as no subscription here wanted
	// their type (fast mode).
	Undecoded int64
}

// Stats returns the node's loss counters.
func (n *Node) Stats() Stats {
	return Stats{Parked: n.parked.Load(), Lost: n.lost.Load(), SlowLost: n.drops.total(), LocalLost: n.localLost.Load(), DedupHits: n.dedupHits.Load(),
		Held: n.held.Load(), Skipped: n.skipped.Load(), Undecoded: n.undecoded.Load()}
}

// fastTransport publishes over core NATS: at-most-once, in order per node.
// nats.go buffers PublishMsg and its flusher coalesces the writes, which
// is the batching; Close flushes.
type fastTransport struct{ n *Node }

// Send publishes the signals, numbered in order as they are encoded. Sends
// are never concurrent: the outbox makes one at a time. When a message
// cannot be written (nats.go's reconnect buffer is full while the
// connection is down), the signals before it were sent and keep their
// numbers; the others give theirs back, so that their retry numbers them
// again from there and receivers see no gap where nothing was lost. The
// error then says how many were sent (sendError), and the outbox retries
// only the rest: a fast node never sends a signal twice.
func (t fastTransport) Send(_ context.Context, signals []bus.Signal) error {
	n := t.n
	start, sent := n.seq.Load(), 0
	// Core NATS copies a message into its write buffer before Publish
	// returns: the batch bodies can be used again.
	err := n.encode(signals, func(int) (uint64, uint64) { return n.seq.Add(1), 0 }, &n.msgs,
		func(msg *nats.Msg, carried []bus.Signal) error {
			if err := n.sigs.PublishMsg(msg); err != nil {
				return fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			sent += len(carried)
			// The signal connection does not echo: the node's own
			// subscriptions get the message from here.
			n.own.add(msg, carried)
			return nil
		})
	if err != nil {
		n.seq.Store(start + uint64(sent))
	}
	return partlySent(sent, err)
}

// sequenceSeen counts the signals missing before publisher from's signals
// numbered first to last, which arrived together (one signal: first ==
// last). Core NATS keeps each publisher's order, so a jump is a loss.
func (n *Node) sequenceSeen(from publisherKey, first, last uint64) {
	n.gapsMu.Lock()
	defer n.gapsMu.Unlock()
	n.last.rotate(time.Now())
	prev, ok := n.last.get(from)
	if ok && first > prev+1 {
		missing := first - prev - 1
		n.lost.Add(int64(missing))
		n.logger.Warn("signals lost in transit", "from", from.String(), "missing", missing, "after_seq", prev)
	}
	if !ok || last > prev {
		n.last.set(from, last)
	}
}

// behind reports whether publisher from's signal number seq is one this
// node has seen, or one past which it has seen later ones.
func (n *Node) behind(from publisherKey, seq uint64) bool {
	n.gapsMu.Lock()
	defer n.gapsMu.Unlock()
	prev, ok := n.last.get(from)
	return ok && seq <= prev
}

// park republishes a message that is not a valid CloudEvent, or whose
// signal this node's bus refuses, on the dead-letter subject, with the
// reason, so it never blocks or crashes the node and can be inspected.
func (n *Node) park(msg *nats.Msg, cause error) {
	n.parked.Add(1)
	reason := wire.Reason(cause)
	n.logger.Warn("message is not a signal this node can take; parked", "subject", msg.Subject,
		"reason", reason, "error", cause, "dead_letter_subject", n.cfg.DeadLetterSubject)
	parked := nats.NewMsg(n.cfg.DeadLetterSubject)
	for k, v := range msg.Header {
		parked.Header[k] = v
	}
	parked.Header["signalbus-reason"] = []string{reason}
	parked.Header["signalbus-error"] = []string{cause.Error()}
	parked.Header["signalbus-subject"] = []string{msg.Subject}
	parked.Header["signalbus-node"] = []string{n.cfg.Name}
	parked.Data = msg.Data
	if err := n.nc.PublishMsg(parked); err != nil {
		n.logger.Error("could not park an invalid message", "subject", msg.Subject, "error", err)
	}
}

// parkSignal parks a decoded signal this node's bus refused (a stored
// one, whose message may be a batch of others): encoded on its own in
// binary mode, as its publisher would have sent it.
func (n *Node) parkSignal(sig bus.Signal, cause error) {
	msg, err := wire.Encode(sig, n.cfg.Prefix)
	if err != nil {
		n.parked.Add(1)
		n.logger.Error("could not park a refused signal", "signal_id", sig.ID, "type", sig.Type,
			"error", cause, "encode_error", err)
		return
	}
	n.park(msg, cause)
}

// parkEvent parks one event of a batch message that is not a valid
// signal, on its own: the event as a protobuf-format CloudEvent message,
// with the batch's subject; the batch's other signals go on.
func (n *Node) parkEvent(batch *nats.Msg, e wire.Event) {
	msg := &nats.Msg{Subject: batch.Subject, Header: nats.Header{"content-type": {wire.ProtobufContentType}}, Data: e.Raw}
	n.park(msg, e.Err)
}

// Close leaves the cluster: it flushes what this node published, drains
// the NATS subscription into the bus, closes the bus (which drains every
// subscription), then closes the connection and the embedded server. It
// returns ctx's error if ctx ends first. Close may be called more than once.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.closing.Store(true)
		// Once ctx ends, whatever still waits inside the node (a delivery
		// waiting for room in a stuck handler's queue) gives up: Close
		// returns ctx's error rather than wait for the handler.
		defer context.AfterFunc(ctx, n.cancel)()
		var errs []error
		if n.out != nil {
			if err := n.out.close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if n.member != nil {
			n.member.leave() // peers mark this node down at once
		}
		if n.nc != nil {
			flushCtx, cancel := withDefaultTimeout(ctx, n.cfg.ConnectTimeout)
			err := n.flush(flushCtx)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("flush: %w", err))
			}
		}
		if err := n.attached.detachAll(ctx); err != nil {
			errs = append(errs, err)
		}
		if n.recv != nil {
			if err := n.recv.close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if n.own != nil {
			if err := n.own.close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("own signals: %w", err))
			}
		}
		if n.dur != nil {
			if err := n.dur.close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		n.cancel()
		if n.own != nil {
			<-n.own.done // at once, now that n.ctx has ended: it counts what it could not deliver
		}
		if n.bus != nil {
			if err := n.bus.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if err := n.release(ctx); err != nil {
			errs = append(errs, err)
		}
		if n.recv != nil {
			// At once: when ctx ran out before the receiver drained, its
			// connection is closed now, which ends it.
			<-n.recv.done
		}
		if len(errs) > 0 {
			n.closeErr = fmt.Errorf("cluster: close %s: %w", n.cfg.Name, errors.Join(errs...))
		}
	})
	return n.closeErr
}

// drainSubscription drains sub and waits, within ctx, until its handler
// has taken everything, calling poll before the drain and while it waits.
func drainSubscription(ctx context.Context, sub *nats.Subscription, poll func()) error {
	poll()
	if err := sub.Drain(); err != nil {
		return fmt.Errorf("drain subscription: %w", err)
	}
	for sub.IsValid() {
		poll()
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain subscription: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// withDefaultTimeout gives ctx a deadline d away if it has none: nats.go's
// ...WithContext calls refuse a ctx without one.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// release closes the connection and the server and removes a temporary
// store; it is also how a failed Start cleans up.
func (n *Node) release(ctx context.Context) error {
	n.cancel()
	if n.natsGauges != nil {
		_ = n.natsGauges.Unregister()
	}
	var errs []error
	for _, nc := range []*nats.Conn{n.nc, n.sigs} {
		if nc != nil {
			nc.Close()
		}
	}
	stopped := true
	if n.server != nil {
		if err := n.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("nats-server shutdown: %w", err))
			stopped = false
		}
	}
	if n.tmpDir != "" {
		if stopped {
			if err := os.RemoveAll(n.tmpDir); err != nil {
				errs = append(errs, err)
			}
		} else {
			// The server is still writing its store: remove it once the
			// server has stopped, not from under it.
			go func(dir string, stopped <-chan struct{}) {
				<-stopped
				_ = os.RemoveAll(dir)
			}(n.tmpDir, n.server.Stopped())
		}
	}
	return errors.Join(errs...)
}
