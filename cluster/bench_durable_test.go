package cluster

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/natsserver"
	"github.com/signalbus/signalbus/cluster/internal/wire"
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
			b.Run("impl=floor/enc=binary", func(b *testing.B) { benchJetStreamBinaryFloor(b, srv.ClientURL(), jsRate) })
			for _, enc := range []Encoding{Binary, ProtobufBatch} {
				b.Run(fmt.Sprintf("impl=durable/enc=%s/batch=64", enc), func(b *testing.B) {
					benchDurable(b, srv.ClientURL(), enc, 64, jsRate)
				})
				b.Run(fmt.Sprintf("impl=durable/enc=%s/async", enc), func(b *testing.B) {
					benchDurable(b, srv.ClientURL(), enc, asyncBatch, jsRate)
				})
			}
			// The cost of telemetry.New's SDK (the runs above have none).
			tel := benchTelemetry(b)
			b.Run("impl=durable/enc=binary/batch=64/telemetry=on", func(b *testing.B) {
				benchDurable(b, srv.ClientURL(), Binary, 64, jsRate, tel)
			})
			b.Run("impl=durable/enc=binary/async/telemetry=on", func(b *testing.B) {
				benchDurable(b, srv.ClientURL(), Binary, asyncBatch, jsRate, tel)
			})
		})
	}
}

func benchRawJetStream(b *testing.B, url string) float64 {
	return benchJetStream(b, url, nil)
}

// benchJetStreamBinaryFloor is the least durable mode with the Binary
// encoding costs: benchRawJetStream's publisher and pull consumer, but
// each message a signal in binary mode (its ce- headers and the four
// stamps a durable node writes, Nats-Msg-Id = its id, so the stream
// deduplicates it) made by bus.NewSignal (its id and time, as Publish
// makes them) and wire.Encode, and each one decoded into a bus.Signal by
// wire.Decode on receipt. No outbox, no dedup window, no reordering, no
// dispatch. Its rate as a fraction of the raw baseline (x-js) bounds what
// durable Binary can reach on this machine.
func benchJetStreamBinaryFloor(b *testing.B, url string, jsRate float64) {
	var seq uint64
	rate := benchJetStream(b, url, &jetStreamSignals{
		make: func(subject string) (*nats.Msg, error) {
			s, err := bus.NewSignal("bench.floor", "/bench", make([]byte, 128), bus.WithDataContentType("application/octet-stream"))
			if err != nil {
				return nil, err
			}
			m, err := wire.Encode(s, "unused")
			if err != nil {
				return nil, err
			}
			seq++
			m.Subject = subject
			m.Header["ce-"+ExtensionNode] = []string{"p"}
			m.Header["ce-"+ExtensionInstance] = []string{"1x2k9q7zb4"}
			m.Header["ce-"+ExtensionSequence] = []string{strconv.FormatUint(seq, 10)}
			m.Header["ce-"+ExtensionFloor] = []string{strconv.FormatUint(seq, 10)}
			m.Header[nats.MsgIdHdr] = []string{s.ID}
			return m, nil
		},
		decode: func(m *nats.Msg) error {
			_, err := wire.Decode(m)
			return err
		},
	})
	if jsRate > 0 {
		b.ReportMetric(rate/jsRate, "x-js")
	}
}

// jetStreamSignals makes benchJetStream publish signals instead of bare
// payloads: make gives each message, decode reads each one received.
type jetStreamSignals struct {
	make   func(subject string) (*nats.Msg, error)
	decode func(*nats.Msg) error
}

// benchJetStream publishes b.N messages asynchronously to a new stream
// and reads them with a pull consumer on a second connection, acking each
// one; with sigs nil each is a bare 128-byte payload.
func benchJetStream(b *testing.B, url string, sigs *jetStreamSignals) float64 {
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
	var decodeErr atomic.Pointer[error]
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if sigs != nil {
			if err := sigs.decode(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}); err != nil {
				decodeErr.CompareAndSwap(nil, &err)
			}
		}
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
		if sigs == nil {
			_, err = js.PublishAsync(name+".x", data)
		} else {
			var m *nats.Msg
			if m, err = sigs.make(name + ".x"); err == nil {
				_, err = js.PublishMsgAsync(m)
			}
		}
		if err != nil {
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
	if p := decodeErr.Load(); p != nil {
		b.Fatalf("decode: %v", *p)
	}
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "msgs/s")
	return rate
}

// benchNode starts a durable node on url for a benchmark and waits until
// its stream and consumer exist.
func benchNode(b *testing.B, url, name string, enc Encoding, opts ...func(*Config)) *Node {
	cfg := Config{Name: name, NATSURL: url, Encoding: enc, Logger: quietLogger(),
		BusOptions: []bus.Option{bus.WithLogger(quietLogger())}}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close(context.Background()) })
	<-n.dur.ready
	return n
}

func benchDurable(b *testing.B, url string, enc Encoding, batch int, jsRate float64, opts ...func(*Config)) {
	suffix := fmt.Sprint(time.Now().UnixNano())
	benchNodeToNode(b, benchNode(b, url, "p"+suffix, enc, opts...), benchNode(b, url, "s"+suffix, enc, opts...),
		"bench.durable", batch, jsRate, "x-js")
}
