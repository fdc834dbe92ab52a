package dispatch_test

import (
	"context"
	"errors"
	"testing"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestForwardDelivers(t *testing.T) {
	source, target := newBus(t, bus.WithName("source")), newBus(t, bus.WithName("target"))
	got := make(chan bus.Signal, 1)
	if _, err := target.Subscribe("order.*", dispatch.Channel(got)); err != nil {
		t.Fatal(err)
	}
	if _, err := source.Subscribe("order.**", dispatch.Forward(target)); err != nil {
		t.Fatal(err)
	}
	want := newSignal(t, "42")
	if err := source.Publish(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	sameSignal(t, recv(t, got), want) // id, time, data, extensions kept
}

// TestForwardContinuesTrace: the target's "send" span is a child of the
// source's "process" span, in the same trace as the original publish.
func TestForwardContinuesTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	source := newBus(t, bus.WithName("source"), bus.WithTracerProvider(tp))
	target := newBus(t, bus.WithName("target"), bus.WithTracerProvider(tp))
	got := make(chan bus.Signal, 1)
	if _, err := target.Subscribe("order.*", dispatch.Channel(got)); err != nil {
		t.Fatal(err)
	}
	if _, err := source.Subscribe("order.*", dispatch.Forward(target)); err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	if err := source.Publish(ctx, newSignal(t, "1")); err != nil {
		t.Fatal(err)
	}
	forwarded := recv(t, got)
	root.End()
	closeCtx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// Close in delivery order, so every span has ended.
	for _, b := range []*bus.Bus{source, target} {
		if err := b.Close(closeCtx); err != nil {
			t.Fatal(err)
		}
	}

	find := func(name, busName string) sdktrace.ReadOnlySpan {
		t.Helper()
		for _, s := range rec.Ended() {
			if s.Name() != name {
				continue
			}
			for _, a := range s.Attributes() {
				if a.Key == attribute.Key("signalbus.bus") && a.Value.AsString() == busName {
					return s
				}
			}
		}
		t.Fatalf("no %q span of bus %s among %d spans", name, busName, len(rec.Ended()))
		return nil
	}
	process := find("process order.created", "source")
	send := find("send order.created", "target")
	if send.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Errorf("target send span's parent = %s, want the source process span %s",
			send.Parent().SpanID(), process.SpanContext().SpanID())
	}
	if send.SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Errorf("target send span in trace %s, want %s", send.SpanContext().TraceID(), root.SpanContext().TraceID())
	}
	// The forwarded signal carries the target's producer context onward.
	tp2, _ := forwarded.Extensions["traceparent"].(string)
	if want := "00-" + root.SpanContext().TraceID().String() + "-" + send.SpanContext().SpanID().String(); len(tp2) < len(want) || tp2[:len(want)] != want {
		t.Errorf("forwarded traceparent %q, want it to start %q", tp2, want)
	}
}

func TestForwardErrors(t *testing.T) {
	cases := []struct {
		name      string
		target    func(t *testing.T) *bus.Bus
		signal    func(t *testing.T) bus.Signal
		want      error
		permanent bool
	}{
		{"target closed", func(t *testing.T) *bus.Bus {
			b := newBus(t)
			if err := b.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			return b
		}, func(t *testing.T) bus.Signal { return newSignal(t, "1") }, bus.ErrClosed, true},
		{"invalid for target", func(t *testing.T) *bus.Bus {
			return newBus(t, bus.WithMaxDataSize(4))
		}, func(t *testing.T) bus.Signal { return newSignal(t, "1") }, bus.ErrInvalidSignal, true},
		{"target queue full", func(t *testing.T) *bus.Bus {
			b := newBus(t)
			started, release := make(chan struct{}, 1), make(chan struct{})
			t.Cleanup(func() { close(release) }) // before the bus's Close
			_, err := b.Subscribe("order.*", bus.HandlerFunc(func(ctx context.Context, _ bus.Signal) error {
				select {
				case started <- struct{}{}:
				default:
				}
				<-release
				return nil
			}), bus.WithQueueSize(1), bus.WithOverflow(bus.Reject))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(context.Background(), newSignal(t, "busy")); err != nil {
				t.Fatal(err)
			}
			recv(t, started) // the worker holds the first signal
			if err := b.Publish(context.Background(), newSignal(t, "queued")); err != nil {
				t.Fatal(err)
			}
			return b
		}, func(t *testing.T) bus.Signal { return newSignal(t, "1") }, bus.ErrQueueFull, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := dispatch.Forward(tc.target(t)).Handle(context.Background(), tc.signal(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Handle: %v, want %v", err, tc.want)
			}
			if got := bus.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tc.permanent)
			}
		})
	}
}

func TestForwardNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Forward(nil) did not panic")
		}
	}()
	dispatch.Forward(nil)
}
