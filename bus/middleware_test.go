package bus_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
)

func TestRecoverTurnsAPanicIntoAnError(t *testing.T) {
	panicky := bus.HandlerFunc(func(context.Context, bus.Signal) error { panic("kaboom") })
	// Outside a bus: the panic is an error the caller can test for.
	err := bus.Recover()(panicky).Handle(context.Background(), mustSignal(t, "r.x", nil))
	if !errors.Is(err, bus.ErrHandlerPanic) || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("Recover()(panicking).Handle = %v, want ErrHandlerPanic with the value", err)
	}
	fine := bus.HandlerFunc(func(context.Context, bus.Signal) error { return nil })
	if err := bus.Recover()(fine).Handle(context.Background(), mustSignal(t, "r.x", nil)); err != nil {
		t.Fatalf("Recover()(fine).Handle = %v, want nil", err)
	}
	// Inside a bus, further-out middleware sees the panic as an error.
	var (
		mu   sync.Mutex
		seen []error
	)
	see := func(next bus.Handler) bus.Handler {
		return bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			err := next.Handle(ctx, s)
			mu.Lock()
			seen = append(seen, err)
			mu.Unlock()
			return err
		})
	}
	b := newBus(t, bus.WithMiddleware(see, bus.Recover()))
	sub := mustSubscribe(t, b, "r.*", panicky, bus.WithRetry(bus.NoRetry))
	if err := b.Publish(context.Background(), mustSignal(t, "r.x", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || !errors.Is(seen[0], bus.ErrHandlerPanic) {
		t.Errorf("outer middleware saw %v, want one ErrHandlerPanic", seen)
	}
}

func TestPublishLogging(t *testing.T) {
	var (
		logs bytes.Buffer
		mu   sync.Mutex
	)
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	refused := errors.New("refused")
	b := newBus(t, bus.WithPublishMiddleware(bus.PublishLogging(logger),
		func(next bus.PublishFunc) bus.PublishFunc {
			return func(ctx context.Context, signals []bus.Signal) error {
				if signals[0].Type == "l.refused" {
					return refused
				}
				return next(ctx, signals)
			}
		}))
	ok := mustSignal(t, "l.ok", nil)
	if err := b.Publish(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), mustSignal(t, "l.refused", nil), mustSignal(t, "l.refused", nil)); !errors.Is(err, refused) {
		t.Fatalf("Publish = %v, want the middleware's error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	wantLogLines(t, logs.String(),
		"level=DEBUG msg=published signal_id="+ok.ID+" type=l.ok source=/test",
		"level=WARN msg=\"publish failed\" count=2 first_type=l.refused error=refused")
}

func TestWithPropagatorWritesWhatItPropagates(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	member, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(trace.ContextWithSpanContext(context.Background(), sc), bag)
	for _, tc := range []struct {
		name        string
		opts        []bus.Option
		wantBaggage bool
	}{
		{"default: W3C trace context only", nil, false},
		{"trace context and baggage", []bus.Option{bus.WithPropagator(propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{}))}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t, tc.opts...)
			var r recorder
			sub := mustSubscribe(t, b, "p.x", &r)
			if err := b.Publish(ctx, mustSignal(t, "p.x", nil)); err != nil {
				t.Fatal(err)
			}
			_ = sub.Close()
			if r.len() != 1 {
				t.Fatalf("handled %d signals, want 1", r.len())
			}
			ext := r.signals[0].Extensions
			if tp, _ := ext["traceparent"].(string); !strings.Contains(tp, sc.TraceID().String()) {
				t.Errorf("traceparent %q does not carry the trace %s", tp, sc.TraceID())
			}
			got, has := ext["baggage"]
			if has != tc.wantBaggage || (has && got != "tenant=acme") {
				t.Errorf("baggage extension = %v (present %v), want present %v with tenant=acme", got, has, tc.wantBaggage)
			}
		})
	}
}
