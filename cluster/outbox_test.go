package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/faultproxy"
)

// TestOutboxHoldsWhileUnreachableAndDrainsInOrder cuts a durable node off
// from NATS (its connection runs through a fault proxy): PublishAsync keeps
// accepting into the outbox up to its size, then refuses with
// ErrOutboxFull; a synchronous Publish fails with ErrUnavailable when its
// ctx ends; once the link is back the outbox drains, in order, and another
// node receives every signal once.
func TestOutboxHoldsWhileUnreachableAndDrainsInOrder(t *testing.T) {
	ext := startNATS(t, true)
	proxy, err := faultproxy.New(context.Background(), "127.0.0.1:0", hostPort(ext.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	pub := startNode(t, Config{Name: "pub", NATSURL: "nats://" + proxy.Addr(), OutboxSize: 150})
	sub := startNode(t, Config{Name: "sub", NATSURL: ext.ClientURL()})
	waitDurableReady(t, pub, sub)
	box := &inbox{}
	if _, err := sub.Bus().Subscribe("out.*", box); err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	ctx := context.Background()
	for i := range 100 {
		if err := pub.PublishAsync(ctx, bus.Signal{Type: "out.x", Source: "/pub", Subject: strconv.Itoa(i)}); err != nil {
			t.Fatalf("PublishAsync #%d while cut off: %v", i, err)
		}
	}
	tooMany := make([]bus.Signal, 60)
	for i := range tooMany {
		tooMany[i] = bus.Signal{Type: "out.x", Source: "/pub", Subject: "overflow"}
	}
	if err := pub.PublishAsync(ctx, tooMany...); !errors.Is(err, ErrOutboxFull) {
		t.Errorf("PublishAsync past OutboxSize = %v, want ErrOutboxFull", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := pub.Bus().Publish(short, bus.Signal{Type: "out.x", Source: "/pub", Subject: "sync"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("synchronous Publish while cut off = %v, want ErrUnavailable", err)
	}
	if d := pub.out.depth(); d != 100 {
		t.Errorf("outbox depth %d, want 100", d)
	}

	proxy.Restore()
	box.wait(t, 100)
	if err := pub.out.waitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a duplicate would arrive right behind
	// The failed synchronous Publish was not acknowledged, which does not
	// mean it was not stored: nats.go keeps what was written while
	// disconnected and sends it on reconnect. It may arrive, once.
	var async []bus.Signal
	syncs := 0
	for _, s := range box.wait(t, 0) {
		if s.Subject == "sync" {
			syncs++
			continue
		}
		async = append(async, s)
	}
	checkSequence(t, async, 0, 100)
	if syncs > 1 {
		t.Errorf("the unacknowledged synchronous signal arrived %d times, want at most once", syncs)
	}
}

func hostPort(url string) string {
	for i := len(url) - 1; i >= 0; i-- {
		if url[i] == '/' {
			return url[i+1:]
		}
	}
	return url
}

// TestWaitClosedPrefersWhatIsDone: a channel already closed wins over an
// ended ctx, so Close with an ended ctx does not report an empty outbox as
// signals not sent.
func TestWaitClosedPrefersWhatIsDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	closed := make(chan struct{})
	close(closed)
	for range 100 { // a select between two ready cases picks at random
		if err := waitClosed(ctx, closed); err != nil {
			t.Fatalf("waitClosed on a closed channel with an ended ctx = %v, want nil", err)
		}
	}
	if err := waitClosed(ctx, make(chan struct{})); !errors.Is(err, context.Canceled) {
		t.Errorf("waitClosed on an open channel with an ended ctx = %v, want context.Canceled", err)
	}
}

// TestOutboxSendsEachSignalOnceInOrderAcrossPartialBatches drives the
// outbox with a scripted send: entries split across batches, a failed
// batch retried signal by signal, asynchronous and synchronous entries
// mixed. Every signal must be sent once, in publish order, and the queue
// must end empty with nothing counted against the async limit.
func TestOutboxSendsEachSignalOnceInOrderAcrossPartialBatches(t *testing.T) {
	cfg := Config{Name: "solo", Mode: Durable, BatchSize: 4, OutboxSize: 100}
	cfg.TracerProvider = tracenoop.NewTracerProvider()
	n := &Node{cfg: cfg, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var (
		mu    sync.Mutex
		sent  []string
		calls int
	)
	gate := make(chan struct{})
	send := func(_ context.Context, batch []bus.Signal) error {
		mu.Lock()
		calls++
		call := calls
		mu.Unlock()
		if call == 1 {
			<-gate // hold the first batch while the rest queues up
		}
		if call == 2 {
			return fmt.Errorf("%w: scripted", ErrUnavailable)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, s := range batch {
			sent = append(sent, s.ID)
		}
		return nil
	}
	o, err := newOutbox(n, send, metricnoop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	entry := func(name string, count int) []bus.Signal {
		signals := make([]bus.Signal, count)
		for i := range signals {
			signals[i].ID = fmt.Sprintf("%s-%d", name, i)
			want = append(want, signals[i].ID)
		}
		return signals
	}
	if err := o.put(entry("a", 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return calls == 1 }) // a is in flight
	if err := o.put(entry("b", 6)); err != nil {
		t.Fatal(err)
	}
	syncDone := make(chan error, 1)
	syncSignals := entry("c", 2)
	go func() { syncDone <- o.Send(context.Background(), syncSignals) }()
	waitFor(t, func() bool { o.mu.Lock(); defer o.mu.Unlock(); return len(o.entries) == 3 })
	if err := o.put(entry("d", 1)); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if err := <-syncDone; err != nil {
		t.Fatalf("synchronous send: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.waitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sent, want) {
		t.Errorf("sent %v, want each once in order: %v", sent, want)
	}
	if d := o.depth(); d != 0 {
		t.Errorf("depth after draining = %d, want 0", d)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
