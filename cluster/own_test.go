package cluster

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
)

// TestOwnSignalsDoNotComeBackThroughNATS: a fast node's subscriptions get
// its own signals, in order, exactly as another node decodes them (the
// extension values as the wire carries them, stamps included, the time in
// UTC) and not the publisher's buffers, while its signal connection
// receives none of them back; its history records them.
func TestOwnSignalsDoNotComeBackThroughNATS(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c := startFastClusterEncoded(t, 2, enc, bus.WithHistory(1000))
		local, remote := &inbox{}, &inbox{}
		if _, err := c[0].Bus().Subscribe("own.*", local); err != nil {
			t.Fatal(err)
		}
		if _, err := c[1].Bus().Subscribe("own.*", remote); err != nil {
			t.Fatal(err)
		}
		// waitConnected's last probes may still be on their way: a fence
		// from c[1] comes after them.
		waitFenced(t, c[1], c[0])
		before := c[0].sigs.Stats().InMsgs
		undecoded := c[0].Stats().Undecoded
		const total = 300
		zone := time.FixedZone("+01:00", 3600)
		buf := []byte("original")
		batch := make([]bus.Signal, 0, 30)
		for i := range total {
			batch = append(batch, bus.Signal{Type: "own.x", Source: "/n0", Subject: strconv.Itoa(i),
				Data: buf, DataContentType: "application/octet-stream",
				Extensions: map[string]any{"tenant": "acme", "n": i, "flag": true, "at": time.Date(2026, 1, 2, 3, 4, 5, 0, zone), "raw": buf}})
			if len(batch) == cap(batch) {
				if err := c[0].Bus().Publish(context.Background(), batch...); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
				copy(buf, "mutated!") // the publisher's buffer is its own again once Publish returns
				buf = []byte("original")
			}
		}
		mine, theirs := local.wait(t, total), remote.wait(t, total)
		checkSequence(t, mine, 0, total)
		checkSequence(t, theirs, 0, total)
		for i := range mine {
			if !reflect.DeepEqual(mine[i], theirs[i]) {
				t.Fatalf("signal %d differs:\nhere  %#v\nthere %#v", i, mine[i], theirs[i])
			}
			if string(mine[i].Data) != "original" {
				t.Fatalf("signal %d: data %q; the publisher's later write reached it", i, mine[i].Data)
			}
			if mine[i].Extensions[ExtensionSequence] == nil {
				t.Fatalf("signal %d carries no %s stamp", i, ExtensionSequence)
			}
		}
		time.Sleep(50 * time.Millisecond) // an echo or a duplicate would arrive right behind
		if got := c[0].sigs.Stats().InMsgs - before; got != 0 {
			t.Errorf("the publishing node's signal connection received %d messages; its own should not come back", got)
		}
		if got := len(local.wait(t, total)); got != total {
			t.Errorf("the publishing node's subscription got %d signals, want exactly %d", got, total)
		}
		replayed := &inbox{}
		if err := c[0].Bus().Replay(context.Background(), "own.*", time.Time{}, replayed); err != nil {
			t.Fatal(err)
		}
		checkSequence(t, replayed.wait(t, total), 0, total)
		if st := c[0].Stats(); st.LocalLost != 0 || st.Lost != 0 || st.Undecoded != undecoded {
			t.Errorf("stats %+v, want nothing lost, nothing of its own undecoded (%d before)", st, undecoded)
		}
	})
}

// settled waits until value has not changed for 100 ms, and returns it.
// waitFenced returns once every signal from's signal connection sent before
// the call has reached to: it publishes fences from from until one is
// heard on to, then waits for the last one sent (one connection's
// messages arrive in order).
func waitFenced(t *testing.T, from, to *Node) {
	t.Helper()
	box := &inbox{}
	sub, err := to.Bus().Subscribe("fence.x", box)
	if err != nil {
		t.Fatal(err)
	}
	waitHeard(t, from, box, "fence.x")
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
}

// startFastClusterEncoded is startFastCluster with an encoding.
func startFastClusterEncoded(t *testing.T, size int, enc Encoding, opts ...bus.Option) []*Node {
	t.Helper()
	nodes := []*Node{startNode(t, Config{Name: "n0", Mode: Fast, Encoding: enc, ClusterListen: "127.0.0.1:0", BusOptions: opts})}
	seed := nodes[0].server.ClusterURL()
	for i := 1; i < size; i++ {
		nodes = append(nodes, startNode(t, Config{Name: "n" + strconv.Itoa(i), Mode: Fast, Encoding: enc,
			ClusterListen: "127.0.0.1:0", Routes: []string{seed}, BusOptions: opts}))
	}
	waitConnected(t, nodes)
	return nodes
}

// TestHandlerMayPublishMoreThanItsQueueHolds: a handler that publishes
// signals its own subscription matches, more than that subscription's
// queue holds (Block), does not wait for itself: the node delivers its
// own signals from a goroutine of its own, never inside Publish.
func TestHandlerMayPublishMoreThanItsQueueHolds(t *testing.T) {
	n := startNode(t, Config{Name: "loop", Mode: Fast})
	const fanOut = 20
	box := &inbox{}
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if s.Subject == "root" {
			children := make([]bus.Signal, fanOut)
			for i := range children {
				children[i] = bus.Signal{Type: "loop.x", Source: "/loop", Subject: strconv.Itoa(i)}
			}
			publishCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := n.Bus().Publish(publishCtx, children...); err != nil {
				t.Errorf("Publish from the handler: %v", err)
			}
			return nil
		}
		return box.Handle(ctx, s)
	})
	if _, err := n.Bus().Subscribe("loop.*", handler, bus.WithQueueSize(1)); err != nil {
		t.Fatal(err)
	}
	if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "loop.x", Source: "/loop", Subject: "root"}); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, box.wait(t, fanOut), 0, fanOut)
}

// TestOwnDeliveryDropsAndCountsPastItsLimit: when a node's own
// subscriptions fall further behind than the own-delivery queue holds,
// what does not fit is dropped and counted in Stats.LocalLost, never
// lost silently, and what is delivered stays in order.
func TestOwnDeliveryDropsAndCountsPastItsLimit(t *testing.T) {
	n := startNode(t, Config{Name: "slow", Mode: Fast})
	n.own.mu.Lock()
	n.own.limit = 10
	n.own.mu.Unlock()
	box, release := subscribeHeld(t, n, "slow.*")
	const total = 100
	for i := range total {
		if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "slow.x", Source: "/slow", Subject: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	lost := n.Stats().LocalLost
	if lost == 0 {
		t.Fatalf("no signal counted lost, though %d waited for a handler that took none and the limit is 10", total)
	}
	release()
	got := box.wait(t, total-int(lost))
	waitOwnDrained(t, n)
	got = box.wait(t, len(got))
	if int64(len(got))+lost != total {
		t.Fatalf("delivered %d and counted %d lost, of %d published", len(got), lost, total)
	}
	checkIncreasing(t, got)
	// Once the subscription has caught up, the queue has room again: a
	// run as long as the limit goes through whole.
	for i := range 10 {
		if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "slow.x", Source: "/slow", Subject: strconv.Itoa(total + i)}); err != nil {
			t.Fatal(err)
		}
	}
	again := box.wait(t, len(got)+10)
	checkSequence(t, again[len(got):], total, total+10)
	if now := n.Stats().LocalLost; now != lost {
		t.Errorf("LocalLost went from %d to %d though the subscription had caught up", lost, now)
	}
}

// waitOwnDrained waits until n's own-delivery queue is empty.
func waitOwnDrained(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.own.mu.Lock()
		count := n.own.count
		n.own.mu.Unlock()
		if count == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d own signals still queued", count)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseCountsOwnSignalsItCouldNotDeliver: when Close runs out of time
// while the node's own subscription is stuck, the signals still waiting
// for it are counted lost (Stats.LocalLost), not dropped silently, and the
// own-delivery goroutine has ended when Close returns.
func TestCloseCountsOwnSignalsItCouldNotDeliver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, Config{Name: "stuck", Mode: Fast, Listen: "127.0.0.1:0", Logger: quietLogger(),
		BusOptions: []bus.Option{bus.WithLogger(quietLogger())}})
	if err != nil {
		t.Fatal(err)
	}
	box, release := subscribeHeld(t, n, "stuck.*")
	const total = 50
	for i := range total {
		if err := n.Bus().Publish(ctx, bus.Signal{Type: "stuck.x", Source: "/stuck", Subject: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer closeCancel()
	if err := n.Close(closeCtx); err == nil {
		t.Error("Close returned nil, though its ctx ended with a handler stuck")
	}
	select {
	case <-n.own.done:
	default:
		t.Fatal("the own-delivery goroutine outlived Close")
	}
	release() // the handler returns; the bus's drain has given up
	// The handler had one signal in hand and the subscription's queue
	// one more, which the bus's Close discarded (and counted itself);
	// every other signal is counted lost here. A chunk Dispatch was
	// waiting on when the node stopped counts lost whole, though it may
	// have queued part of it.
	delivered, lost := len(box.wait(t, 1)), n.Stats().LocalLost
	if lost == 0 || int64(delivered)+lost < total-1 {
		t.Errorf("delivered %d, counted %d lost, of %d published: some went missing uncounted", delivered, lost, total)
	}
}

// subscribeHeld subscribes to pattern on n with a queue of one and a
// handler that takes nothing until release is called (at the latest when
// the test ends, so that a failed test does not leave it stuck).
func subscribeHeld(t *testing.T, n *Node, pattern string) (box *inbox, release func()) {
	t.Helper()
	box, held := &inbox{}, make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	t.Cleanup(release)
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		<-held
		return box.Handle(ctx, s)
	})
	if _, err := n.Bus().Subscribe(pattern, handler, bus.WithQueueSize(1)); err != nil {
		t.Fatal(err)
	}
	return box, release
}

// TestReceiverHoldsMoreThanNATSDefaultQueue: a fast node's receiver that
// falls behind keeps up to a million messages waiting, as documented, not
// the 64 Ki that nats.go gives a synchronous subscription by default: at
// one signal per message, 70 000 signals behind a stuck handler all
// arrive once it goes on, none dropped.
func TestReceiverHoldsMoreThanNATSDefaultQueue(t *testing.T) {
	c := startFastClusterEncoded(t, 2, ProtobufBatch)
	box, release := subscribeHeld(t, c[1], "many.*")
	const total = 70_000
	for i := range total {
		if err := c[0].Bus().Publish(context.Background(), bus.Signal{Type: "many.x", Source: "/n0", Subject: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c[0].sigs.Flush(); err != nil {
		t.Fatal(err)
	}
	release()
	deadline := time.Now().Add(60 * time.Second)
	for {
		box.mu.Lock()
		got := len(box.signals)
		box.mu.Unlock()
		if got == total {
			break
		}
		if st := c[1].Stats(); st.SlowLost != 0 || st.Lost != 0 || time.Now().After(deadline) {
			t.Fatalf("received %d of %d; stats %+v", got, total, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkSequence(t, box.wait(t, total), 0, total)
}

// TestDropCountsAddUpEverySubscription: Stats.SlowLost counts every
// message nats.go dropped for any of the node's subscriptions, not the
// count one slow-consumer notice carried (nats.go notifies once per
// episode), and keeps a subscription's drops after it ends.
func TestDropCountsAddUpEverySubscription(t *testing.T) {
	n := startNode(t, Config{Name: "drops", Mode: Fast})
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var d dropCounts
	subs := make([]*nats.Subscription, 2)
	for i := range subs {
		if subs[i], err = nc.SubscribeSync("drops." + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		if err := subs[i].SetPendingLimits(10, -1); err != nil {
			t.Fatal(err)
		}
		d.watch(subs[i])
	}
	if err := nc.Flush(); err != nil { // the subscriptions reach the server before pub publishes
		t.Fatal(err)
	}
	pub, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 100 {
		if err := pub.Publish("drops."+strconv.Itoa(i%2), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has sent them all to nc
		t.Fatal(err)
	}
	want := 0
	for _, s := range subs {
		dropped, err := s.Dropped()
		if err != nil {
			t.Fatal(err)
		}
		want += dropped
	}
	if want < 2*(50-11) {
		t.Fatalf("the subscriptions dropped %d messages in all; the test expected most of 100 over a limit of 10 each", want)
	}
	if got := d.total(); got != int64(want) {
		t.Errorf("total %d, want %d", got, want)
	}
	// Drained, it ends once what it holds is taken.
	for {
		_, err := subs[0].NextMsg(10 * time.Millisecond)
		if err != nil && !errors.Is(err, nats.ErrSlowConsumer) { // a notice, once, of the drops
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.drain(ctx, subs[0]); err != nil {
		t.Fatal(err)
	}
	if subs[0].IsValid() {
		t.Fatal("the drained subscription is still valid")
	}
	if got := d.total(); got != int64(want) {
		t.Errorf("total %d after one subscription ended, want %d still", got, want)
	}
}

// TestOwnSignalsDataAppendCopies: a node's own signal reaches each of its
// subscriptions with the same Data (decoded from the node's copy of the
// message); an append to it by one handler copies it, so another
// handler's append never shows in it.
func TestOwnSignalsDataAppendCopies(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		n := startNode(t, Config{Name: "solo", Mode: Fast, Encoding: enc})
		aAppended, bAppended := make(chan []byte, 1), make(chan []byte, 1)
		if _, err := n.Bus().Subscribe("own.*", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
			aAppended <- append(s.Data, 'A')
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Bus().Subscribe("own.*", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
			first := <-aAppended // after A's append
			bAppended <- append(s.Data, 'B')
			aAppended <- first
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		s, err := bus.NewSignal("own.x", "/t", []byte("hello"), bus.WithDataContentType("text/plain"))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Bus().Publish(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		gotB := <-bAppended
		gotA := <-aAppended
		if string(gotA) != "helloA" || string(gotB) != "helloB" {
			t.Errorf("handlers' appends read %q and %q, want helloA and helloB", gotA, gotB)
		}
	})
}
