package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/natsserver"
)

// BenchmarkDurable carries 128-byte signals from a durable node to another
// through one JetStream server (file store, fsync per write unless
// nosync). "impl=jetstream" is the baseline, measured first in the same
// run: raw JetStream async publishes of the same size, read by a pull
// consumer on a second connection. Each durable sub-benchmark reports its
// rate as a fraction of it ("x-js"), with dedup and ordering on.
func BenchmarkDurable(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			ctx := context.Background()
			srv, err := natsserver.Start(ctx, natsserver.Options{Name: "bench", Listen: "127.0.0.1:0",
				JetStream: true, StoreDir: b.TempDir(), SyncAlways: sync})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
			var jsRate float64
			b.Run("impl=jetstream", func(b *testing.B) { jsRate = benchRawJetStream(b, srv.ClientURL()) })
			for _, enc := range []Encoding{Binary, ProtobufBatch} {
				b.Run(fmt.Sprintf("impl=durable/enc=%s/batch=64", enc), func(b *testing.B) {
					benchDurable(b, srv.ClientURL(), enc, 64, jsRate)
				})
				b.Run(fmt.Sprintf("impl=durable/enc=%s/async", enc), func(b *testing.B) {
					benchDurable(b, srv.ClientURL(), enc, asyncBatch, jsRate)
				})
			}
		})
	}
}

func benchRawJetStream(b *testing.B, url string) float64 {
	ctx := context.Background()
	pubConn, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer pubConn.Close()
	subConn, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer subConn.Close()
	js, _ := jetstream.New(pubConn, jetstream.WithPublishAsyncMaxPending(4096))
	name := fmt.Sprintf("RAW%d", time.Now().UnixNano())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(ctx, name) }()
	subJS, _ := jetstream.New(subConn)
	cons, err := subJS.CreateConsumer(ctx, name, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 8192})
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == want {
			close(done)
		}
	}, jetstream.PullMaxMessages(1024))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	data := make([]byte, 128)
	b.ResetTimer()
	for i := range b.N {
		if _, err := js.PublishAsync(name+".x", data); err != nil {
			b.Fatal(err)
		}
		if i%4096 == 4095 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("consumed %d of %d", got.Load(), b.N)
	}
	b.StopTimer()
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "msgs/s")
	return rate
}

// benchNode starts a durable node on url for a benchmark and waits until
// its stream and consumer exist.
func benchNode(b *testing.B, url, name string, enc Encoding) *Node {
	n, err := Start(context.Background(), Config{Name: name, NATSURL: url, Encoding: enc, Logger: quietLogger(),
		BusOptions: []bus.Option{bus.WithLogger(quietLogger())}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close(context.Background()) })
	<-n.dur.ready
	return n
}

func benchDurable(b *testing.B, url string, enc Encoding, batch int, jsRate float64) {
	suffix := fmt.Sprint(time.Now().UnixNano())
	benchNodeToNode(b, benchNode(b, url, "p"+suffix, enc), benchNode(b, url, "s"+suffix, enc), "bench.durable", batch, jsRate, "x-js")
}
