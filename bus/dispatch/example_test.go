package dispatch_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
)

func ExampleChannel() {
	b, err := bus.New()
	if err != nil {
		panic(err)
	}
	orders := make(chan bus.Signal, 1)
	if _, err := b.Subscribe("order.*", dispatch.Channel(orders)); err != nil {
		panic(err)
	}
	sig, err := bus.NewSignal("order.created", "/shop", map[string]int{"total": 42}, bus.WithSubject("A-17"))
	if err != nil {
		panic(err)
	}
	if err := b.Publish(context.Background(), sig); err != nil {
		panic(err)
	}
	got := <-orders
	fmt.Println(got.Type, got.Subject, string(got.Data))
	if err := b.Close(context.Background()); err != nil {
		panic(err)
	}
	// Output: order.created A-17 {"total":42}
}

func ExampleLogger() {
	// Drop the record's own time so the output is the same on every run.
	noTime := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	logger := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime}))
	h := dispatch.Logger(logger, slog.LevelInfo)

	sig, err := bus.NewSignal("order.created", "/shop", map[string]int{"total": 42},
		bus.WithID("0197a4c4-7b1e-7000-8000-000000000001"), bus.WithSubject("A-17"),
		bus.WithTime(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)))
	if err != nil {
		panic(err)
	}
	if err := h.Handle(context.Background(), sig); err != nil {
		panic(err)
	}
	// Output: {"level":"INFO","msg":"signal","signal":{"id":"0197a4c4-7b1e-7000-8000-000000000001","type":"order.created","source":"/shop","subject":"A-17","time":"2025-06-01T12:00:00Z","data_size":12}}
}

func ExampleForward() {
	edge, err := bus.New(bus.WithName("edge"))
	if err != nil {
		panic(err)
	}
	core, err := bus.New(bus.WithName("core"))
	if err != nil {
		panic(err)
	}
	got := make(chan bus.Signal, 1)
	if _, err := core.Subscribe("order.**", dispatch.Channel(got)); err != nil {
		panic(err)
	}
	// Everything about orders on the edge bus goes on to the core bus.
	if _, err := edge.Subscribe("order.**", dispatch.Forward(core)); err != nil {
		panic(err)
	}
	sig, err := bus.NewSignal("order.shipped", "/warehouse", nil)
	if err != nil {
		panic(err)
	}
	if err := edge.Publish(context.Background(), sig); err != nil {
		panic(err)
	}
	fwd := <-got
	fmt.Println(fwd.Type, "reached core, same id:", fwd.ID == sig.ID)
	for _, b := range []*bus.Bus{edge, core} {
		if err := b.Close(context.Background()); err != nil {
			panic(err)
		}
	}
	// Output: order.shipped reached core, same id: true
}

func ExampleNewWebhook() {
	secret := []byte("a secret shared with the receiver")

	// The receiving end: check the signature, then decode the event.
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := dispatch.VerifySignature(secret, r.Header.Get(dispatch.HeaderTimestamp),
			r.Header.Get(dispatch.HeaderSignature), body, 5*time.Minute, time.Now()); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var sig bus.Signal
		if err := sig.UnmarshalJSON(body); err != nil {
			http.Error(w, "not a CloudEvent", http.StatusBadRequest)
			return
		}
		fmt.Println("received", sig.Type, sig.Subject, "as", r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	hook, err := dispatch.NewWebhook(receiver.URL+"/hooks/orders",
		dispatch.WithSecret(secret),
		dispatch.WithTimeout(5*time.Second),
		dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{FailureThreshold: 5, OpenFor: 30 * time.Second}))
	if err != nil {
		panic(err)
	}
	sig, err := bus.NewSignal("order.created", "/shop", map[string]int{"total": 42}, bus.WithSubject("A-17"))
	if err != nil {
		panic(err)
	}
	// A subscription would call Handle; here it is called directly.
	if err := hook.Handle(context.Background(), sig); err != nil {
		panic(err)
	}
	fmt.Println("delivered")
	// Output:
	// received order.created A-17 as application/cloudevents+json; charset=utf-8
	// delivered
}

// A webhook behind a subscription: the subscription retries 5xx, 408 and
// 429 with backoff, and hands signals that fail for good (a 4xx, or every
// attempt spent) to the dead-letter handler, here a Logger.
func ExampleWebhook_Handle() {
	b, err := bus.New()
	if err != nil {
		panic(err)
	}
	hook, err := dispatch.NewWebhook("https://example.com/hooks/orders")
	if err != nil {
		panic(err)
	}
	_, err = b.Subscribe("order.**", hook,
		bus.WithRetry(bus.RetryPolicy{
			MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second,
			Multiplier: 2, Jitter: 0.2,
		}),
		bus.WithDeadLetter(dispatch.Logger(slog.Default(), slog.LevelError)))
	if err != nil {
		panic(err)
	}
	_ = b.Close(context.Background())
}
