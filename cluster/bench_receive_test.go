package cluster

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// BenchmarkReceive measures the receiving side of fast mode alone, in one
// goroutine: a 64-signal ProtobufBatch message as another node sends it,
// decoded, loss-checked and dispatched into one subscription (whose worker
// runs on the other core). ns/op is per signal. Without NATS, the
// publisher and the other node on the same two cores, it is much steadier
// than BenchmarkCrossNode, so a change of a few percent in the receiver's
// own cost shows.
func BenchmarkReceive(b *testing.B) {
	n, err := Start(context.Background(), Config{Name: "receiver", Mode: Fast, Encoding: ProtobufBatch,
		Listen: "127.0.0.1:0", Logger: quietLogger(), BusOptions: []bus.Option{bus.WithLogger(quietLogger())}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close(context.Background()) })
	var handled atomic.Int64
	sub, err := n.Bus().Subscribe("bench.receive", bus.HandlerFunc(func(context.Context, bus.Signal) error {
		handled.Add(1)
		return nil
	}), bus.WithQueueSize(8192))
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()

	const size = 64
	signals := readySignals(b, "bench.receive", size)
	msg, err := wire.EncodePublished(signals, n.cfg.Prefix, func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: ExtensionNode, Value: "sender"}, wire.Attr{Name: ExtensionInstance, Value: "run1"},
			wire.Attr{Name: ExtensionSequence, Value: strconv.Itoa(i + 1)})
	})
	if err != nil {
		b.Fatal(err)
	}
	// A receiver of its own: the node's runs on its NATS subscription.
	hist, err := batchSizeHistogram(n.cfg.MeterProvider.Meter(ScopeName))
	if err != nil {
		b.Fatal(err)
	}
	r := &receiver{n: n, max: n.cfg.BatchSize, tracer: n.cfg.TracerProvider.Tracer(ScopeName),
		prop: propagation.TraceContext{}, batchSize: hist, done: make(chan struct{})}
	msgs := []*nats.Msg{msg}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += size {
		// The same numbers each time: the node forgets the sender's
		// sequence first, or it would drop them as repeated.
		n.gapsMu.Lock()
		n.last.reset()
		n.gapsMu.Unlock()
		r.handle(msgs)
	}
	b.StopTimer()
	want := int64((b.N + size - 1) / size * size)
	deadline := time.Now().Add(time.Minute)
	for handled.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := handled.Load(); got != want {
		b.Fatalf("handled %d of %d", got, want)
	}
	if st := n.Stats(); st.Parked != 0 || st.Lost != 0 {
		b.Fatalf("stats %+v: the benchmark's messages were refused or counted lost", st)
	}
}
