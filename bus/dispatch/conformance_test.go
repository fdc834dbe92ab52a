package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
)

// observed is what a sink saw of a delivered signal. It holds what every
// adapter passes on: the Logger, for one, logs the data's size only.
type observed struct {
	ID, Type, Source, Subject string
	DataSize                  int
}

func observe(s bus.Signal) observed {
	return observed{ID: s.ID, Type: s.Type, Source: s.Source, Subject: s.Subject, DataSize: len(s.Data)}
}

// adapterUnderTest is one adapter wired to a sink the test can read.
type adapterUnderTest struct {
	handler bus.Handler
	// next waits for the next signal the adapter delivered to its sink.
	next func(t *testing.T) observed
}

// adapters lists every dispatch adapter, each set up with a fresh sink. A
// new adapter gets the conformance suite by adding a row here.
var adapters = []struct {
	name  string
	setup func(t *testing.T) adapterUnderTest
}{
	{"Channel", func(t *testing.T) adapterUnderTest {
		ch := make(chan bus.Signal)
		return adapterUnderTest{
			handler: dispatch.Channel(ch),
			next:    func(t *testing.T) observed { return observe(recv(t, ch)) },
		}
	}},
	{"Logger", func(t *testing.T) adapterUnderTest {
		lines := make(lineWriter, 64)
		return adapterUnderTest{
			handler: dispatch.Logger(slog.New(slog.NewJSONHandler(lines, nil)), slog.LevelInfo),
			next: func(t *testing.T) observed {
				line := decodeLine(t, recv(t, lines))
				return observed{ID: line.Signal.ID, Type: line.Signal.Type, Source: line.Signal.Source,
					Subject: line.Signal.Subject, DataSize: line.Signal.DataSize}
			},
		}
	}},
	{"Webhook", func(t *testing.T) adapterUnderTest {
		hs := newHookServer(t, nil)
		return adapterUnderTest{handler: newWebhook(t, hs), next: hs.nextSignal}
	}},
	{"Webhook/signed+breaker", func(t *testing.T) adapterUnderTest {
		secret := []byte("conformance-secret")
		hs := newHookServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
		})
		h := newWebhook(t, hs, dispatch.WithSecret(secret),
			dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{FailureThreshold: 1, OpenFor: time.Hour}))
		return adapterUnderTest{handler: h, next: func(t *testing.T) observed {
			req := recv(t, hs.got)
			if err := dispatch.VerifySignature(secret, req.header.Get(dispatch.HeaderTimestamp),
				req.header.Get(dispatch.HeaderSignature), req.body, 0, time.Time{}); err != nil {
				t.Errorf("VerifySignature: %v", err)
			}
			return observe(decodeSignal(t, req.body))
		}}
	}},
	{"Forward", func(t *testing.T) adapterUnderTest {
		target := newBus(t, bus.WithName("target"))
		ch := make(chan bus.Signal, 64)
		if _, err := target.Subscribe("order.**", dispatch.Channel(ch)); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		return adapterUnderTest{
			handler: dispatch.Forward(target),
			next:    func(t *testing.T) observed { return observe(recv(t, ch)) },
		}
	}},
}

// TestAdapterConformance runs the same checks against every adapter: a
// direct call delivers and returns nil; a subscription delivers in order
// and closes cleanly; concurrent calls all deliver (run with -race).
func TestAdapterConformance(t *testing.T) {
	for _, a := range adapters {
		t.Run(a.name, func(t *testing.T) {
			t.Run("Handle", func(t *testing.T) {
				u := a.setup(t)
				want := newSignal(t, "1")
				errc := make(chan error, 1)
				// The Channel adapter blocks until its sink is read.
				go func() { errc <- u.handler.Handle(context.Background(), want) }()
				if got := u.next(t); got != observe(want) {
					t.Errorf("delivered %+v, want %+v", got, observe(want))
				}
				if err := recv(t, errc); err != nil {
					t.Errorf("Handle: %v, want nil", err)
				}
			})
			t.Run("Subscription", func(t *testing.T) {
				u := a.setup(t)
				b := newBus(t)
				failed := make(chan bus.DeadLetter, 3)
				_, err := b.Subscribe("order.*", u.handler, bus.WithRetry(bus.NoRetry),
					bus.WithDeadLetter(bus.HandlerFunc(func(ctx context.Context, _ bus.Signal) error {
						dl, _ := bus.DeadLetterFromContext(ctx)
						failed <- dl
						return nil
					})))
				if err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
				want := []bus.Signal{newSignal(t, "1"), newSignal(t, "2"), newSignal(t, "3")}
				if err := b.Publish(context.Background(), want...); err != nil {
					t.Fatalf("Publish: %v", err)
				}
				for i, w := range want {
					if got := u.next(t); got != observe(w) {
						t.Errorf("signal %d: delivered %+v, want %+v", i, got, observe(w))
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				if err := b.Close(ctx); err != nil {
					t.Errorf("Close: %v", err)
				}
				close(failed)
				for dl := range failed {
					t.Errorf("dead letter: %+v", dl)
				}
			})
			t.Run("Concurrent", func(t *testing.T) {
				u := a.setup(t)
				const n = 8
				want := make(map[observed]bool, n)
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for i := range n {
					s := newSignal(t, fmt.Sprint(i))
					want[observe(s)] = true
					wg.Go(func() { errs <- u.handler.Handle(context.Background(), s) })
				}
				for range n {
					got := u.next(t)
					if !want[got] {
						t.Errorf("delivered %+v: not sent, or twice", got)
					}
					delete(want, got)
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Errorf("Handle: %v", err)
					}
				}
			})
		})
	}
}

// lineWriter passes each Write (one log record, for slog's handlers) to
// the test as a line.
type lineWriter chan []byte

func (w lineWriter) Write(p []byte) (int, error) {
	w <- append([]byte(nil), p...)
	return len(p), nil
}

// logLine is one line of the Logger adapter, as its JSON handler writes it.
type logLine struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Signal struct {
		ID       string    `json:"id"`
		Type     string    `json:"type"`
		Source   string    `json:"source"`
		Subject  string    `json:"subject"`
		Time     time.Time `json:"time"`
		DataSize int       `json:"data_size"`
	} `json:"signal"`
	raw map[string]any
}

func decodeLine(t *testing.T, b []byte) logLine {
	t.Helper()
	var l logLine
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("log line %s: %v", b, err)
	}
	if err := json.Unmarshal(b, &l.raw); err != nil {
		t.Fatalf("log line %s: %v", b, err)
	}
	return l
}

// decodeSignal decodes a structured-mode CloudEvent.
func decodeSignal(t *testing.T, body []byte) bus.Signal {
	t.Helper()
	var s bus.Signal
	if err := s.UnmarshalJSON(body); err != nil {
		t.Fatalf("body %s: UnmarshalJSON: %v", body, err)
	}
	return s
}

// nextSignal waits for the next request and decodes its body.
func (hs *hookServer) nextSignal(t *testing.T) observed {
	t.Helper()
	return observe(decodeSignal(t, recv(t, hs.got).body))
}
