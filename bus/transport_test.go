package bus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// loopback is an in-process Transport: Send hands each batch to every
// bus attached to it, through Dispatch, the way a network transport's
// receiving side would.
type loopback struct {
	mu    sync.Mutex
	buses []*bus.Bus
	sent  [][]bus.Signal
	fail  error
}

func (l *loopback) Send(ctx context.Context, signals []bus.Signal) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.sent = append(l.sent, signals)
	for _, b := range l.buses {
		if err := b.Dispatch(ctx, signals...); err != nil {
			return err
		}
	}
	return nil
}

func TestTransportCarriesPublishes(t *testing.T) {
	tel := newTelemetry(t)
	net := &loopback{}
	a := newBus(t, append(tel.opts, bus.WithTransport(net))...)
	b := newBus(t, append(tel.opts, bus.WithTransport(net))...)
	net.buses = []*bus.Bus{a, b}
	var onA, onB recorder
	subA := mustSubscribe(t, a, "t.*", &onA)
	subB := mustSubscribe(t, b, "t.*", &onB)

	ctx, root := tel.tp.Tracer("test").Start(context.Background(), "root")
	if err := a.Publish(ctx, bus.Signal{Type: "t.x", Source: "/a"}); err != nil {
		t.Fatal(err)
	}
	root.End()
	_ = subA.Close()
	_ = subB.Close()

	if onA.len() != 1 || onB.len() != 1 {
		t.Fatalf("received %d on the publishing bus and %d on the other, want 1 each (through the transport only)", onA.len(), onB.len())
	}
	carried := net.sent[0][0]
	if carried.ID == "" || carried.Time.IsZero() || carried.SpecVersion != "1.0" {
		t.Errorf("the transport got an unfilled signal: %+v", carried)
	}
	if carried.Extensions["traceparent"] == nil {
		t.Error("the transport got no traceparent extension")
	}
	if onB.signals[0].ID != carried.ID {
		t.Errorf("the other bus got id %s, want %s", onB.signals[0].ID, carried.ID)
	}
	sends := tel.ended("send t.x")
	procs := tel.ended("process t.x")
	if len(sends) != 1 || len(procs) != 2 {
		t.Fatalf("spans: %v, want one send and two process", spanNames(tel.spans.Ended()))
	}
	for _, p := range procs {
		if p.Parent().SpanID() != sends[0].SpanContext().SpanID() || p.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Error("a process span on the receiving side is not a child of the publisher's send span")
		}
	}
}

func TestTransportErrorsReachThePublisher(t *testing.T) {
	down := errors.New("link down")
	net := &loopback{fail: down}
	a := newBus(t, bus.WithTransport(net))
	if err := a.Publish(context.Background(), mustSignal(t, "t.x", nil)); !errors.Is(err, down) {
		t.Errorf("Publish = %v, want the transport's error", err)
	}
	if err := a.Publish(context.Background(), bus.Signal{Type: "t..x", Source: "/a"}); !errors.Is(err, bus.ErrInvalidSignal) {
		t.Errorf("Publish of an invalid signal = %v, want ErrInvalidSignal before the transport", err)
	}
	if len(net.sent) != 0 {
		t.Errorf("the transport was handed %d batches, want 0", len(net.sent))
	}
}

func TestDispatchValidatesAndRoutesLocally(t *testing.T) {
	b := newBus(t, bus.WithHistory(10))
	var r recorder
	sub := mustSubscribe(t, b, "d.**", &r)
	ctx := context.Background()
	err := b.Dispatch(ctx, mustSignal(t, "d.ok", nil), bus.Signal{Type: "d.bad", Source: ""})
	if !errors.Is(err, bus.ErrInvalidSignal) {
		t.Fatalf("Dispatch with an invalid signal = %v, want ErrInvalidSignal", err)
	}
	if err := b.Dispatch(ctx, mustSignal(t, "d.ok", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	if r.len() != 1 {
		t.Errorf("delivered %d, want 1 (none of the invalid batch)", r.len())
	}
	var replayed int
	_ = b.Replay(ctx, "**", time.Time{}, bus.HandlerFunc(func(context.Context, bus.Signal) error { replayed++; return nil }))
	if replayed != 1 {
		t.Errorf("history holds %d dispatched signals, want 1", replayed)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Dispatch(ctx, mustSignal(t, "d.ok", nil)); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Dispatch after Close = %v, want ErrClosed", err)
	}
}
