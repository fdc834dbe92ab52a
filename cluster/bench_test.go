package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// BenchmarkCrossNode carries 128-byte signals from a publisher on one node
// to a subscription on another, over the two embedded servers' route on
// loopback. "impl=nats" is the baseline, measured first in the same run:
// raw core NATS messages of the same size between two connections, one to
// each server. Each fast-mode sub-benchmark reports its rate as a fraction
// of it ("x-nats").
func BenchmarkCrossNode(b *testing.B) {
	nodes := benchCluster(b, Binary)
	packed := benchCluster(b, ProtobufBatch)
	b.Run("impl=nats", func(b *testing.B) { benchRawNATS(b, nodes) })
	b.Run("impl=floor/enc=binary", func(b *testing.B) { benchFloor(b, nodes, Binary, 1) })
	b.Run("impl=floor/enc=protobuf-batch/batch=64", func(b *testing.B) { benchFloor(b, packed, ProtobufBatch, 64) })
	for _, enc := range []Encoding{Binary, ProtobufBatch} {
		pair := nodes
		if enc == ProtobufBatch {
			pair = packed
		}
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("impl=fast/enc=%s/batch=%d", enc, batch), func(b *testing.B) { benchFast(b, pair, batch) })
		}
		b.Run(fmt.Sprintf("impl=fast/enc=%s/async", enc), func(b *testing.B) { benchFast(b, pair, asyncBatch) })
	}
	// The cost of telemetry.New's SDK (the runs above have none): the
	// binary encoding again, on a pair with it.
	withTelemetry := benchCluster(b, Binary, benchTelemetry(b))
	b.Run("impl=fast/enc=binary/batch=64/telemetry=on", func(b *testing.B) { benchFast(b, withTelemetry, 64) })
	b.Run("impl=fast/enc=binary/async/telemetry=on", func(b *testing.B) { benchFast(b, withTelemetry, asyncBatch) })
}

// asyncBatch makes benchNodeToNode publish one signal per PublishAsync
// call, leaving the batching to the node's pipeline.
const asyncBatch = 0

var natsRate float64

func benchCluster(b *testing.B, enc Encoding, opts ...func(*Config)) []*Node {
	b.Helper()
	start := func(cfg Config) *Node {
		cfg.Mode, cfg.Listen, cfg.ClusterListen, cfg.Logger = Fast, "127.0.0.1:0", "127.0.0.1:0", quietLogger()
		cfg.Encoding = enc
		cfg.BusOptions = []bus.Option{bus.WithLogger(quietLogger())}
		for _, o := range opts {
			o(&cfg)
		}
		n, err := Start(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Close(context.Background()) })
		return n
	}
	n0 := start(Config{Name: "b0"})
	n1 := start(Config{Name: "b1", Routes: []string{n0.server.ClusterURL()}})
	deadline := time.Now().Add(20 * time.Second)
	for n0.server.Raw().NumRoutes() == 0 || n1.server.Raw().NumRoutes() == 0 {
		if time.Now().After(deadline) {
			b.Fatal("routes did not form")
		}
		time.Sleep(10 * time.Millisecond)
	}
	nodes := []*Node{n0, n1}
	waitConnected(b, nodes)
	return nodes
}

func benchRawNATS(b *testing.B, nodes []*Node) {
	var got atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	pub, closeLink := rawLink(b, nodes, "raw.bench", func(*nats.Msg) {
		if got.Add(1) == want {
			close(done)
		}
	})
	defer closeLink()
	data := make([]byte, 128)
	b.ResetTimer()
	for range b.N {
		if err := pub.Publish("raw.bench", data); err != nil {
			b.Fatal(err)
		}
	}
	_ = pub.Flush()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatalf("received %d of %d", got.Load(), b.N)
	}
	b.StopTimer()
	natsRate = float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(natsRate, "msgs/s")
}

// floorWindow is how many signals benchFloor lets be on their way.
const floorWindow = 8192

// benchFloor is the least any cross-node delivery of signals in encoding
// enc costs, with none of the node's or the bus's work: ready-made 128-byte
// signals (ids, times and the node's stamps included) encoded as the node
// encodes them (ProtobufBatch: size to a batch message; Binary: one
// message each, the stamps as ce- headers), published with plain nats.go
// from a connection to one server, and decoded into bus.Signal values (a
// batch unchecked, as the node's receiver decodes it) by a plain
// subscriber on the other. No ids made, no validation, no outbox, no loss
// check, no dispatch, no subscription queue, no handler. Its rate, as a
// fraction of the raw NATS baseline (x-nats), bounds what fast mode with
// that encoding can reach on this machine, whatever the node does.
func benchFloor(b *testing.B, nodes []*Node, enc Encoding, size int) {
	want := int64(b.N)
	var got atomic.Int64
	var decodeErr atomic.Pointer[error]
	decodeError := func() string {
		if p := decodeErr.Load(); p != nil {
			return "decode: " + (*p).Error()
		}
		return "no decode error"
	}
	done := make(chan struct{})
	var decoder wire.Decoder
	var events []wire.Event
	// Core NATS has no flow control: a publisher that only encodes outruns
	// a subscriber that decodes, and the server cuts the subscriber off as
	// a slow consumer, losing messages. The publisher waits while
	// floorWindow signals are on their way.
	inFlight := make(chan struct{}, max(1, floorWindow/size))
	pub, closeLink := rawLink(b, nodes, wire.Subject("floor", "floor.bench"), func(m *nats.Msg) {
		var err error
		if enc == Binary {
			events = events[:0]
			var sig bus.Signal
			if sig, err = wire.Decode(m); err == nil {
				events = append(events, wire.Event{Signal: sig})
			}
		} else {
			events, err = decoder.AppendBatchUnchecked(events[:0], m.Data)
		}
		for _, e := range events {
			err = cmp.Or(err, e.Err)
		}
		if err != nil {
			decodeErr.CompareAndSwap(nil, &err)
		}
		<-inFlight
		if got.Add(int64(len(events))) >= want {
			close(done)
		}
		clear(events)
	})
	defer closeLink()
	signals := readySignals(b, "floor.bench", size)
	var seq uint64
	// The stamps as a node writes them: its name, its run (48 random bits
	// in base 36) and its sequence number.
	stamp := func(i int, dst []wire.Attr) []wire.Attr {
		seq++
		return append(dst, wire.Attr{Name: ExtensionNode, Value: "b0"}, wire.Attr{Name: ExtensionInstance, Value: "1x2k9q7zb4"},
			wire.Attr{Name: ExtensionSequence, Value: strconv.FormatUint(seq, 10)})
	}
	var (
		msg   *nats.Msg
		attrs []wire.Attr
		err   error
	)
	stuck := time.After(2 * time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += size {
		k := min(size, b.N-sent)
		if enc == Binary {
			// As the node sends a signal in binary mode: wire.Encode, then
			// its stamps as ce- headers.
			if msg, err = wire.Encode(signals[0], "floor"); err != nil {
				b.Fatal(err)
			}
			attrs = stamp(0, attrs[:0])
			for _, a := range attrs {
				msg.Header["ce-"+a.Name] = []string{a.Value}
			}
		} else if msg, err = wire.EncodePublishedInto(msg, signals[:k], "floor", stamp); err != nil {
			b.Fatal(err)
		}
		select {
		case inFlight <- struct{}{}:
		case <-stuck:
			b.Fatalf("%d of %d sent, %d received: a window of %d on its way for 2 minutes (%s)", sent, b.N, got.Load(), floorWindow, decodeError())
		}
		if err := pub.PublishMsg(msg); err != nil {
			b.Fatal(err)
		}
	}
	_ = pub.Flush()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatalf("received %d of %d (%s)", got.Load(), b.N, decodeError())
	}
	b.StopTimer()
	if p := decodeErr.Load(); p != nil {
		b.Fatalf("decode: %v", *p)
	}
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "signals/s")
	if natsRate > 0 {
		b.ReportMetric(rate/natsRate, "x-nats")
	}
}

// rawLink connects a publisher to the first node's server and a
// subscriber to the second's, subscribes handle to subject (no pending
// limits), and returns the publisher once the subscriber's interest has
// crossed the route, and a func that closes both connections.
func rawLink(b *testing.B, nodes []*Node, subject string, handle nats.MsgHandler) (*nats.Conn, func()) {
	b.Helper()
	pub, err := nats.Connect(nodes[0].ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	sub, err := nats.Connect(nodes[1].ClientURL())
	if err != nil {
		pub.Close()
		b.Fatal(err)
	}
	closeLink := func() {
		pub.Close()
		sub.Close()
	}
	s, err := sub.Subscribe(subject, handle)
	if err != nil {
		closeLink()
		b.Fatal(err)
	}
	_ = s.SetPendingLimits(-1, -1)
	probe, err := sub.SubscribeSync(subject + ".probe")
	if err != nil {
		closeLink()
		b.Fatal(err)
	}
	_ = sub.Flush()
	// Core NATS drops what is published before the subscriber's interest
	// has crossed the route: probe until one arrives. Interest in subject
	// was registered first, so it has crossed too.
	for {
		_ = pub.Publish(subject+".probe", nil)
		_ = pub.Flush()
		if _, err := probe.NextMsg(20 * time.Millisecond); err == nil {
			return pub, closeLink
		}
	}
}

// readySignals returns n 128-byte signals of type typ, made as Publish
// makes them.
func readySignals(b *testing.B, typ string, n int) []bus.Signal {
	b.Helper()
	signals := make([]bus.Signal, n)
	for i := range signals {
		s, err := bus.NewSignal(typ, "/bench", make([]byte, 128), bus.WithDataContentType("application/octet-stream"))
		if err != nil {
			b.Fatal(err)
		}
		signals[i] = s
	}
	return signals
}

func benchFast(b *testing.B, nodes []*Node, batch int) {
	benchNodeToNode(b, nodes[0], nodes[1], "bench.fast", batch, natsRate, "x-nats")
}

// fence sends signals from pub until sub has one. A gap an earlier run
// left in pub's sequence (its last signals lost) is only seen when the
// next signal arrives: after the fence, it has been counted, and a run's
// loss check sees only its own.
func fence(b *testing.B, pub, sub *Node) {
	b.Helper()
	arrived := make(chan struct{}, 1)
	s, err := sub.Bus().Subscribe("bench.fence", bus.HandlerFunc(func(context.Context, bus.Signal) error {
		select {
		case arrived <- struct{}{}:
		default:
		}
		return nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := pub.Bus().Publish(context.Background(), bus.Signal{Type: "bench.fence", Source: "/bench"}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-arrived:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatal("no fence signal arrived")
		}
	}
}

// benchNodeToNode publishes b.N 128-byte signals from pub in batches and
// stops the clock when sub's subscription has handled the last one. It
// reports signals/s, how many arrived out of order (ids increase per
// process), and the rate as a fraction of baseline under ratioUnit.
func benchNodeToNode(b *testing.B, pub, sub *Node, typ string, batch int, baseline float64, ratioUnit string) {
	var got, reordered atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	var last string
	s, err := sub.Bus().Subscribe(typ, bus.HandlerFunc(func(_ context.Context, sig bus.Signal) error {
		if sig.ID <= last {
			reordered.Add(1)
		}
		last = sig.ID
		if got.Add(1) == want {
			close(done)
		}
		return nil
	}), bus.WithQueueSize(8192))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tmpl := bus.Signal{Type: typ, Source: "/bench", Data: make([]byte, 128), DataContentType: "application/octet-stream"}
	publish, size := pub.Bus().Publish, batch
	if batch == asyncBatch {
		publish, size = pub.PublishAsync, 1
	}
	signals := make([]bus.Signal, size)
	fence(b, pub, sub)
	before := sub.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		k := min(size, b.N-sent)
		for i := range k {
			signals[i] = tmpl
		}
		err := publish(context.Background(), signals[:k]...)
		for tries := 0; errors.Is(err, ErrOutboxFull) && tries < 10_000; tries++ {
			time.Sleep(100 * time.Microsecond) // the outbox is full: let it drain
			err = publish(context.Background(), signals[:k]...)
		}
		if err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	// Fast mode is at-most-once: a publisher that outruns the receiving
	// node (NATS drops a slow consumer's messages) loses signals, which
	// the node counts. A run that lost some is no measurement: it stops
	// as soon as every signal is accounted for, or once nothing more has
	// arrived for a second after a counted loss (the node's counters are
	// for its whole life: only what grew since the fence counts), rather
	// than wait out the deadline for signals that will not come.
	deadline := time.Now().Add(2 * time.Minute)
	lastGot, lastProgress := int64(0), time.Now()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(10 * time.Millisecond):
			st := sub.Stats()
			lost, slow := st.Lost-before.Lost, st.SlowLost-before.SlowLost
			received := got.Load()
			if received != lastGot {
				lastGot, lastProgress = received, time.Now()
			}
			if lost+slow > 0 && (received+lost >= want || time.Since(lastProgress) > time.Second) {
				b.Fatalf("received %d of %d; in this run the receiving node counted %d lost and NATS dropped %d messages for it (stats %+v): the publisher outran it",
					received, b.N, lost, slow, st)
			}
			if time.Now().After(deadline) {
				b.Fatalf("received %d of %d (stats %+v)", received, b.N, st)
			}
		}
	}
	b.StopTimer()
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "signals/s")
	b.ReportMetric(float64(reordered.Load()), "reordered")
	if baseline > 0 {
		b.ReportMetric(rate/baseline, ratioUnit)
	}
}
