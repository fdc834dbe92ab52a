package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/natsserver"
)

// startNATS runs a standalone nats-server, as an operator's external NATS
// would be, for nodes that join it by URL.
func startNATS(t *testing.T, jetStream bool) *natsserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, natsserver.Options{Name: "external", Listen: "127.0.0.1:0",
		JetStream: jetStream, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

func publishN(t *testing.T, n *Node, typ string, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := from; i < to; i++ {
		if err := n.Bus().Publish(ctx, bus.Signal{Type: typ, Source: "/" + n.Name(), Subject: strconv.Itoa(i)}); err != nil {
			t.Fatalf("Publish #%d: %v", i, err)
		}
	}
}

// publishChunked publishes signals #from to #to-1 from n, chunk of them per
// Publish call (one batch, so one message with the batch encoding).
func publishChunked(t *testing.T, n *Node, typ string, from, to, chunk int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := from; i < to; i += chunk {
		batch := make([]bus.Signal, 0, chunk)
		for j := i; j < min(i+chunk, to); j++ {
			batch = append(batch, bus.Signal{Type: typ, Source: "/" + n.Name(), Subject: strconv.Itoa(j)})
		}
		if err := n.Bus().Publish(ctx, batch...); err != nil {
			t.Fatalf("Publish #%d…: %v", i, err)
		}
	}
}

func checkSequence(t *testing.T, got []bus.Signal, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("received %d signals, want %d", len(got), to-from)
	}
	for i, s := range got {
		if s.Subject != strconv.Itoa(from+i) {
			t.Fatalf("signal %d is #%s, want #%d: lost, duplicated or out of order", i, s.Subject, from+i)
		}
	}
}

// checkIncreasing checks that the subjects of got (numbers) increase:
// some may be missing, none duplicated or out of order. It returns the
// last, -1 for none.
func checkIncreasing(t *testing.T, got []bus.Signal) int {
	t.Helper()
	last := -1
	for _, s := range got {
		n, _ := strconv.Atoi(s.Subject)
		if n <= last {
			t.Fatalf("#%d after #%d: duplicated or out of order", n, last)
		}
		last = n
	}
	return last
}

func TestDurableStandaloneDeliversInOrder(t *testing.T) {
	n := startNode(t, Config{Name: "d1"})
	box := &inbox{}
	if _, err := n.Bus().Subscribe("job.*", box); err != nil {
		t.Fatal(err)
	}
	// Publish returns only once the stream has stored each signal; the
	// node's consumer starts from "now", so wait until it exists.
	waitDurableReady(t, n)
	publishN(t, n, "job.run", 0, 1000)
	checkSequence(t, box.wait(t, 1000), 0, 1000)
	time.Sleep(50 * time.Millisecond) // a duplicate would arrive right behind
	if got := len(box.wait(t, 1000)); got != 1000 {
		t.Errorf("received %d, want exactly 1000", got)
	}
}

func waitDurableReady(t *testing.T, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		select {
		case <-n.dur.ready:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: JetStream stream and consumer not ready", n.Name())
		}
	}
}

// TestDurableNodeResumesAfterRestart: a node that was down receives, once
// restarted with the same name, what was published meanwhile, in order,
// and nothing it had already handled.
func TestDurableNodeResumesAfterRestart(t *testing.T) {
	ext := startNATS(t, true)
	pub := startNode(t, Config{Name: "pub", NATSURL: ext.ClientURL()})
	subCfg := Config{Name: "sub", NATSURL: ext.ClientURL(), Logger: quietLogger(),
		BusOptions: []bus.Option{bus.WithLogger(quietLogger())}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := Start(ctx, subCfg)
	if err != nil {
		t.Fatal(err)
	}
	first := &inbox{}
	if _, err := sub.Bus().Subscribe("order.*", first); err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, pub, sub)
	publishN(t, pub, "order.created", 0, 100)
	checkSequence(t, first.wait(t, 100), 0, 100)
	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}

	publishN(t, pub, "order.created", 100, 250) // while "sub" is down

	again, err := Start(ctx, subCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	second := &inbox{}
	if _, err := again.Bus().Subscribe("order.*", second); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, second.wait(t, 150), 100, 250)
}

// TestDurableDeduplicatesByID: a re-published signal id is dropped by the
// stream (Nats-Msg-Id) within its window, and one that reaches the stream
// under another message id is dropped by the node's own window.
func TestDurableDeduplicatesByID(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	n := startNode(t, Config{Name: "d1", MeterProvider: mp})
	box := &inbox{}
	if _, err := n.Bus().Subscribe("dup.*", box); err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, n)
	ctx := context.Background()
	sig, _ := bus.NewSignal("dup.x", "/d", nil)
	for range 3 {
		if err := n.Bus().Publish(ctx, sig); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	raw := nats.NewMsg("signals.dup.x")
	raw.Header["ce-specversion"] = []string{"1.0"}
	raw.Header["ce-id"] = []string{sig.ID}
	raw.Header["ce-source"] = []string{"/elsewhere"}
	raw.Header["ce-type"] = []string{"dup.x"}
	raw.Header[nats.MsgIdHdr] = []string{"another-msg-id"}
	if _, err := js.PublishMsg(raw); err != nil {
		t.Fatal(err)
	}
	after, _ := bus.NewSignal("dup.y", "/d", nil)
	if err := n.Bus().Publish(ctx, after); err != nil {
		t.Fatal(err)
	}
	got := box.wait(t, 2)
	if len(got) != 2 || got[0].ID != sig.ID || got[1].ID != after.ID {
		t.Fatalf("received %d signals (%v), want the duplicate once then the next", len(got), got)
	}
	if hits := n.Stats().DedupHits; hits != 1 {
		t.Errorf("DedupHits = %d, want 1 (the copy under another message id)", hits)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var metricHits int64 = -1
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "signalbus.dedup.hits" {
				metricHits = m.Data.(metricdata.Sum[int64]).DataPoints[0].Value
			}
		}
	}
	if metricHits != 1 {
		t.Errorf("signalbus.dedup.hits = %d, want 1", metricHits)
	}
}

func TestDurablePublishFailsWhenNoStream(t *testing.T) {
	ext := startNATS(t, false) // no JetStream: the stream can never exist
	n := startNode(t, Config{Name: "d1", NATSURL: ext.ClientURL()})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := n.Bus().Publish(ctx, bus.Signal{Type: "x", Source: "/x"})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish without a stream = %v, want ErrUnavailable wrapping the deadline", err)
	}
}

// TestCloseKeepsToItsDeadlineWithAStuckHandler: a handler that never
// returns fills its subscription's queue, and the node's delivery waits
// for room (the Block policy). Close must still return once its ctx ends,
// with the ctx's error, not wait for the handler.
func TestCloseKeepsToItsDeadlineWithAStuckHandler(t *testing.T) {
	// Not startNode, whose cleanup wants Close to succeed.
	start, cancelStart := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStart()
	n, err := Start(start, Config{Name: "stuck", Listen: "127.0.0.1:0", Logger: quietLogger(), BusOptions: []bus.Option{bus.WithLogger(quietLogger())}})
	if err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	entered := make(chan struct{}, 2)
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-stuck
		return nil
	})
	if _, err := n.Bus().Subscribe("stuck.*", handler, bus.WithQueueSize(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Bus().Subscribe("stuck.*", handler, bus.WithQueueSize(1), bus.WithSubscriptionName("audit")); err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, n)
	waitAttached(t, n, 1)
	publishN(t, n, "stuck.x", 0, 10)
	for range 2 {
		select {
		case <-entered:
		case <-time.After(20 * time.Second):
			t.Fatal("the handlers were not called")
		}
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		closed <- n.Close(ctx)
	}()
	select {
	case err := <-closed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v, want its ctx's deadline exceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close with a 1 s ctx had not returned after 30 s: it waits for the stuck handler")
	}
}

// TestParkedOnceForgetsTheOldestPastItsBound: what the node parked is
// remembered, so a second consumer or a redelivery does not park it
// again, up to maxParkedKept entries, the oldest forgotten first.
func TestParkedOnceForgetsTheOldestPastItsBound(t *testing.T) {
	s := newParkedOnce()
	first := parkKey{seq: 1, index: -1}
	if !s.first(first) {
		t.Fatal("the first parking of a message is not new")
	}
	if s.first(first) {
		t.Fatal("a second parking of the same message is new")
	}
	if !s.first(parkKey{seq: 1, index: 0}) || !s.first(parkKey{seq: 1, index: -1, id: "x"}) {
		t.Fatal("another event or signal of the same message is not new")
	}
	for i := range maxParkedKept - 3 { // the bound, with the three above
		if !s.first(parkKey{seq: uint64(i + 2), index: -1}) {
			t.Fatalf("message %d is not new", i+2)
		}
	}
	if s.first(first) {
		t.Fatal("forgot the oldest while within the bound")
	}
	s.first(parkKey{seq: math.MaxUint64, index: -1}) // one past the bound
	if len(s.keys.keys) != maxParkedKept || len(s.keys.ring) != maxParkedKept {
		t.Fatalf("holds %d keys in an order of %d, want %d", len(s.keys.keys), len(s.keys.ring), maxParkedKept)
	}
	if !s.first(first) {
		t.Error("the oldest is still remembered past the bound")
	}
	// A lap of the ring later, each of those is forgotten in its turn.
	for i := range maxParkedKept {
		s.first(parkKey{seq: uint64(i), index: 7})
	}
	if len(s.keys.keys) != maxParkedKept {
		t.Errorf("after a lap: %d keys, want %d", len(s.keys.keys), maxParkedKept)
	}
	for k := range s.keys.keys {
		if k.index != 7 {
			t.Errorf("after a lap of newer ones, %+v is still remembered", k)
		}
	}
	if !s.first(first) || s.first(parkKey{seq: maxParkedKept - 1, index: 7}) {
		t.Error("after a lap: the oldest forgotten, the newest kept: want both")
	}
}

// TestPipeFlushUsesItsArraysAgain checks the own consumer's batching:
// each flush hands batch what was collected, in order; a batch's array,
// emptied (it holds no message it delivered), is filled again two flushes
// later (one array is collected into while the other's batch is handled),
// unless it grew past four batch sizes.
func TestPipeFlushUsesItsArraysAgain(t *testing.T) {
	var got [][]string
	var arrays []*pending
	p := &pipe{dedup: newDedupWindow(64), max: 4}
	p.batch = func(batch []pending) {
		ids := make([]string, len(batch))
		for i, pd := range batch {
			ids[i] = pd.sig.ID
		}
		got = append(got, ids)
		arrays = append(arrays, &batch[0])
	}
	many := strings.Fields("h i j k l m n o p q r s t u v w x") // 17: past 4 × max
	want := [][]string{{"a", "b", "c"}, {"d", "e"}, {"f"}, {"g"}, many, {"y"}, {"z"}}
	for _, batch := range want {
		for _, id := range batch {
			p.collect(pending{sig: bus.Signal{ID: id}})
		}
		p.flush()
		for i, pd := range p.spare[:min(len(batch), cap(p.spare))] {
			if pd.sig.ID != "" {
				t.Fatalf("after its flush the batch's array still holds signal %q at %d", pd.sig.ID, i)
			}
		}
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	if arrays[2] != arrays[0] || arrays[3] != arrays[1] {
		t.Error("the third and fourth batches were not collected into the arrays of the first two")
	}
	if arrays[5] != arrays[3] {
		t.Error("the sixth batch was not collected into the fourth's array")
	}
	if arrays[6] == arrays[4] {
		t.Error("the array of 17 signals (batch size 4) was kept")
	}
}

// TestPipeFlushWhileCollecting runs the own consumer's batching as the
// node does, from several goroutines at once (runBatches and the
// reorderer's timer both collect and flush): no batch changes while batch
// reads it, and every signal is handed on once, in its collector's order.
func TestPipeFlushWhileCollecting(t *testing.T) {
	const collectors, each = 2, 5000
	p := &pipe{dedup: newDedupWindow(64), max: 8}
	var handed []string
	p.batch = func(batch []pending) {
		before := slices.Clone(batch)
		runtime.Gosched() // let the collectors run while this batch is in hand
		for i := range batch {
			if batch[i].sig.ID != before[i].sig.ID {
				t.Errorf("signal %d of a batch changed from %q to %q while it was handed on", i, before[i].sig.ID, batch[i].sig.ID)
				return
			}
		}
		for _, pd := range batch {
			handed = append(handed, pd.sig.ID)
		}
	}
	var wg sync.WaitGroup
	for c := range collectors {
		wg.Go(func() {
			for i := range each {
				p.collect(pending{sig: bus.Signal{ID: fmt.Sprintf("%d-%05d", c, i)}})
				if i%7 == 0 {
					p.flush()
				}
			}
		})
	}
	wg.Go(func() {
		for range each {
			p.flush()
		}
	})
	wg.Wait()
	p.flush()
	if len(handed) != collectors*each {
		t.Fatalf("%d signals handed on, want %d", len(handed), collectors*each)
	}
	last := make([]string, collectors)
	for _, id := range handed {
		c := int(id[0] - '0')
		if id <= last[c] {
			t.Fatalf("collector %d's %q handed on after %q", c, id, last[c])
		}
		last[c] = id
	}
}
