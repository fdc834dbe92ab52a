package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// ErrGroupConflict is returned by Subscribe when a group (bus.WithGroup)
// already consumes another pattern on the cluster: the members of a group
// share one JetStream consumer, and so one pattern.
var ErrGroupConflict = errors.New("group already consumes another pattern")

// nodeTransport is what the node's bus publishes through (the outbox) and
// what takes over the subscriptions Dispatch cannot serve alone: groups,
// which share work across nodes, and, in durable mode, named
// subscriptions, which keep their position in the stream across restarts.
type nodeTransport struct {
	*outbox
	n *Node
}

// Attach implements bus.SubscriptionTransport.
func (t nodeTransport) Attach(info bus.SubscriptionInfo, feed bus.Feed) (bus.Detach, error) {
	n := t.n
	var (
		detach func(context.Context) error
		err    error
	)
	switch {
	case n.cfg.Mode == Fast && info.Group != "":
		detach, err = n.attachFastGroup(info, feed)
	case n.cfg.Mode == Durable && (info.Group != "" || info.Named):
		detach, err = n.dur.attach(info, feed)
	default:
		return nil, nil // fan-out: the node's own subscription or consumer feeds Dispatch
	}
	if err != nil {
		return nil, err
	}
	return n.attached.add(detach), nil
}

// attachments are the detach functions of the subscriptions a node feeds
// itself, so that Close stops every feed while the node is still whole.
type attachments struct {
	mu   sync.Mutex
	next int
	m    map[int]func(context.Context) error
}

// add registers detach and returns it made idempotent and self-removing.
func (as *attachments) add(detach func(context.Context) error) bus.Detach {
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.m == nil {
		as.m = map[int]func(context.Context) error{}
	}
	id := as.next
	as.next++
	var (
		once sync.Once
		err  error
	)
	wrapped := func(ctx context.Context) error {
		once.Do(func() {
			err = detach(ctx)
			as.mu.Lock()
			delete(as.m, id)
			as.mu.Unlock()
		})
		return err
	}
	as.m[id] = wrapped
	return wrapped
}

// detachAll stops every feed.
func (as *attachments) detachAll(ctx context.Context) error {
	as.mu.Lock()
	all := make([]func(context.Context) error, 0, len(as.m))
	for _, d := range as.m {
		all = append(all, d)
	}
	as.mu.Unlock()
	var errs []error
	for _, d := range all {
		errs = append(errs, d(ctx))
	}
	return errors.Join(errs...)
}

// groupCatchUpLimit bounds how long a leaving fast group waits for the
// node's receiver (see attachFastGroup): a handler stuck on another
// subscription of the node may hold the receiver up.
const groupCatchUpLimit = 5 * time.Second

// groupPatterns are the patterns of a fast node's groups, which the
// node's receiver asks about (wants) for every message of a type no plain
// subscription wants: read without a lock, as the receiver asks often and
// groups come and go seldom.
type groupPatterns struct {
	mu   sync.Mutex // serializes add and remove
	next int
	all  atomic.Pointer[map[int]bus.Pattern]
}

// add registers p and returns what removes it.
func (g *groupPatterns) add(p bus.Pattern) (remove func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := g.next
	g.next++
	g.update(func(all map[int]bus.Pattern) { all[id] = p })
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.update(func(all map[int]bus.Pattern) { delete(all, id) })
		})
	}
}

// update replaces the patterns with a changed copy; g.mu is held.
func (g *groupPatterns) update(change func(map[int]bus.Pattern)) {
	next := map[int]bus.Pattern{}
	if cur := g.all.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	change(next)
	g.all.Store(&next)
}

// wants reports whether a group of the node takes signals of type typ.
func (g *groupPatterns) wants(typ string) bool {
	all := g.all.Load()
	if all == nil {
		return false
	}
	for _, p := range *all {
		if p.Match(typ) {
			return true
		}
	}
	return false
}

// consumerName makes a JetStream consumer name of parts: characters
// JetStream names cannot hold become '_', and a name longer than
// maxConsumerName is cut short (a file store keeps each consumer in a
// directory of that name); either way a hash of the original is appended,
// so that two names never collide.
func consumerName(parts ...string) string {
	raw := strings.Join(parts, "-")
	safe := []byte(raw)
	changed := false
	for i, c := range safe {
		if !isNameChar(rune(c)) {
			safe[i] = '_'
			changed = true
		}
	}
	if len(safe) > maxConsumerName || changed && len(safe) > maxConsumerName-8 {
		safe, changed = safe[:maxConsumerName-8], true // room for "-" and a 32-bit hash in base 36
	}
	if !changed {
		return raw
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(raw))
	return string(safe) + "-" + strconv.FormatUint(uint64(h.Sum32()), 36)
}

// maxConsumerName bounds the consumer names consumerName makes: nats-server
// refuses longer ones (JSMaxNameLen, the file name limit of most file
// systems).
const maxConsumerName = 255

// matcher filters locally what a wider subject filter let through.
type matcher struct {
	exact   bool
	pattern bus.Pattern
}

func newMatcher(pattern string, exact bool) (matcher, error) {
	p, err := bus.ParsePattern(pattern)
	if err != nil {
		return matcher{}, err
	}
	return matcher{exact: exact, pattern: p}, nil
}

func (m matcher) match(typ string) bool { return m.exact || m.pattern.Match(typ) }

// attachFastGroup subscribes a group in fast mode: a NATS queue
// subscription per subject filter, so that NATS hands each message to one
// member of the group, cluster-wide; a member whose node is gone stops
// being offered messages as soon as its server drops the connection.
//
// A pattern ending in ".**" needs two filters ("order" and "order.>").
// nats.go runs each asynchronous subscription on a goroutine of its own,
// which would hand one publisher's "order" and "order.x" signals to the
// subscription in either order; so the two feed one channel instead, in
// the order the connection read them, and one goroutine delivers.
func (n *Node) attachFastGroup(info bus.SubscriptionInfo, feed bus.Feed) (func(context.Context) error, error) {
	filters, exact := wire.SubjectFilters(n.cfg.Prefix, info.Pattern)
	m, err := newMatcher(info.Pattern, exact)
	if err != nil {
		return nil, err
	}
	// The node's receiver, which sees every other node's message (a
	// node's own are valid), decodes every message of a type this group
	// takes too, and parks what is not valid or what the bus refuses (its
	// limits are the group's): a message is parked once per node, by one
	// goroutine deciding once. This group leaves it to the receiver.
	unregister := n.fastGroups.add(m.pattern)
	handle := func(msg *nats.Msg) {
		events, err := wire.DecodeAll(msg)
		if err != nil {
			return // parked by the receiver
		}
		for _, e := range events {
			sig := e.Signal
			if e.Err != nil || !m.match(sig.Type) {
				continue // parked by the receiver, or not this pattern's
			}
			if err := feed(n.ctx, sig, nil); err != nil && n.ctx.Err() == nil && !errors.Is(err, bus.ErrInvalidSignal) {
				n.logger.Error("group delivery failed", "group", info.Group, "subscription", info.Name,
					"signal_id", sig.ID, "type", sig.Type, "error", err)
			}
		}
	}
	subs := make([]*nats.Subscription, 0, len(filters))
	detach := func(ctx context.Context) error {
		var errs []error
		for _, s := range subs {
			if err := n.drops.drain(ctx, s); err != nil {
				errs = append(errs, err)
			}
		}
		subs = subs[:0]
		if n.closing.Load() {
			// The node drains its receiver next, with the type still
			// wanted: nothing to wait for here.
			return errors.Join(errs...)
		}
		// What the group took, the node's receiver got too, maybe not
		// yet handled: the type stays wanted until it is, or the receiver
		// would let an invalid one go undecoded, and no one would park it.
		if n.recv != nil {
			waitCtx, cancel := context.WithTimeout(ctx, groupCatchUpLimit)
			if err := n.recv.catchUp(waitCtx); err != nil {
				n.logger.Warn("fast group left before the node's receiver caught up; an invalid message it took may go unparked",
					"group", info.Group, "subscription", info.Name, "error", err)
			}
			cancel()
		}
		unregister()
		return errors.Join(errs...)
	}
	subscribe := func(filter string) (*nats.Subscription, error) {
		s, err := n.nc.QueueSubscribe(filter, "signalbus-"+info.Group, handle)
		if err == nil {
			err = s.SetPendingLimits(pendingLimit, pendingBytesLimit)
		}
		return s, err
	}
	if len(filters) > 1 {
		merged := newMergedFeed(handle, func(k int) { n.drops.add(int64(k)) })
		subscribe = func(filter string) (*nats.Subscription, error) {
			return n.nc.ChanQueueSubscribe(filter, "signalbus-"+info.Group, merged.msgs)
		}
		drainSubs := detach
		detach = func(ctx context.Context) error {
			return errors.Join(drainSubs(ctx), merged.finish(ctx))
		}
	}
	for _, f := range filters {
		s, err := subscribe(f)
		if err != nil {
			if s != nil {
				_ = s.Unsubscribe()
			}
			_ = detach(context.Background())
			return nil, fmt.Errorf("group %q: queue subscribe %s: %w", info.Group, f, err)
		}
		n.drops.watch(s)
		subs = append(subs, s)
	}
	return detach, nil
}

// mergedFeed hands the messages of several channel subscriptions of one
// connection to a handler on one goroutine, in the order the connection
// read them. nats.go applies no pending limits to channel subscriptions,
// so a goroutine moves each message from their (small) channel at once
// into a queue that keeps the limits an asynchronous subscription would
// (pendingLimit messages, pendingBytesLimit bytes): past them a message is
// dropped and counted (lost), as nats.go counts a full channel's in the
// subscriptions' Dropped.
type mergedFeed struct {
	msgs chan *nats.Msg
	lost func(int)

	mu    sync.Mutex
	queue []*nats.Msg
	held  int // messages queued or being handled, against pendingLimit
	bytes int // their bytes, against pendingBytesLimit
	wake  chan struct{}

	stop  chan struct{} // closed by finish: the subscriptions are drained
	moved chan struct{} // closed when the mover has moved everything
	done  chan struct{} // closed when the handler has had everything
}

// mergedChannelLen is the subscriptions' channel, which the mover
// empties as fast as the connection fills it; room for a burst while the
// mover waits for a core (512 KiB of pointers per group).
const mergedChannelLen = 1 << 16

func newMergedFeed(handle func(*nats.Msg), lost func(int)) *mergedFeed {
	f := &mergedFeed{msgs: make(chan *nats.Msg, mergedChannelLen), lost: lost, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), moved: make(chan struct{}), done: make(chan struct{})}
	go f.move()
	go f.deliver(handle)
	return f
}

func (f *mergedFeed) move() {
	defer close(f.moved)
	for {
		select {
		case m := <-f.msgs:
			f.push(m)
		case <-f.stop:
			for {
				select {
				case m := <-f.msgs:
					f.push(m)
				default:
					return
				}
			}
		}
	}
}

func (f *mergedFeed) push(m *nats.Msg) {
	f.mu.Lock()
	if f.held >= pendingLimit || f.bytes+len(m.Data) > pendingBytesLimit {
		f.mu.Unlock()
		f.lost(1)
		return
	}
	f.queue = append(f.queue, m)
	f.held++
	f.bytes += len(m.Data)
	f.mu.Unlock()
	nudge(f.wake)
}

func (f *mergedFeed) deliver(handle func(*nats.Msg)) {
	defer close(f.done)
	for {
		f.mu.Lock()
		taken := f.queue
		f.queue = nil
		f.mu.Unlock()
		for i, m := range taken {
			handle(m)
			taken[i] = nil
			// Counted until handled, not only while queued: what the
			// handler holds counts against the limits too.
			f.mu.Lock()
			f.held--
			f.bytes -= len(m.Data)
			f.mu.Unlock()
		}
		if len(taken) > 0 {
			continue
		}
		select {
		case <-f.wake:
		case <-f.moved:
			f.mu.Lock()
			empty := len(f.queue) == 0
			f.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// finish waits, within ctx, until what the drained subscriptions put in
// the channel is handled.
func (f *mergedFeed) finish(ctx context.Context) error {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("group delivery: %w", ctx.Err())
	}
}

// attachment is a subscription fed by its own JetStream consumer: a
// group's consumer, shared by the group's members on every node, or a
// named subscription's, which is this node's alone and keeps its place in
// the stream across restarts. Either acknowledges a signal only once the
// subscription is done with it, so what a node had not handled when it
// died is redelivered: to another member of the group, or to the named
// subscription when its node comes back.
type attachment struct {
	d     *durable
	info  bus.SubscriptionInfo
	feed  bus.Feed
	match matcher
	cfg   jetstream.ConsumerConfig
	pipe  *pipe

	ctx    context.Context // ends at detach
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	later  sync.WaitGroup // a consume that waits for the ack wait (setup)
}

// attach starts the consumer of a group or a named subscription. When the
// stream is ready the consumer is made before Subscribe returns (and a
// conflicting group is an error); otherwise it is made in the background
// once the stream exists.
func (d *durable) attach(info bus.SubscriptionInfo, feed bus.Feed) (func(context.Context) error, error) {
	n := d.n
	a := &attachment{d: d, info: info, feed: feed, stop: make(chan struct{}), done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(n.ctx)
	var (
		filters []string
		exact   bool
		ordered bool
	)
	if info.Group != "" {
		// A group's share is not ordered (its members work in parallel),
		// so it can take just what its pattern selects.
		filters, exact = wire.SubjectFilters(n.cfg.Prefix, info.Pattern)
		a.cfg.Durable = consumerName("group", info.Group)
		a.cfg.MaxAckPending = 1024
	} else {
		// A named subscription reads the whole stream: a publisher's
		// sequence numbers are only gap-free over every type, and the
		// reorderer needs them so. What does not match is acknowledged
		// at once.
		filters, exact, ordered = []string{n.cfg.Prefix + ".>"}, false, true
		a.cfg.Durable = consumerName("sub", n.cfg.Name, info.Name)
		a.cfg.MaxAckPending = 8192
	}
	m, err := newMatcher(info.Pattern, exact)
	if err != nil {
		return nil, err
	}
	a.match = m
	a.cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	a.cfg.AckPolicy = jetstream.AckExplicitPolicy
	a.cfg.AckWait = ackWait
	a.cfg.Replicas = n.cfg.Replicas
	if len(filters) == 1 {
		a.cfg.FilterSubject = filters[0]
	} else {
		a.cfg.FilterSubjects = filters
	}
	a.pipe = d.newPipe(a.cfg.Durable, ordered, a.deliver, nil)

	select {
	case <-d.ready:
		if err := a.setup(); err != nil {
			if errors.Is(err, ErrGroupConflict) {
				a.cancel()
				_ = a.pipe.close(context.Background())
				return nil, err
			}
			d.setups.add()
			go a.retrySetup()
		} else {
			close(a.done)
		}
	default:
		d.setups.add()
		go a.retrySetup()
	}
	return a.detach, nil
}

// retrySetup makes the consumer in the background; until it exists, the
// node's publishes wait (see durable.Send).
func (a *attachment) retrySetup() {
	defer close(a.done)
	defer a.d.setups.done()
	select {
	case <-a.d.ready:
	case <-a.stop:
		return
	}
	retryUntil(a.stop, a.d.n.logger, "consumer "+a.cfg.Durable, func() error {
		err := a.setup()
		if errors.Is(err, ErrGroupConflict) {
			// Retrying cannot help, and Subscribe has returned: the
			// subscription stays without a consumer, and says so.
			a.d.n.logger.Error("group member not consuming: its pattern conflicts with the group's",
				"consumer", a.cfg.Durable, "pattern", a.info.Pattern, "error", err)
			return nil
		}
		return err
	})
}

// setup creates the consumer, or joins it when it exists with the same
// filters, and starts consuming.
func (a *attachment) setup() error {
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	consumer, err := a.d.stream.CreateConsumer(ctx, a.cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		consumer, err = a.d.stream.Consumer(ctx, a.cfg.Durable)
		if err == nil {
			have := consumer.CachedInfo().Config
			haveFilters := have.FilterSubjects
			if have.FilterSubject != "" {
				haveFilters = []string{have.FilterSubject}
			}
			wantFilters := a.cfg.FilterSubjects
			if a.cfg.FilterSubject != "" {
				wantFilters = []string{a.cfg.FilterSubject}
			}
			if !slices.Equal(haveFilters, wantFilters) {
				return fmt.Errorf("%w: consumer %s filters %v, this subscription (pattern %q) needs %v",
					ErrGroupConflict, a.cfg.Durable, haveFilters, a.info.Pattern, wantFilters)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", a.cfg.Durable, err)
	}
	if wait := a.redeliveryWait(consumer.CachedInfo()); wait > 0 {
		// The named subscription's node stopped with signals in hand,
		// unacknowledged (it died, or Close ran out of time). JetStream
		// offers them again once the ack wait has passed, and what was
		// stored after them before that: consuming now would hand the
		// later ones over first, and the earlier ones late, out of order.
		// Once the ack wait has passed they wait for redelivery, which
		// JetStream serves before anything new.
		a.d.n.logger.Info("named subscription resumes after the ack wait: signals it had in hand come back first",
			"consumer", a.cfg.Durable, "unacknowledged", consumer.CachedInfo().NumAckPending, "wait", wait)
		a.later.Go(func() {
			select {
			case <-time.After(wait):
			case <-a.stop:
				return
			}
			retryUntil(a.stop, a.d.n.logger, "consumer "+a.cfg.Durable, func() error { return a.pipe.consume(consumer) })
		})
		return nil
	}
	return a.pipe.consume(consumer)
}

// redeliveryWait is how long a named subscription waits before consuming,
// so that what its consumer delivered and never saw acknowledged is queued
// for redelivery first: until the ack wait has passed since the last
// delivery, and a little more for the server's timer. Nothing when nothing
// is unacknowledged, or for a group.
func (a *attachment) redeliveryWait(info *jetstream.ConsumerInfo) time.Duration {
	if a.info.Group != "" || info == nil || info.NumAckPending == 0 {
		return 0
	}
	wait := a.cfg.AckWait + 250*time.Millisecond
	if last := info.Delivered.Last; last != nil {
		wait -= time.Since(*last)
	}
	return wait
}

// deliver hands a stored signal to the subscription; the ack waits for the
// handler.
func (a *attachment) deliver(p pending) {
	if !a.match.match(p.sig.Type) {
		_ = p.msg.Ack() // not for this subscription; the filter let it through
		return
	}
	pipe, n := a.pipe, a.d.n
	pipe.track(p.sig.ID, false)
	err := a.feed(a.ctx, p.sig, func(err error) {
		// Handled, dead-lettered, or dropped by the subscription's own
		// overflow policy (the bus counted and logged it); otherwise the
		// bus closed first.
		handled := err == nil || errors.Is(err, bus.ErrQueueFull)
		if handled {
			// Into the dedup window before out of the in-flight set: a
			// redelivery looked at between the two would pass both (see
			// pipe.duplicate).
			pipe.dedup.add(p.sig.ID)
		}
		pipe.track(p.sig.ID, true)
		if handled {
			_ = p.msg.Ack()
		} else {
			_ = p.msg.Nak()
		}
	})
	if err == nil {
		return
	}
	pipe.track(p.sig.ID, true)
	switch {
	case errors.Is(err, bus.ErrInvalidSignal):
		// Parked once by this node: by its own consumer (see
		// durable.dispatchBatch), or here when that never sees it.
		if pipe.parks(p.msg, -1, p.sig.ID) {
			n.parkSignal(p.sig, err)
		} else {
			n.logger.Debug("stored signal refused by the bus; terminated, parked once by this node elsewhere (its own consumer, another group, an earlier delivery)",
				"consumer", a.cfg.Durable, "signal_id", p.sig.ID, "type", p.sig.Type, "error", err)
		}
		_ = p.msg.Term()
	case errors.Is(err, bus.ErrClosed), a.ctx.Err() != nil:
		_ = p.msg.Nak()
	case errors.Is(err, bus.ErrQueueFull) && pipe.order != nil:
		// The queue refused it (overflow Reject), and the bus counted it
		// dropped. A named subscription keeps its publishers' order: a
		// redelivery would come after what followed it, which the
		// reorderer has let through since. Dropped, as DropOldest drops.
		_ = p.msg.Ack()
	default: // the queue refused it (overflow Reject): offer it again shortly, to any member of the group
		_ = p.msg.NakWithDelay(250 * time.Millisecond)
	}
}

// detach stops consuming; the subscription keeps handling what it holds
// and acknowledges it as it goes. The consumer itself stays on the stream.
func (a *attachment) detach(ctx context.Context) error {
	close(a.stop)
	<-a.done
	a.later.Wait()
	err := a.pipe.close(ctx)
	a.cancel()
	return err
}

// ErrNotFound is returned when what was to be deleted does not exist.
var ErrNotFound = errors.New("not found")

// DeleteSubscription deletes the durable consumer of this node's named
// subscription (bus.WithSubscriptionName, durable mode): its position in
// the stream is forgotten, and subscribing again under the name starts
// from "now". Close the subscription first; a subscription still open
// stops receiving. It returns an error wrapping ErrNotFound when there is
// no such consumer.
func (n *Node) DeleteSubscription(ctx context.Context, name string) error {
	return n.deleteConsumer(ctx, consumerName("sub", n.cfg.Name, name))
}

// DeleteGroup deletes a group's durable consumer (bus.WithGroup, durable
// mode), for every node: the signals it had not yet handed out are
// forgotten by the group. Close its members first. It returns an error
// wrapping ErrNotFound when there is no such group.
func (n *Node) DeleteGroup(ctx context.Context, group string) error {
	return n.deleteConsumer(ctx, consumerName("group", group))
}

func (n *Node) deleteConsumer(ctx context.Context, consumer string) error {
	if n.dur == nil {
		return fmt.Errorf("cluster: delete %s: fast mode keeps no consumers: %w", consumer, ErrNotFound)
	}
	select {
	case <-n.dur.ready:
	case <-ctx.Done():
		return fmt.Errorf("cluster: delete %s: %w: no stream yet: %w", consumer, ErrUnavailable, ctx.Err())
	}
	ctx, cancel := withDefaultTimeout(ctx, n.cfg.ConnectTimeout)
	defer cancel()
	err := n.dur.stream.DeleteConsumer(ctx, consumer)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("cluster: delete %s: %w", consumer, ErrNotFound)
	default:
		return fmt.Errorf("cluster: delete %s: %w: %w", consumer, ErrUnavailable, err)
	}
}
