package dispatch_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
)

// fakeEndpoint is an in-memory http.RoundTripper: it counts requests and
// answers with its current status, after waiting on hold when that is set.
// With no network involved, tests run it inside a synctest bubble, where
// OpenFor passes on the fake clock at once.
type fakeEndpoint struct {
	mu       sync.Mutex
	requests int
	status   int
	hold     chan struct{}
}

func (f *fakeEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	f.mu.Lock()
	f.requests++
	code, hold := f.status, f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func (f *fakeEndpoint) set(code int, hold chan struct{}) {
	f.mu.Lock()
	f.status, f.hold = code, hold
	f.mu.Unlock()
}

func (f *fakeEndpoint) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func newFakeWebhook(t *testing.T, f *fakeEndpoint, opts ...dispatch.WebhookOption) *dispatch.Webhook {
	t.Helper()
	opts = append([]dispatch.WebhookOption{dispatch.WithHTTPClient(&http.Client{Transport: f})}, opts...)
	w, err := dispatch.NewWebhook("https://hooks.example.com/orders", opts...)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return w
}

// Outcomes of one Handle call, as the breaker steps below expect them.
const (
	sent    = "sent"    // reached the endpoint, answered 2xx
	failed  = "failed"  // reached the endpoint, answered with an error status
	refused = "refused" // ErrCircuitOpen, not sent
)

func outcomeOf(t *testing.T, err error) string {
	t.Helper()
	switch {
	case err == nil:
		return sent
	case errors.Is(err, dispatch.ErrCircuitOpen):
		if bus.IsPermanent(err) {
			t.Errorf("ErrCircuitOpen marked permanent: %v", err)
		}
		return refused
	case errors.Is(err, dispatch.ErrWebhookStatus):
		return failed
	}
	t.Fatalf("Handle: unexpected error %v", err)
	return ""
}

// TestCircuitBreakerStates walks the breaker through closed → open →
// half-open → open → half-open → closed, on the fake clock.
func TestCircuitBreakerStates(t *testing.T) {
	const openFor = time.Minute
	steps := []struct {
		name         string
		advance      time.Duration // fake time to let pass first
		status       int           // what the endpoint answers
		want         string
		wantRequests int // the endpoint's total so far
	}{
		{"closed: first failure", 0, 500, failed, 1},
		{"closed: success resets the count", 0, 200, sent, 2},
		{"closed: failure 1 of 3", 0, 503, failed, 3},
		{"closed: failure 2 of 3", 0, 429, failed, 4},
		{"closed: failure 3 of 3 opens", 0, 408, failed, 5},
		{"open: refused without sending", 0, 200, refused, 5},
		{"open: still refused just before OpenFor", openFor - time.Second, 200, refused, 5},
		{"half-open: trial fails and reopens", time.Second, 500, failed, 6},
		{"open again: refused", 0, 200, refused, 6},
		{"open again: refused for a full OpenFor", openFor - time.Nanosecond, 200, refused, 6},
		{"half-open: trial succeeds and closes", time.Nanosecond, 200, sent, 7},
		{"closed: sends", 0, 200, sent, 8},
		{"closed: count starts afresh", 0, 500, failed, 9},
		{"closed: a 404 fails the signal but resets the count", 0, 404, failed, 10},
		{"closed: failure 1 of 3 again", 0, 500, failed, 11},
		{"closed: failure 2 of 3", 0, 500, failed, 12},
		{"closed: sends (2 < 3)", 0, 200, sent, 13},
	}
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEndpoint{}
		w := newFakeWebhook(t, f, dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{
			FailureThreshold: 3, OpenFor: openFor, HalfOpenMax: 1,
		}))
		s := newSignal(t, "1")
		for _, st := range steps {
			time.Sleep(st.advance) // fake time: returns at once
			f.set(st.status, nil)
			got := outcomeOf(t, w.Handle(context.Background(), s))
			if got != st.want || f.count() != st.wantRequests {
				t.Fatalf("%s: %s with %d requests, want %s with %d", st.name, got, f.count(), st.want, st.wantRequests)
			}
		}
	})
}

// TestCircuitBreakerHalfOpenMax: while half-open, only HalfOpenMax trials
// are in flight at once; the others are refused.
func TestCircuitBreakerHalfOpenMax(t *testing.T) {
	for _, max := range []int{0, 1, 2} { // 0 means 1
		trials := max
		if trials == 0 {
			trials = 1
		}
		t.Run("HalfOpenMax="+string(rune('0'+max)), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeEndpoint{}
				w := newFakeWebhook(t, f, dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{
					FailureThreshold: 1, OpenFor: time.Second, HalfOpenMax: max,
				}))
				s := newSignal(t, "1")
				f.set(500, nil)
				if got := outcomeOf(t, w.Handle(context.Background(), s)); got != failed {
					t.Fatalf("first call %s, want failed", got)
				}
				time.Sleep(time.Second)
				hold := make(chan struct{})
				f.set(200, hold)
				results := make(chan error, trials)
				for range trials {
					go func() { results <- w.Handle(context.Background(), s) }()
				}
				synctest.Wait() // every trial is waiting on the endpoint
				if got := outcomeOf(t, w.Handle(context.Background(), s)); got != refused {
					t.Errorf("call beyond %d trials: %s, want refused", trials, got)
				}
				close(hold)
				for range trials {
					if err := <-results; err != nil {
						t.Errorf("trial: %v", err)
					}
				}
				if got := f.count(); got != 1+trials {
					t.Errorf("endpoint saw %d requests, want %d", got, 1+trials)
				}
				f.set(200, nil)
				if got := outcomeOf(t, w.Handle(context.Background(), s)); got != sent {
					t.Errorf("after the trials succeeded: %s, want sent (closed)", got)
				}
			})
		})
	}
}

// TestCircuitBreakerTimeoutAndCancel: the webhook's own timeout counts as a
// failure; the caller's ctx ending does not.
func TestCircuitBreakerTimeoutAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEndpoint{}
		w := newFakeWebhook(t, f, dispatch.WithTimeout(time.Second),
			dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{FailureThreshold: 1, OpenFor: time.Minute}))
		s := newSignal(t, "1")
		f.set(200, make(chan struct{})) // never answers

		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- w.Handle(ctx, s) }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Handle with cancelled ctx: %v, want Canceled", err)
		}

		start := time.Now()
		err := w.Handle(context.Background(), s) // times out, on the fake clock
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("Handle: %v after %v, want DeadlineExceeded after 1s", err, time.Since(start))
		}
		if got := outcomeOf(t, w.Handle(context.Background(), s)); got != refused {
			t.Errorf("after a timeout with FailureThreshold 1: %s, want refused", got)
		}
		if got := f.count(); got != 2 {
			t.Errorf("endpoint saw %d requests, want 2", got)
		}
	})
}

// TestCircuitBreakerLateResult: a request sent while closed that fails
// after the breaker opened does not reopen it later or spend a trial.
func TestCircuitBreakerLateResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEndpoint{}
		w := newFakeWebhook(t, f, dispatch.WithTimeout(time.Hour),
			dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{FailureThreshold: 1, OpenFor: time.Minute}))
		s := newSignal(t, "1")
		slow := make(chan struct{})
		f.set(500, slow)
		errc := make(chan error, 1)
		go func() { errc <- w.Handle(context.Background(), s) }() // slow, will fail
		synctest.Wait()
		f.set(500, nil)
		if got := outcomeOf(t, w.Handle(context.Background(), s)); got != failed { // opens
			t.Fatalf("second call: %s, want failed", got)
		}
		time.Sleep(time.Minute) // half-open from now on
		close(slow)
		if got := outcomeOf(t, <-errc); got != failed {
			t.Fatalf("slow call: %s, want failed", got)
		}
		f.set(200, nil)
		if got := outcomeOf(t, w.Handle(context.Background(), s)); got != sent {
			t.Errorf("trial after the late failure: %s, want sent", got)
		}
	})
}

// TestCircuitBreakerRealServer: against a real server, an open breaker
// refuses without a request reaching it.
func TestCircuitBreakerRealServer(t *testing.T) {
	hs := newHookServer(t, status(http.StatusBadGateway))
	w := newWebhook(t, hs, dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{
		FailureThreshold: 3, OpenFor: time.Hour,
	}))
	s := newSignal(t, "1")
	for i := range 3 {
		if got := outcomeOf(t, w.Handle(context.Background(), s)); got != failed {
			t.Fatalf("call %d: %s, want failed", i+1, got)
		}
	}
	for i := range 5 {
		if got := outcomeOf(t, w.Handle(context.Background(), s)); got != refused {
			t.Fatalf("call %d after opening: %s, want refused", i+1, got)
		}
	}
	if n := hs.requests.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
}
