package cluster

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
)

// batchSizes returns the signalbus.batch.size data point of one
// messaging.operation.type ("send" or "receive").
func batchSizes(t *testing.T, reader *sdkmetric.ManualReader, op string) metricdata.HistogramDataPoint[int64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "signalbus.batch.size" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[int64]).DataPoints {
				if v, ok := dp.Attributes.Value("messaging.operation.type"); ok && v.AsString() == op {
					return dp
				}
			}
		}
	}
	return metricdata.HistogramDataPoint[int64]{}
}

func manualMeter(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return reader, mp
}

// TestBatchesFlushOnSizeAndClose: with a linger far longer than the test,
// PublishAsync's signals go out in full batches of BatchSize as they fill,
// and Close sends the partial rest at once rather than lingering.
func TestBatchesFlushOnSizeAndClose(t *testing.T) {
	for _, mode := range []Mode{Fast, Durable} {
		t.Run(mode.String(), func(t *testing.T) {
			reader, mp := manualMeter(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := Start(ctx, Config{Name: "b", Mode: mode, Listen: "127.0.0.1:0", BatchSize: 10, BatchLinger: time.Hour,
				MeterProvider: mp, Logger: quietLogger(), BusOptions: []bus.Option{bus.WithLogger(quietLogger())}})
			if err != nil {
				t.Fatal(err)
			}
			box := &inbox{}
			if _, err := n.Bus().Subscribe("batch.*", box); err != nil {
				t.Fatal(err)
			}
			if mode == Durable {
				waitDurableReady(t, n)
			}
			for i := range 25 {
				if err := n.PublishAsync(ctx, bus.Signal{Type: "batch.x", Source: "/b", Subject: strconv.Itoa(i)}); err != nil {
					t.Fatal(err)
				}
			}
			checkSequence(t, box.wait(t, 20)[:20], 0, 20)
			// A batch can be delivered before its ack settles in the
			// outbox: wait for the settling, to a deadline.
			for deadline := time.Now().Add(20 * time.Second); n.out.depth() != 5; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("outbox depth %d after two full batches, want the 5 lingering", n.out.depth())
				}
			}
			if err := n.Close(ctx); err != nil { // would fail at ctx's deadline if Close lingered
				t.Fatal(err)
			}
			checkSequence(t, box.wait(t, 25), 0, 25)
			sent := batchSizes(t, reader, "send")
			lo, _ := sent.Min.Value()
			hi, _ := sent.Max.Value()
			if sent.Count != 3 || sent.Sum != 25 || hi != 10 || lo != 5 {
				t.Errorf("sent batches: count %d, sum %d, min %d, max %d; want 3 batches (10, 10, 5)",
					sent.Count, sent.Sum, lo, hi)
			}
			if got := batchSizes(t, reader, "receive"); got.Sum != 25 {
				t.Errorf("received batches sum to %d signals, want 25", got.Sum)
			}
		})
	}
}

// TestBatchFlushesOnLinger: a partial batch goes out once the linger has
// passed, as one batch.
func TestBatchFlushesOnLinger(t *testing.T) {
	reader, mp := manualMeter(t)
	// A linger long enough that a stalled machine does not split the
	// three publishes across two batches.
	n := startNode(t, Config{Name: "l", Mode: Fast, BatchSize: 100, BatchLinger: 2 * time.Second, MeterProvider: mp})
	box := &inbox{}
	if _, err := n.Bus().Subscribe("batch.*", box); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := n.PublishAsync(context.Background(), bus.Signal{Type: "batch.x", Source: "/l", Subject: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	checkSequence(t, box.wait(t, 3), 0, 3)
	if sent := batchSizes(t, reader, "send"); sent.Count != 1 || sent.Sum != 3 {
		t.Errorf("sent %d batches holding %d signals, want one batch of 3", sent.Count, sent.Sum)
	}
}

// TestConcurrentPublishersShareBatches: synchronous publishers on many
// goroutines each wait for their own signal, but their signals travel in
// shared batches, in each publisher's order.
func TestConcurrentPublishersShareBatches(t *testing.T) {
	reader, mp := manualMeter(t)
	n := startNode(t, Config{Name: "c", BatchSize: 64, BatchLinger: 5 * time.Millisecond, MeterProvider: mp})
	waitDurableReady(t, n)
	const publishers, each = 8, 40
	boxes := make([]*inbox, publishers)
	for p := range boxes {
		boxes[p] = &inbox{}
		if _, err := n.Bus().Subscribe("pub"+strconv.Itoa(p)+".*", boxes[p]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "pub" + strconv.Itoa(p) + ".x", Source: "/c", Subject: strconv.Itoa(i)}); err != nil {
					t.Errorf("publisher %d #%d: %v", p, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, box := range boxes {
		checkSequence(t, box.wait(t, each), 0, each)
	}
	sent := batchSizes(t, reader, "send")
	if sent.Sum != publishers*each || sent.Count >= publishers*each {
		t.Errorf("%d signals went in %d batches; want shared batches (fewer batches than signals)", sent.Sum, sent.Count)
	}
	hi, _ := sent.Max.Value()
	t.Logf("%d signals in %d batches (largest %d)", sent.Sum, sent.Count, hi)
}

// TestBatchSpansLinkEverySignal: a batch's send span, and the receive span
// on the other side, carry messaging.batch.message_count and one link per
// publish in it.
//
// A receive span may end before the publish spans it links: PublishAsync
// ends its span once the outbox holds the signal, and the outbox sends the
// full batch (and the node delivers it to its own subscriptions) on other
// goroutines meanwhile. The recorder lists spans in the order they ended,
// so the links are checked against every publish once all spans are in,
// never against the publishes that happen to precede them in that list;
// holdLastPublish makes that order happen on every run.
func TestBatchSpansLinkEverySignal(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	held := newHoldLastPublish(spans, "2")
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(held))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	n := startNode(t, Config{Name: "s", Mode: Fast, BatchSize: 3, BatchLinger: time.Hour, TracerProvider: tp,
		BusOptions: []bus.Option{bus.WithTracerProvider(tp)}})
	box := &inbox{}
	if _, err := n.Bus().Subscribe("span.*", box); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := n.PublishAsync(context.Background(), bus.Signal{Type: "span.x", Source: "/s", Subject: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	box.wait(t, 3)
	if !held.wasHeld() {
		t.Log("the last publish span ended before a receive span linking it: that order was not exercised")
	}
	publishes := map[string]bool{}
	var batchSend sdktrace.ReadOnlySpan
	var receives []sdktrace.ReadOnlySpan
	receiveLinks := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		clear(publishes)
		batchSend, receives, receiveLinks = nil, nil, 0
		for _, s := range spans.Ended() {
			switch s.Name() {
			case "send span.x":
				publishes[s.SpanContext().SpanID().String()] = true
			case "send":
				batchSend = s
			case "receive":
				receives = append(receives, s)
				receiveLinks += len(s.Links())
			}
		}
		if batchSend != nil && receiveLinks >= 3 && len(publishes) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans: %d publishes, batch send %v, %d receive links", len(publishes), batchSend != nil, receiveLinks)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if receiveLinks != 3 {
		t.Errorf("receive spans have %d links, want 3 (one per publish)", receiveLinks)
	}
	for _, r := range receives {
		for _, l := range r.Links() {
			if !publishes[l.SpanContext.SpanID().String()] {
				t.Errorf("receive span links %v, not a publish", l.SpanContext.SpanID())
			}
		}
	}
	if len(batchSend.Links()) != 3 {
		t.Fatalf("batch send span has %d links, want 3 (one per publish)", len(batchSend.Links()))
	}
	for _, l := range batchSend.Links() {
		if !publishes[l.SpanContext.SpanID().String()] {
			t.Errorf("batch send span links %v, not a publish", l.SpanContext.SpanID())
		}
	}
	found := false
	for _, a := range batchSend.Attributes() {
		if a.Key == "messaging.batch.message_count" && a.Value.AsInt64() == 3 {
			found = true
		}
	}
	if !found {
		t.Errorf("batch send span attributes %v lack messaging.batch.message_count=3", batchSend.Attributes())
	}
}

// holdLastPublish passes spans on to its SpanProcessor, but holds the end
// of the publish span of the signal with the given subject (the one that
// fills the batch) until a receive span linking it has ended, so that the
// receive span is recorded first. It holds it at most holdLimit: were such
// a receive span unable to end first, the publisher would otherwise wait
// for itself.
type holdLastPublish struct {
	sdktrace.SpanProcessor
	subject string

	mu     sync.Mutex
	linked map[trace.SpanID]bool // what the receive spans ended so far link
	wake   chan struct{}         // closed (and replaced) when a receive span ends
	held   bool                  // a receive span linking the held publish span ended first
}

const holdLimit = 10 * time.Second

func newHoldLastPublish(next sdktrace.SpanProcessor, subject string) *holdLastPublish {
	return &holdLastPublish{SpanProcessor: next, subject: subject, linked: map[trace.SpanID]bool{}, wake: make(chan struct{})}
}

func (h *holdLastPublish) OnEnd(s sdktrace.ReadOnlySpan) {
	switch s.Name() {
	case "receive":
		h.SpanProcessor.OnEnd(s)
		h.mu.Lock()
		for _, l := range s.Links() {
			h.linked[l.SpanContext.SpanID()] = true
		}
		close(h.wake)
		h.wake = make(chan struct{})
		h.mu.Unlock()
		return
	case "send span.x":
		for _, a := range s.Attributes() {
			if a.Key == "cloudevents.event_subject" && a.Value.AsString() == h.subject {
				h.waitLinked(s.SpanContext().SpanID())
			}
		}
	}
	h.SpanProcessor.OnEnd(s)
}

// waitLinked waits, at most holdLimit, until a receive span linking id
// has ended.
func (h *holdLastPublish) waitLinked(id trace.SpanID) {
	limit := time.NewTimer(holdLimit)
	defer limit.Stop()
	for {
		h.mu.Lock()
		if h.linked[id] {
			h.held = true
			h.mu.Unlock()
			return
		}
		wake := h.wake
		h.mu.Unlock()
		select {
		case <-wake:
		case <-limit.C:
			return
		}
	}
}

func (h *holdLastPublish) wasHeld() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}
