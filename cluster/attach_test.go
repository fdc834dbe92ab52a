package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
	"github.com/signalbus/signalbus/internal/faultproxy"
)

func TestConsumerNameIsSafeAndDistinct(t *testing.T) {
	if got := consumerName("sub", "n1", "audit"); got != "sub-n1-audit" {
		t.Errorf("consumerName of safe parts = %q, want them joined", got)
	}
	a, b := consumerName("sub", "n1", "a.b"), consumerName("sub", "n1", "a*b")
	if a == b {
		t.Errorf("two names map to one consumer %q", a)
	}
	long := strings.Repeat("x", 300)
	c, d := consumerName("sub", "n1", long+"c"), consumerName("sub", "n1", long+"d")
	if c == d {
		t.Errorf("two long names map to one consumer %q", c)
	}
	// Just under the limit, but with a character replaced: the hash must
	// not take it over.
	e := consumerName("sub", "n1", strings.Repeat("z", maxConsumerName-9)+".")
	for _, name := range []string{c, d, e} {
		if len(name) > maxConsumerName {
			t.Errorf("consumer name %q is %d bytes, over %d", name, len(name), maxConsumerName)
		}
	}
	if got := consumerName("sub", "n1", strings.Repeat("y", maxConsumerName-7)); len(got) != maxConsumerName || !strings.HasSuffix(got, "yyy") {
		t.Errorf("consumer name of safe parts %d bytes long in all = %q, want them joined", maxConsumerName, got)
	}
	for _, name := range []string{a, b, c, d, e} {
		for _, c := range name {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				t.Errorf("consumer name %q holds %q", name, c)
			}
		}
	}
}

// handledSet records, across the nodes of a test, which node's handler
// finished which signal id, and how often.
type handledSet struct {
	mu    sync.Mutex
	by    map[string][]string // id → nodes that handled it
	count map[string]int      // node → handled
}

func (h *handledSet) handler(node string) bus.Handler {
	return bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.by == nil {
			h.by, h.count = map[string][]string{}, map[string]int{}
		}
		h.by[s.ID] = append(h.by[s.ID], node)
		h.count[node]++
		return nil
	})
}

func (h *handledSet) distinct() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.by)
}

func (h *handledSet) duplicates() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var dups []string
	for id, nodes := range h.by {
		if len(nodes) > 1 {
			dups = append(dups, fmt.Sprintf("%s by %v", id, nodes))
		}
	}
	return dups
}

func (h *handledSet) waitDistinct(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for h.distinct() < n {
		if time.Now().After(deadline) {
			t.Fatalf("group handled %d distinct signals, want %d", h.distinct(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGroupSharesWorkAcrossNodes: in each mode, a group with a member on
// every node handles each signal once, cluster-wide, while a plain
// subscription on every node still receives every signal.
func TestGroupSharesWorkAcrossNodes(t *testing.T) {
	for _, tc := range []struct {
		mode     Mode
		encoding Encoding
	}{{Durable, Binary}, {Fast, Binary}, {Durable, ProtobufBatch}, {Fast, ProtobufBatch}} {
		mode := tc.mode
		t.Run(mode.String()+"/"+tc.encoding.String(), func(t *testing.T) {
			ext := startNATS(t, mode == Durable)
			var nodes []*Node
			for i := range 3 {
				nodes = append(nodes, startNode(t, Config{Name: fmt.Sprintf("g%d", i), Mode: mode, Encoding: tc.encoding,
					NATSURL: ext.ClientURL()}))
			}
			if mode == Durable {
				waitDurableReady(t, nodes...)
			} else {
				waitConnected(t, nodes)
			}
			var group handledSet
			for _, n := range nodes {
				if _, err := n.Bus().Subscribe("invoice.*", group.handler(n.Name()), bus.WithGroup("billing")); err != nil {
					t.Fatal(err)
				}
			}
			fanOut := subscribeAll(t, nodes, "invoice.**")
			if mode == Fast {
				// The queue subscriptions are on each node's main
				// connection: flushed, the server has them before any
				// signal goes out.
				for _, n := range nodes {
					if err := n.nc.Flush(); err != nil {
						t.Fatal(err)
					}
				}
				waitConnected(t, nodes) // and the plain subscriptions'
			}
			const perNode = 100
			for _, n := range nodes {
				// Ten signals per Publish, so that the batch encoding
				// carries several in one message.
				publishChunked(t, n, "invoice.issued", 0, perNode, 10)
			}
			group.waitDistinct(t, 3*perNode, 20*time.Second)
			for i, box := range fanOut {
				if got := len(box.wait(t, 3*perNode)); got != 3*perNode {
					t.Errorf("plain subscription on %s received %d, want every one of %d", nodes[i].Name(), got, 3*perNode)
				}
			}
			time.Sleep(100 * time.Millisecond) // a duplicate would arrive right behind
			if dups := group.duplicates(); len(dups) > 0 {
				t.Fatalf("group handled %d signals more than once: %v", len(dups), dups[:min(5, len(dups))])
			}
			group.mu.Lock()
			t.Logf("share per node: %v", group.count)
			group.mu.Unlock()
		})
	}
}

// TestDurableGroupFailsOverWhenAMemberDies: a member's node takes signals
// and dies (its handler never finishes; its link to NATS is cut). What it
// held unacknowledged is redelivered, after the ack wait, to the member on
// the other node, which ends up handling every signal exactly once.
func TestDurableGroupFailsOverWhenAMemberDies(t *testing.T) {
	ext := startNATS(t, true)
	proxy, err := faultproxy.New(context.Background(), "127.0.0.1:0", hostPort(ext.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	alive := startNode(t, Config{Name: "alive", NATSURL: ext.ClientURL()})
	doomed := startNode(t, Config{Name: "doomed", NATSURL: "nats://" + proxy.Addr()})
	waitDurableReady(t, alive, doomed)

	var survivors handledSet
	if _, err := alive.Bus().Subscribe("job.*", survivors.handler("alive"), bus.WithGroup("workers")); err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	took := make(chan string, 1000)
	if _, err := doomed.Bus().Subscribe("job.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		took <- s.ID
		select { // the node "dies" holding the signal: it never finishes
		case <-hung:
		case <-ctx.Done():
		}
		return errors.New("died")
	}), bus.WithGroup("workers"), bus.WithRetry(bus.NoRetry)); err != nil {
		t.Fatal(err)
	}
	const n = 60
	publishN(t, alive, "job.run", 0, n)
	select {
	case <-took:
	case <-time.After(20 * time.Second):
		t.Fatal("the doomed member never took a signal")
	}
	proxy.Cut()
	start := time.Now()
	survivors.waitDistinct(t, n, 30*time.Second)
	t.Logf("the surviving member had every signal %v after the other died", time.Since(start).Round(10*time.Millisecond))
	time.Sleep(100 * time.Millisecond)
	if dups := survivors.duplicates(); len(dups) > 0 {
		t.Fatalf("handled more than once: %v", dups)
	}
	close(hung)
	proxy.Restore() // so that the doomed node can close cleanly
}

// TestNamedDurableSubscriptionResumes: a named subscription keeps its
// consumer while its node is down; subscribed again after the restart it
// receives what was published meanwhile, in order, and nothing it had
// handled. An unnamed subscription on the same node starts from "now".
//
// The longest names work too: the node's (MaxNameLength) and a
// subscription name that would make a consumer name too long for a
// directory of the store, which is shortened.
func TestNamedDurableSubscriptionResumes(t *testing.T) {
	for _, encoding := range []Encoding{Binary, ProtobufBatch} {
		t.Run(encoding.String(), func(t *testing.T) { testNamedDurableSubscriptionResumes(t, encoding, "auditor", "audit") })
	}
	t.Run("longest names", func(t *testing.T) {
		testNamedDurableSubscriptionResumes(t, Binary, strings.Repeat("n", MaxNameLength), strings.Repeat("audit.", 60))
	})
}

func testNamedDurableSubscriptionResumes(t *testing.T, encoding Encoding, nodeName, subName string) {
	ext := startNATS(t, true)
	pub := startNode(t, Config{Name: "pub", NATSURL: ext.ClientURL(), Encoding: encoding})
	cfg := Config{Name: nodeName, NATSURL: ext.ClientURL(), Logger: quietLogger(), Encoding: encoding,
		BusOptions: []bus.Option{bus.WithLogger(quietLogger())}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, pub, node)
	first := &inbox{}
	if _, err := node.Bus().Subscribe("order.*", first, bus.WithSubscriptionName(subName)); err != nil {
		t.Fatal(err)
	}
	waitAttached(t, node, 1)
	publishChunked(t, pub, "order.created", 0, 50, 10)
	publishN(t, pub, "stock.moved", 0, 10) // not for the subscription: acknowledged, never handled
	checkSequence(t, first.wait(t, 50), 0, 50)
	if err := node.Close(ctx); err != nil {
		t.Fatal(err)
	}

	publishChunked(t, pub, "order.created", 50, 120, 10) // while the node is down

	again, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	fresh := &inbox{}
	if _, err := again.Bus().Subscribe("order.*", fresh); err != nil { // unnamed: from now
		t.Fatal(err)
	}
	resumed := &inbox{}
	if _, err := again.Bus().Subscribe("order.*", resumed, bus.WithSubscriptionName(subName)); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, resumed.wait(t, 70), 50, 120)
	waitDurableReady(t, again)
	publishN(t, pub, "order.created", 120, 130)
	got := resumed.wait(t, 80)
	checkSequence(t, got, 50, 130)
	time.Sleep(100 * time.Millisecond) // a duplicate would arrive right behind
	if n := len(resumed.wait(t, 0)); n != 80 {
		t.Errorf("named subscription received %d after the restart, want exactly 80", n)
	}
	// The unnamed one started from "now": at most what was published after
	// its node's consumer resumed, never what was handled before.
	for _, s := range fresh.wait(t, 0) {
		if i, _ := strconv.Atoi(s.Subject); i < 50 {
			t.Errorf("unnamed subscription received #%d, handled before the restart", i)
		}
	}
}

// waitAttached waits until n of the node's fed subscriptions are
// attached and, in durable mode, every consumer they need exists (a setup
// that failed once is retried in the background, and another node's
// publishes do not wait for it).
func waitAttached(t *testing.T, node *Node, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		node.attached.mu.Lock()
		count := len(node.attached.m)
		node.attached.mu.Unlock()
		if count >= n {
			if node.dur != nil {
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				defer cancel()
				if err := node.dur.setups.wait(ctx); err != nil {
					t.Fatalf("consumers of the subscriptions not made: %v", err)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions attached, want %d", count, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGroupMembersMustSharePattern(t *testing.T) {
	ext := startNATS(t, true)
	a := startNode(t, Config{Name: "a", NATSURL: ext.ClientURL()})
	b := startNode(t, Config{Name: "b", NATSURL: ext.ClientURL()})
	waitDurableReady(t, a, b)
	if _, err := a.Bus().Subscribe("invoice.*", &inbox{}, bus.WithGroup("billing")); err != nil {
		t.Fatal(err)
	}
	_, err := b.Bus().Subscribe("order.*", &inbox{}, bus.WithGroup("billing"))
	if !errors.Is(err, ErrGroupConflict) {
		t.Fatalf("joining a group with another pattern: err = %v, want ErrGroupConflict", err)
	}
	if _, err := b.Bus().Subscribe("invoice.*", &inbox{}, bus.WithGroup("billing")); err != nil {
		t.Fatalf("joining with the group's pattern: %v", err)
	}
}

func TestDeleteSubscriptionForgetsItsPosition(t *testing.T) {
	ext := startNATS(t, true)
	pub := startNode(t, Config{Name: "pub", NATSURL: ext.ClientURL()})
	node := startNode(t, Config{Name: "del", NATSURL: ext.ClientURL()})
	waitDurableReady(t, pub, node)
	ctx := context.Background()
	first := &inbox{}
	sub, err := node.Bus().Subscribe("order.*", first, bus.WithSubscriptionName("audit"))
	if err != nil {
		t.Fatal(err)
	}
	waitAttached(t, node, 1)
	publishN(t, pub, "order.created", 0, 5)
	first.wait(t, 5)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	publishN(t, pub, "order.created", 5, 10) // kept for "audit" while it is closed
	if err := node.DeleteSubscription(ctx, "audit"); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	if err := node.DeleteSubscription(ctx, "audit"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting it again: err = %v, want ErrNotFound", err)
	}
	again := &inbox{}
	if _, err := node.Bus().Subscribe("order.*", again, bus.WithSubscriptionName("audit")); err != nil {
		t.Fatal(err)
	}
	waitAttached(t, node, 1)
	publishN(t, pub, "order.created", 10, 12)
	checkSequence(t, again.wait(t, 2), 10, 12) // from "now": not 5..9
	time.Sleep(100 * time.Millisecond)
	if got := len(again.wait(t, 0)); got != 2 {
		t.Errorf("received %d after deleting the position, want 2", got)
	}

	if _, err := node.Bus().Subscribe("order.*", &inbox{}, bus.WithGroup("billing")); err != nil {
		t.Fatal(err)
	}
	waitAttached(t, node, 2)
	if err := node.DeleteGroup(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteGroup of an unknown group: err = %v, want ErrNotFound", err)
	}
}

// TestFastGroupOnTwoFiltersKeepsPublisherOrder: a fast group whose pattern
// ends in ".**" listens on two NATS subjects ("order" and "order.>");
// nats.go ran each subscription on a goroutine of its own, and one
// publisher's "order" and "order.x" signals reached the handler in either
// order. They must arrive in publish order.
func TestFastGroupOnTwoFiltersKeepsPublisherOrder(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		n := startNode(t, Config{Name: "solo", Mode: Fast, Encoding: enc})
		box := &inbox{}
		if _, err := n.Bus().Subscribe("order.**", box, bus.WithGroup("audit"), bus.WithQueueSize(1<<15)); err != nil {
			t.Fatal(err)
		}
		// The queue subscriptions are on the node's main connection, the
		// signals go out on its signal connection: the server must have
		// the subscriptions before the first signal.
		if err := n.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		const count, chunk = 20_000, 64
		ctx := context.Background()
		for i := 0; i < count; i += chunk {
			batch := make([]bus.Signal, min(chunk, count-i))
			for j := range batch {
				batch[j] = bus.Signal{Type: [...]string{"order", "order.x"}[(i+j)%2], Source: "/solo", Subject: strconv.Itoa(i + j)}
			}
			if err := n.Bus().Publish(ctx, batch...); err != nil {
				t.Fatal(err)
			}
		}
		checkSequence(t, box.wait(t, count), 0, count)
		if st := n.Stats(); st.SlowLost != 0 {
			t.Errorf("stats %+v: NATS dropped messages for the group", st)
		}
	})
}

// TestNamedSubscriptionResumesInOrderAfterACrash: a node dies (its
// connection cut, no Close) while signals it was given are still in its
// handler's hands, unacknowledged; it comes back at once, well within the
// ack wait, while signals published after them were stored meanwhile.
// JetStream offers the unacknowledged ones again only once the ack wait
// has passed, and new ones before that: the subscription must still get
// them all in publish order.
func TestNamedSubscriptionResumesInOrderAfterACrash(t *testing.T) {
	ext := startNATS(t, true)
	pub := startNode(t, Config{Name: "pub", NATSURL: ext.ClientURL()})
	cfg := Config{Name: "auditor", NATSURL: ext.ClientURL(), Logger: quietLogger(), BusOptions: []bus.Option{bus.WithLogger(quietLogger())}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, pub, node)
	stuck, reached := make(chan struct{}), make(chan struct{})
	first := &inbox{}
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if s.Subject == "10" {
			close(reached)
			<-stuck // the node dies with #10 to #19 in hand
			return errors.New("the node died")
		}
		return first.Handle(ctx, s)
	})
	if _, err := node.Bus().Subscribe("order.*", handler, bus.WithSubscriptionName("audit")); err != nil {
		t.Fatal(err)
	}
	waitAttached(t, node, 1)
	publishN(t, pub, "order.created", 0, 20)
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("#10 never reached the handler")
	}
	checkSequence(t, first.wait(t, 10), 0, 10)
	node.nc.Close() // the crash: nothing more reaches NATS from it
	t.Cleanup(func() {
		close(stuck)
		closing, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = node.Close(closing) // its connection is gone: only its goroutines end
	})

	publishN(t, pub, "order.created", 20, 30) // while it is down
	again, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	resumed := &inbox{}
	if _, err := again.Bus().Subscribe("order.*", resumed, bus.WithSubscriptionName("audit")); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, resumed.wait(t, 20), 10, 30)
}

// TestMergedFeedKeepsTheSubscriptionLimits: nats.go applies no pending
// limits to the channel subscriptions of a fast group on two subjects, so
// the queue they feed keeps the limits of an asynchronous subscription: a
// message past pendingBytesLimit (or pendingLimit) bytes waiting is
// dropped and counted.
func TestMergedFeedKeepsTheSubscriptionLimits(t *testing.T) {
	lost := 0
	f := &mergedFeed{lost: func(k int) { lost += k }, wake: make(chan struct{}, 1)} // no goroutines: push alone
	big := &nats.Msg{Data: make([]byte, 1<<20)}
	const fit = pendingBytesLimit / (1 << 20)
	for range fit + 3 {
		f.push(big)
	}
	if len(f.queue) != fit || lost != 3 {
		t.Errorf("queued %d and lost %d of %d messages of 1 MiB, want %d and 3", len(f.queue), lost, fit+3, fit)
	}
	f.queue, f.held, f.bytes, lost = nil, 0, 0, 0
	small := &nats.Msg{}
	for range pendingLimit + 2 {
		f.push(small)
	}
	if len(f.queue) != pendingLimit || lost != 2 {
		t.Errorf("queued %d and lost %d empty messages, want %d and 2", len(f.queue), lost, pendingLimit)
	}
}

// TestNamedSubscriptionWithRejectKeepsOrder: a named subscription whose
// queue refuses what it has no room for (overflow Reject) drops it, as the
// bus counts it: offered again later, it would reach the handler after
// signals published after it.
func TestNamedSubscriptionWithRejectKeepsOrder(t *testing.T) {
	n := startNode(t, Config{Name: "rejecting"})
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	box := &inbox{}
	entered := make(chan struct{}, 1)
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return box.Handle(ctx, s)
	})
	if _, err := n.Bus().Subscribe("rj.*", handler, bus.WithSubscriptionName("audit"),
		bus.WithQueueSize(1), bus.WithOverflow(bus.Reject)); err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, n)
	waitAttached(t, n, 1)
	publishN(t, n, "rj.x", 0, 1)
	select { // #0 in the handler, out of the queue
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("#0 did not reach the handler")
	}
	publishN(t, n, "rj.x", 1, 5) // #1 queued, the rest refused
	// Until the consumer has delivered all five and waits for the two
	// the subscription holds: the refused ones were acknowledged.
	consumer, err := n.dur.stream.Consumer(context.Background(), consumerName("sub", n.Name(), "audit"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stream, err := n.dur.stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		info, err := consumer.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.Delivered.Stream == stream.State.LastSeq && info.NumAckPending == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer delivered up to %d of %d, %d unacknowledged: want all, and only the two the subscription holds",
				info.Delivered.Stream, stream.State.LastSeq, info.NumAckPending)
		}
	}
	free()
	handled := len(box.wait(t, 2)) // #0, #1
	// One at a time, each once the one before is handled: a queue of one
	// refuses what comes while it holds another.
	for i := 5; i < 10; i++ {
		publishN(t, n, "rj.x", i, i+1)
		handled = len(box.wait(t, handled+1))
	}
	time.Sleep(time.Second) // what was refused would be offered again in the meantime
	got := box.wait(t, handled)
	if len(got) != handled {
		t.Errorf("handled %d signals, then %d more", handled, len(got)-handled)
	}
	if last := checkIncreasing(t, got); last != 9 {
		t.Errorf("last signal handled #%d, want #9", last)
	}
}

// TestGroupBacklogTheBusRefusesIsParked: a node that joins groups whose
// consumers hold messages stored before the node's own consumer existed
// parks what it refuses of them (a signal over its own data limit, a
// message that is not a CloudEvent), since its own consumer never sees
// them; and parks each once, when two groups of the node hold the same
// backlog, or when a batch comes back whole because another of its
// signals asked for a redelivery, or when the refused signal is stored
// twice. What it takes is delivered.
func TestGroupBacklogTheBusRefusesIsParked(t *testing.T) {
	type member = backlogMember
	for _, tc := range []struct {
		name    string
		members []member
		took    int // signals the members take, of the three small ones
	}{
		{"one group", []member{{"g", "big.*", nil}}, 3},
		{"overlapping groups", []member{{"g1", "big.*", nil}, {"g2", "big.**", nil}}, 6},
		// A queue of one that refuses: the others of the batch ask for a
		// redelivery (with ProtobufBatch the whole batch comes back).
		{"redelivered", []member{{"g", "big.*", []bus.SubscribeOption{bus.WithQueueSize(1), bus.WithOverflow(bus.Reject)}}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachEncoding(t, func(t *testing.T, enc Encoding) {
				testGroupBacklogParked(t, enc, tc.members, tc.took)
			})
		})
	}
}

// backlogMember is a group subscription of testGroupBacklogParked.
type backlogMember struct {
	group, pattern string
	opts           []bus.SubscribeOption
}

func testGroupBacklogParked(t *testing.T, enc Encoding, members []backlogMember, took int) {
	const limit = 1000
	big := startNode(t, Config{Name: "big", Encoding: enc})
	waitDurableReady(t, big)
	nc, parked := watchParked(t, big)
	// The groups' consumers are made, then left with no member.
	for _, m := range members {
		sub, err := big.Bus().Subscribe(m.pattern, &inbox{}, bus.WithGroup(m.group))
		if err != nil {
			t.Fatal(err)
		}
		waitAttached(t, big, 1)
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			big.attached.mu.Lock()
			left := len(big.attached.m)
			big.attached.mu.Unlock()
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the group's member did not detach")
			}
		}
	}
	// The backlog: one Publish (one batch message with ProtobufBatch),
	// and a message that is not a CloudEvent.
	var backlog []bus.Signal
	for _, size := range []int{limit + 1, 10, 10, 10} {
		s, err := bus.NewSignal("big.data", "/big", make([]byte, size), bus.WithDataContentType("application/octet-stream"))
		if err != nil {
			t.Fatal(err)
		}
		backlog = append(backlog, s)
	}
	if err := big.Bus().Publish(context.Background(), backlog...); err != nil {
		t.Fatal(err)
	}
	junk := nats.NewMsg(big.cfg.Prefix + ".big.junk")
	junk.Data = []byte("not a cloudevent")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), junk); err != nil {
		t.Fatal(err)
	}
	// The refused signal stored a second time, as an outbox retry of it
	// alone would store it under a new message id: still one signal.
	again, err := wire.Encode(backlog[0], big.cfg.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	again.Header.Set(nats.MsgIdHdr, "retry-"+backlog[0].ID)
	if _, err := js.PublishMsg(context.Background(), again); err != nil {
		t.Fatal(err)
	}

	joiner := startNode(t, Config{Name: "small", NATSURL: big.ClientURL(), Encoding: enc,
		BusOptions: []bus.Option{bus.WithMaxDataSize(limit)}})
	waitDurableReady(t, joiner)
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	box := &inbox{}
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		<-release
		return box.Handle(ctx, s)
	})
	for _, m := range members {
		if _, err := joiner.Bus().Subscribe(m.pattern, handler, append([]bus.SubscribeOption{bus.WithGroup(m.group)}, m.opts...)...); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // long enough for a refusal's redelivery (250 ms)
	close(release)
	for _, s := range box.wait(t, took) {
		if len(s.Data) != 10 {
			t.Errorf("delivered a signal of %d bytes, want only the small ones", len(s.Data))
		}
	}
	reasons := map[string]int{}
	for deadline := time.Now().Add(10 * time.Second); ; {
		// Until both are parked, then a second more for a second parking.
		wait := 100 * time.Millisecond
		if len(reasons) == 2 {
			wait = time.Second
		}
		m, err := parked.NextMsg(wait)
		if err != nil {
			if len(reasons) == 2 || time.Now().After(deadline) {
				break
			}
			continue
		}
		if m.Header.Get("signalbus-node") != "small" {
			continue // the big node's own consumer parks the junk for itself
		}
		reason := m.Header.Get("signalbus-reason")
		reasons[reason]++
		if reason == wire.ReasonInvalidSignal && len(m.Data) != limit+1 {
			t.Errorf("parked %d bytes as the refused signal, want %d", len(m.Data), limit+1)
		}
	}
	if reasons[wire.ReasonInvalidSignal] != 1 || len(reasons) != 2 {
		t.Errorf("the joining node parked %v, want the refused signal and the junk once each", reasons)
	}
	for reason, count := range reasons {
		if count != 1 {
			t.Errorf("parked %d times with reason %q, want once", count, reason)
		}
	}
	if got := joiner.Stats().Parked; got != 2 {
		t.Errorf("the joining node's Stats().Parked = %d, want 2", got)
	}
}
