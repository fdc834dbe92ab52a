package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/natsserver"
)

// BenchmarkPacedLatency publishes b.N signals at a paced 10 000/s from one
// node and reports the end-to-end latency on another (signal time to
// handler start) at the 50th and 99th percentiles, in nanoseconds. Run it
// with a fixed count, e.g. -benchtime 20000x (two seconds of load).
func BenchmarkPacedLatency(b *testing.B) {
	const rate = 10_000
	for _, enc := range []Encoding{Binary, ProtobufBatch} {
		b.Run(fmt.Sprintf("mode=fast/enc=%s", enc), func(b *testing.B) {
			nodes := benchCluster(b, enc)
			pacedLatency(b, nodes[0], nodes[1], rate)
		})
		b.Run(fmt.Sprintf("mode=durable/enc=%s", enc), func(b *testing.B) {
			srv, err := natsserver.Start(context.Background(), natsserver.Options{Name: "lat", Listen: "127.0.0.1:0",
				JetStream: true, StoreDir: b.TempDir(), SyncAlways: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
			suffix := fmt.Sprint(time.Now().UnixNano())
			pacedLatency(b, benchNode(b, srv.ClientURL(), "p"+suffix, enc), benchNode(b, srv.ClientURL(), "s"+suffix, enc), rate)
		})
	}
}

func pacedLatency(b *testing.B, pub, sub *Node, rate int) {
	var mu sync.Mutex
	latencies := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	s, err := sub.Bus().Subscribe("bench.latency", bus.HandlerFunc(func(_ context.Context, sig bus.Signal) error {
		mu.Lock()
		defer mu.Unlock()
		latencies = append(latencies, time.Since(sig.Time))
		if len(latencies) == b.N {
			close(done)
		}
		return nil
	}), bus.WithQueueSize(8192))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Ten signals per millisecond tick: 10 000/s without a timer per signal.
	perTick := max(1, rate/1000)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		<-tick.C
		for range min(perTick, b.N-sent) {
			if err := pub.Bus().Publish(context.Background(), bus.Signal{Type: "bench.latency", Source: "/bench", Data: make([]byte, 128)}); err != nil {
				b.Fatal(err)
			}
			sent++
		}
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("received %d of %d", len(latencies), b.N)
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Nanoseconds()), "p99-ns")
}
