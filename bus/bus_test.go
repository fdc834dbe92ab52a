package bus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbus/signalbus/bus"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newBus makes a bus that is closed (and drained) when the test ends.
func newBus(t *testing.T, opts ...bus.Option) *bus.Bus {
	t.Helper()
	b, err := bus.New(append([]bus.Option{bus.WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("bus.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func mustSubscribe(t *testing.T, b *bus.Bus, pattern string, h bus.Handler, opts ...bus.SubscribeOption) *bus.Subscription {
	t.Helper()
	s, err := b.Subscribe(pattern, h, opts...)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", pattern, err)
	}
	return s
}

func mustSignal(t testing.TB, typ string, data any, opts ...bus.SignalOption) bus.Signal {
	t.Helper()
	s, err := bus.NewSignal(typ, "/test", data, opts...)
	if err != nil {
		t.Fatalf("NewSignal(%q): %v", typ, err)
	}
	return s
}

// recorder is a handler that keeps what it receives.
type recorder struct {
	mu      sync.Mutex
	signals []bus.Signal
}

func (r *recorder) Handle(_ context.Context, s bus.Signal) error {
	r.mu.Lock()
	r.signals = append(r.signals, s)
	r.mu.Unlock()
	return nil
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.signals))
	for i, s := range r.signals {
		out[i] = s.Type
	}
	return out
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.signals)
}

// waitFor polls cond to a deadline: real goroutines are polled, never slept on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPublishRoutesByPattern(t *testing.T) {
	b := newBus(t)
	var exact, one, many, all recorder
	mustSubscribe(t, b, "order.created", &exact)
	mustSubscribe(t, b, "order.*", &one)
	mustSubscribe(t, b, "order.**", &many)
	s := mustSubscribe(t, b, "**", &all)
	ctx := context.Background()
	for _, typ := range []string{"order", "order.created", "order.paid", "order.line.added", "user.created"} {
		if err := b.Publish(ctx, mustSignal(t, typ, nil)); err != nil {
			t.Fatalf("Publish(%s): %v", typ, err)
		}
	}
	if err := s.Close(); err != nil { // drains "**", which saw every signal last
		t.Fatal(err)
	}
	waitFor(t, "deliveries", func() bool { return exact.len() == 1 && one.len() == 2 && many.len() == 4 })
	for name, tc := range map[string]struct {
		r    *recorder
		want []string
	}{
		"order.created": {&exact, []string{"order.created"}},
		"order.*":       {&one, []string{"order.created", "order.paid"}},
		"order.**":      {&many, []string{"order", "order.created", "order.paid", "order.line.added"}},
		"**":            {&all, []string{"order", "order.created", "order.paid", "order.line.added", "user.created"}},
	} {
		if got := strings.Join(tc.r.types(), ","); got != strings.Join(tc.want, ",") {
			t.Errorf("%s received %s, want %s", name, got, strings.Join(tc.want, ","))
		}
	}
}

func TestPublishFillsWhatAHandBuiltSignalLacks(t *testing.T) {
	b := newBus(t)
	var r recorder
	s := mustSubscribe(t, b, "**", &r)
	before := time.Now()
	if err := b.Publish(context.Background(), bus.Signal{Type: "a.b", Source: "/x"}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	got := r.signals[0]
	if len(got.ID) != 36 || got.ID[14] != '7' {
		t.Errorf("ID = %q, want a UUIDv7", got.ID)
	}
	if got.Time.Before(before) || got.Time.After(time.Now()) {
		t.Errorf("Time = %v, want the publish time", got.Time)
	}
	if got.SpecVersion != "1.0" {
		t.Errorf("SpecVersion = %q, want 1.0", got.SpecVersion)
	}
}

func TestPublishRejectsAnInvalidBatchWhole(t *testing.T) {
	b := newBus(t)
	var r recorder
	s := mustSubscribe(t, b, "**", &r)
	batch := []bus.Signal{
		mustSignal(t, "a.ok", nil),
		{Type: "a.bad", Source: ""},
		mustSignal(t, "a.ok2", nil),
	}
	err := b.Publish(context.Background(), batch...)
	if !errors.Is(err, bus.ErrInvalidSignal) {
		t.Fatalf("Publish = %v, want ErrInvalidSignal", err)
	}
	for _, want := range []string{"signal 1 of 3", "source"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	big := bus.Signal{Type: "a.big", Source: "/x", Data: make([]byte, 11)}
	small, err := bus.New(bus.WithMaxDataSize(10), bus.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if err := small.Publish(context.Background(), big); !errors.Is(err, bus.ErrInvalidSignal) || !strings.Contains(err.Error(), "data") {
		t.Errorf("Publish over WithMaxDataSize = %v, want ErrInvalidSignal naming data", err)
	}
	_ = small.Close(context.Background())
	_ = s.Close()
	if n := r.len(); n != 0 {
		t.Errorf("%d signals of an invalid batch were delivered, want 0", n)
	}
}

func TestSubscribeRejectsBadInput(t *testing.T) {
	b := newBus(t)
	h := bus.HandlerFunc(func(context.Context, bus.Signal) error { return nil })
	cases := []struct {
		name    string
		pattern string
		h       bus.Handler
		opts    []bus.SubscribeOption
		want    error
	}{
		{"empty pattern", "", h, nil, bus.ErrInvalidPattern},
		{"double star pair", "a.**.**", h, nil, bus.ErrInvalidPattern},
		{"nil handler", "a", nil, nil, bus.ErrInvalidOption},
		{"queue size", "a", h, []bus.SubscribeOption{bus.WithQueueSize(0)}, bus.ErrInvalidOption},
		{"max attempts", "a", h, []bus.SubscribeOption{bus.WithRetry(bus.RetryPolicy{MaxAttempts: 0})}, bus.ErrInvalidOption},
		{"jitter", "a", h, []bus.SubscribeOption{bus.WithRetry(bus.RetryPolicy{MaxAttempts: 2, Multiplier: 2, Jitter: 2})}, bus.ErrInvalidOption},
		{"overflow", "a", h, []bus.SubscribeOption{bus.WithOverflow(bus.Overflow(9))}, bus.ErrInvalidOption},
		{"empty name", "a", h, []bus.SubscribeOption{bus.WithSubscriptionName("")}, bus.ErrInvalidOption},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Subscribe(tc.pattern, tc.h, tc.opts...)
			if !errors.Is(err, tc.want) {
				t.Errorf("Subscribe = %v, want %v", err, tc.want)
			}
		})
	}
}

// seqOf reads the sequence number the FIFO tests put in the subject.
func seqOf(t *testing.T, s bus.Signal) int {
	n, err := strconv.Atoi(s.Subject)
	if err != nil {
		t.Errorf("subject %q is not a sequence number", s.Subject)
	}
	return n
}

// TestFIFOThroughRetries publishes 100 000 signals to a subscription whose
// handler fails a random 10 % of first attempts: every signal must be
// handled exactly once, in publish order — a retried signal is never
// overtaken by the ones behind it.
func TestFIFOThroughRetries(t *testing.T) {
	const n = 100_000
	b := newBus(t)
	rng := rand.New(rand.NewPCG(7, 7))
	var (
		next     int // sequence the handler expects to complete next
		failures int
		attempts = map[int]int{}
		errs     []string
	)
	sub := mustSubscribe(t, b, "order.*", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		seq := seqOf(t, s)
		attempts[seq]++
		if attempts[seq] == 1 && rng.IntN(10) == 0 {
			failures++
			return errors.New("transient")
		}
		if seq != next && len(errs) < 5 {
			errs = append(errs, fmt.Sprintf("handled %d, want %d", seq, next))
		}
		next = seq + 1
		return nil
	}), bus.WithRetry(bus.RetryPolicy{MaxAttempts: 3, Multiplier: 1}), bus.WithQueueSize(256))
	ctx := context.Background()
	batch := make([]bus.Signal, 0, 100)
	for i := range n {
		batch = append(batch, bus.Signal{Type: "order.created", Source: "/fifo", Subject: strconv.Itoa(i)})
		if len(batch) == cap(batch) || i%7 == 0 { // mixed batch sizes
			if err := b.Publish(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := b.Publish(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Error(e)
	}
	if next != n {
		t.Errorf("last handled sequence %d, want %d", next-1, n-1)
	}
	if failures < n/20 {
		t.Errorf("only %d first attempts failed; the test meant to fail about %d", failures, n/10)
	}
	for seq, a := range attempts {
		if a > 2 {
			t.Fatalf("signal %d attempted %d times, want at most 2", seq, a)
		}
	}
}

func TestDeadLetterAfterMaxAttempts(t *testing.T) {
	b := newBus(t)
	boom := errors.New("boom")
	var handled atomic.Int32
	type dead struct {
		sig bus.Signal
		dl  bus.DeadLetter
	}
	deadCh := make(chan dead, 2)
	sub := mustSubscribe(t, b, "job.*", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		handled.Add(1)
		if s.Type == "job.permanent" {
			return bus.Permanent(boom)
		}
		return boom
	}),
		bus.WithSubscriptionName("jobs"),
		bus.WithRetry(bus.RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Microsecond, MaxBackoff: time.Millisecond, Multiplier: 2}),
		bus.WithDeadLetter(bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			dl, ok := bus.DeadLetterFromContext(ctx)
			if !ok {
				t.Error("dead-letter handler ctx has no DeadLetter")
			}
			deadCh <- dead{s, dl}
			return nil
		})))
	want := mustSignal(t, "job.run", nil)
	if err := b.Publish(context.Background(), want, mustSignal(t, "job.permanent", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	got := <-deadCh
	if got.sig.ID != want.ID || got.dl.Attempts != 4 || !errors.Is(got.dl.Err, boom) || got.dl.Subscription != "jobs" {
		t.Errorf("dead letter = %s %+v, want %s after 4 attempts with boom from jobs", got.sig.ID, got.dl, want.ID)
	}
	perm := <-deadCh
	if perm.dl.Attempts != 1 || !bus.IsPermanent(perm.dl.Err) {
		t.Errorf("permanent failure dead-lettered after %d attempts (%v), want 1", perm.dl.Attempts, perm.dl.Err)
	}
	if n := handled.Load(); n != 5 {
		t.Errorf("handler ran %d times, want 4 + 1", n)
	}
}

// TestRetryBackoffSchedule checks, on synctest's fake clock, that attempts
// are spaced by the policy: 100 ms, then 200 ms, then capped at 300 ms.
func TestRetryBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := bus.New(bus.WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var at []time.Duration
		sub := mustSubscribe(t, b, "x", bus.HandlerFunc(func(context.Context, bus.Signal) error {
			at = append(at, time.Since(start))
			return errors.New("fail")
		}), bus.WithRetry(bus.RetryPolicy{MaxAttempts: 4, InitialBackoff: 100 * time.Millisecond,
			MaxBackoff: 300 * time.Millisecond, Multiplier: 2}))
		if err := b.Publish(context.Background(), mustSignal(t, "x", nil)); err != nil {
			t.Fatal(err)
		}
		_ = sub.Close()
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond}
		if fmt.Sprint(at) != fmt.Sprint(want) {
			t.Errorf("attempts at %v, want %v", at, want)
		}
	})
}

func TestPanickingHandlerIsRecovered(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	b, err := bus.New(bus.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	var dlErr error
	sub := mustSubscribe(t, b, "p.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if s.Type == "p.panic" {
			panic("kaboom")
		}
		return r.Handle(ctx, s)
	}), bus.WithRetry(bus.NoRetry), bus.WithDeadLetter(bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		dl, _ := bus.DeadLetterFromContext(ctx)
		dlErr = dl.Err
		return nil
	})))
	ctx := context.Background()
	if err := b.Publish(ctx, mustSignal(t, "p.panic", nil), mustSignal(t, "p.after", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(dlErr, bus.ErrHandlerPanic) || !strings.Contains(dlErr.Error(), "kaboom") {
		t.Errorf("dead letter error = %v, want ErrHandlerPanic with the value", dlErr)
	}
	if got := r.types(); len(got) != 1 || got[0] != "p.after" {
		t.Errorf("after the panic the subscription handled %v, want [p.after]", got)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "handler panicked") || !strings.Contains(logs.String(), "bus_test.TestPanickingHandlerIsRecovered") {
		t.Errorf("log lacks the panic and its stack:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestCloseDrainsEveryQueue(t *testing.T) {
	b, err := bus.New(bus.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var slow, fast atomic.Int32
	mustSubscribe(t, b, "d.*", bus.HandlerFunc(func(context.Context, bus.Signal) error {
		if slow.Add(1)%100 == 0 {
			time.Sleep(time.Millisecond)
		}
		return nil
	}), bus.WithQueueSize(n))
	mustSubscribe(t, b, "d.**", bus.HandlerFunc(func(context.Context, bus.Signal) error {
		fast.Add(1)
		return nil
	}), bus.WithQueueSize(n))
	ctx := context.Background()
	for range n {
		if err := b.Publish(ctx, bus.Signal{Type: "d.x", Source: "/d"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if slow.Load() != n || fast.Load() != n {
		t.Errorf("after Close: slow handled %d, fast %d, want %d each", slow.Load(), fast.Load(), n)
	}
	if err := b.Publish(ctx, mustSignal(t, "d.x", nil)); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe("d.*", &recorder{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCloseGivesUpAtItsDeadline(t *testing.T) {
	b, err := bus.New(bus.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var cancelled atomic.Bool
	sub := mustSubscribe(t, b, "stuck", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		close(started)
		<-ctx.Done() // blocks until Close gives up
		cancelled.Store(true)
		return ctx.Err()
	}), bus.WithRetry(bus.NoRetry))
	if err := b.Publish(context.Background(), mustSignal(t, "stuck", nil), mustSignal(t, "stuck", nil)); err != nil {
		t.Fatal(err)
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want DeadlineExceeded", err)
	}
	<-sub.Done()
	if !cancelled.Load() {
		t.Error("handler ctx was not cancelled when Close gave up")
	}
}

func TestOverflowPolicies(t *testing.T) {
	block := make(chan struct{})
	blocking := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	})
	t.Run("block honours ctx", func(t *testing.T) {
		b := newBus(t)
		defer close(block)
		mustSubscribe(t, b, "q", blocking, bus.WithQueueSize(1))
		// The worker takes the first signal and blocks on it, the second
		// fills the queue, the third must wait until ctx ends.
		pub := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			return b.Publish(ctx, mustSignal(t, "q", nil))
		}
		var err error
		for range 3 {
			if err = pub(); err != nil {
				break
			}
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish into a full Block queue = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("reject", func(t *testing.T) {
		b := newBus(t)
		release := make(chan struct{})
		defer close(release)
		inHandler := make(chan struct{}, 1)
		mustSubscribe(t, b, "q", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			inHandler <- struct{}{}
			<-release
			return nil
		}), bus.WithQueueSize(1), bus.WithOverflow(bus.Reject), bus.WithSubscriptionName("rejecting"))
		ctx := context.Background()
		if err := b.Publish(ctx, mustSignal(t, "q", nil)); err != nil {
			t.Fatal(err)
		}
		<-inHandler // the worker holds the first; the queue is empty
		if err := b.Publish(ctx, mustSignal(t, "q", nil)); err != nil {
			t.Fatal(err)
		}
		err := b.Publish(ctx, mustSignal(t, "q", nil))
		if !errors.Is(err, bus.ErrQueueFull) || !strings.Contains(err.Error(), `"rejecting"`) {
			t.Errorf("Publish into a full Reject queue = %v, want ErrQueueFull naming the subscription", err)
		}
	})
	t.Run("drop oldest", func(t *testing.T) {
		b := newBus(t)
		release := make(chan struct{})
		inHandler := make(chan struct{}, 1)
		var r recorder
		sub := mustSubscribe(t, b, "q.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			if s.Type == "q.first" {
				inHandler <- struct{}{}
				<-release
			}
			return r.Handle(ctx, s)
		}), bus.WithQueueSize(2), bus.WithOverflow(bus.DropOldest))
		ctx := context.Background()
		if err := b.Publish(ctx, mustSignal(t, "q.first", nil)); err != nil {
			t.Fatal(err)
		}
		<-inHandler
		for _, typ := range []string{"q.a", "q.b", "q.c", "q.d"} {
			if err := b.Publish(ctx, mustSignal(t, typ, nil)); err != nil {
				t.Fatalf("Publish(%s) = %v; DropOldest never fails", typ, err)
			}
		}
		close(release)
		_ = sub.Close()
		if got := strings.Join(r.types(), ","); got != "q.first,q.c,q.d" {
			t.Errorf("handled %s, want q.first,q.c,q.d (q.a and q.b dropped)", got)
		}
	})
}

func TestSlowSubscriptionDoesNotDelayOthers(t *testing.T) {
	b := newBus(t)
	release := make(chan struct{})
	mustSubscribe(t, b, "s.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}), bus.WithQueueSize(1000))
	var fast recorder
	mustSubscribe(t, b, "s.*", &fast)
	for range 500 {
		if err := b.Publish(context.Background(), mustSignal(t, "s.x", nil)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the fast subscription to get all 500 while the slow one is stuck", func() bool { return fast.len() == 500 })
	close(release)
}

// TestConcurrentPublishersAndChurn runs four publishers against a stable
// subscription while others subscribe and unsubscribe without pause. The
// stable one must see every signal, each publisher's in its order; the race
// detector watches the rest.
func TestConcurrentPublishersAndChurn(t *testing.T) {
	b := newBus(t)
	const publishers, perPublisher = 4, 5000
	var (
		mu   sync.Mutex
		last = map[string]int{}
		bad  []string
		seen int
	)
	stable := mustSubscribe(t, b, "c.**", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		mu.Lock()
		defer mu.Unlock()
		seq := seqOf(t, s)
		if prev, ok := last[s.Source]; ok && seq != prev+1 && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("%s: %d after %d", s.Source, seq, prev))
		}
		last[s.Source] = seq
		seen++
		return nil
	}))
	stop := make(chan struct{})
	var churn sync.WaitGroup
	var churned atomic.Int32
	for c := range 2 {
		churn.Add(1)
		go func() {
			defer churn.Done()
			patterns := []string{"c.*", "c.p0", "**", "c.**.x"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := b.Subscribe(patterns[(i+c)%len(patterns)], bus.HandlerFunc(func(context.Context, bus.Signal) error { return nil }))
				if err != nil {
					t.Error(err)
					return
				}
				if err := s.Close(); err != nil {
					t.Error(err)
				}
				churned.Add(1)
			}
		}()
	}
	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			src := fmt.Sprintf("/p%d", p)
			for i := range perPublisher {
				s := bus.Signal{Type: fmt.Sprintf("c.p%d", p), Source: src, Subject: strconv.Itoa(i)}
				if err := b.Publish(context.Background(), s); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	pubs.Wait()
	close(stop)
	churn.Wait()
	_ = stable.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, e := range bad {
		t.Error(e)
	}
	if seen != publishers*perPublisher {
		t.Errorf("stable subscription saw %d, want %d", seen, publishers*perPublisher)
	}
	if churned.Load() == 0 {
		t.Error("no subscription churned; the test did not test churn")
	}
}

func TestReplayReadsHistoryInOrder(t *testing.T) {
	b := newBus(t, bus.WithHistory(4))
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, typ := range []string{"h.a", "h.b", "x.c", "h.d", "h.e", "h.f"} {
		s := mustSignal(t, typ, nil, bus.WithTime(base.Add(time.Duration(i)*time.Minute)))
		if err := b.Publish(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	err := b.Replay(ctx, "h.*", base.Add(4*time.Minute), bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		got = append(got, s.Type)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	// History keeps the last 4 (x.c h.d h.e h.f); the pattern drops x.c,
	// the time bound h.d.
	if strings.Join(got, ",") != "h.e,h.f" {
		t.Errorf("Replay gave %v, want [h.e h.f]", got)
	}
	stopErr := errors.New("stop")
	err = b.Replay(ctx, "**", time.Time{}, bus.HandlerFunc(func(context.Context, bus.Signal) error { return stopErr }))
	if !errors.Is(err, stopErr) {
		t.Errorf("Replay with a failing handler = %v, want the handler's error", err)
	}
	if err := b.Replay(ctx, "a..b", time.Time{}, &recorder{}); !errors.Is(err, bus.ErrInvalidPattern) {
		t.Errorf("Replay with a bad pattern = %v, want ErrInvalidPattern", err)
	}
	noHistory := newBus(t)
	if err := noHistory.Replay(ctx, "**", time.Time{}, &recorder{}); !errors.Is(err, bus.ErrNoHistory) {
		t.Errorf("Replay without history = %v, want ErrNoHistory", err)
	}
}

func TestPublishMiddleware(t *testing.T) {
	denied := errors.New("denied")
	b := newBus(t, bus.WithPublishMiddleware(
		bus.Enrich(func(_ context.Context, s *bus.Signal) { bus.SetExtension(s, "tenant", "acme") }),
		func(next bus.PublishFunc) bus.PublishFunc {
			return func(ctx context.Context, signals []bus.Signal) error {
				if signals[0].Type == "m.denied" {
					return denied
				}
				return next(ctx, signals)
			}
		},
		bus.Filter(func(_ context.Context, s bus.Signal) bool { return s.Type != "m.dropped" }),
	))
	var r recorder
	sub := mustSubscribe(t, b, "m.*", &r)
	ctx := context.Background()
	callerExt := map[string]any{"origin": "test"}
	orig := bus.Signal{Type: "m.ok", Source: "/m", Extensions: callerExt}
	if err := b.Publish(ctx, orig); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, mustSignal(t, "m.denied", nil)); !errors.Is(err, denied) {
		t.Errorf("Publish through a rejecting middleware = %v, want its error", err)
	}
	if err := b.Publish(ctx, mustSignal(t, "m.dropped", nil)); err != nil {
		t.Errorf("Publish of a filtered signal = %v, want nil", err)
	}
	_ = sub.Close()
	if got := r.types(); len(got) != 1 || got[0] != "m.ok" {
		t.Fatalf("delivered %v, want [m.ok]", got)
	}
	ext := r.signals[0].Extensions
	if ext["tenant"] != "acme" || ext["origin"] != "test" {
		t.Errorf("extensions %v, want tenant=acme and origin=test", ext)
	}
	if _, touched := callerExt["tenant"]; touched || orig.ID != "" {
		t.Errorf("middleware wrote to the caller's signal: ext %v, id %q", callerExt, orig.ID)
	}
}

func TestDispatchMiddleware(t *testing.T) {
	var order []string
	var mu sync.Mutex
	mark := func(name string) bus.Middleware {
		return func(next bus.Handler) bus.Handler {
			return bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return next.Handle(ctx, s)
			})
		}
	}
	b := newBus(t, bus.WithMiddleware(mark("outer"), mark("inner"), bus.Timeout(10*time.Millisecond)))
	sub := mustSubscribe(t, b, "t.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		mu.Lock()
		order = append(order, "handler")
		mu.Unlock()
		if s.Type == "t.slow" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}), bus.WithRetry(bus.NoRetry), bus.WithDeadLetter(bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		dl, _ := bus.DeadLetterFromContext(ctx)
		if !errors.Is(dl.Err, bus.ErrHandlerTimeout) {
			t.Errorf("slow handler failed with %v, want ErrHandlerTimeout", dl.Err)
		}
		return nil
	})))
	if err := b.Publish(context.Background(), mustSignal(t, "t.fast", nil), mustSignal(t, "t.slow", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	if got := strings.Join(order, ","); got != "outer,inner,handler,outer,inner,handler" {
		t.Errorf("middleware ran as %s, want outer,inner,handler twice", got)
	}
}

func TestSubscriptionCloseDrainsAndStopsRouting(t *testing.T) {
	b := newBus(t)
	var r recorder
	sub := mustSubscribe(t, b, "u", &r, bus.WithQueueSize(100))
	for range 50 {
		if err := b.Publish(context.Background(), mustSignal(t, "u", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if n := r.len(); n != 50 {
		t.Errorf("Close returned after %d of 50 queued signals were handled", n)
	}
	if err := b.Publish(context.Background(), mustSignal(t, "u", nil)); err != nil {
		t.Fatal(err)
	}
	if n := r.len(); n != 50 {
		t.Errorf("a closed subscription received a signal (%d)", n)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, opt := range map[string]bus.Option{
		"history":  bus.WithHistory(-1),
		"max data": bus.WithMaxDataSize(0),
		"name":     bus.WithName(""),
		"logger":   bus.WithLogger(nil),
		"mw":       bus.WithMiddleware(nil),
		"pub mw":   bus.WithPublishMiddleware(nil),
	} {
		if _, err := bus.New(opt); !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("%s: New = %v, want ErrInvalidOption", name, err)
		}
	}
}

func TestDeliveryFromContextTellsTheAttempt(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := newBus(t, bus.WithMiddleware(bus.Logging(logger)))
	var seen []bus.Delivery
	sub := mustSubscribe(t, b, "a", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		d, ok := bus.DeliveryFromContext(ctx)
		if !ok {
			t.Error("handler ctx carries no Delivery")
		}
		seen = append(seen, d)
		if d.Attempt < 3 {
			return errors.New("again")
		}
		return nil
	}), bus.WithSubscriptionName("sub-a"), bus.WithRetry(bus.RetryPolicy{MaxAttempts: 3, Multiplier: 1}))
	if err := b.Publish(context.Background(), mustSignal(t, "a", nil)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	want := []bus.Delivery{{"sub-a", 1, 3}, {"sub-a", 2, 3}, {"sub-a", 3, 3}}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("deliveries %v, want %v", seen, want)
	}
	logMu.Lock()
	defer logMu.Unlock()
	wantLogLines(t, logs.String(),
		`"level":"INFO","msg":"handler failed; will retry","subscription":"sub-a","attempt":1`,
		`"level":"INFO","msg":"handler failed; will retry","subscription":"sub-a","attempt":2`,
		`"level":"DEBUG","msg":"handled","subscription":"sub-a","attempt":3`)
}

// wantLogLines checks that logs has one line per want, each containing it.
func wantLogLines(t *testing.T, logs string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), logs)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("log line %d = %s, want it to contain %s", i, lines[i], w)
		}
	}
}

// TestCloseDeadlineStopsRetries: when Close gives up during the wait before
// a retry, the handler is not run again with a cancelled ctx.
func TestCloseDeadlineStopsRetries(t *testing.T) {
	b, err := bus.New(bus.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	failed := make(chan struct{})
	sub := mustSubscribe(t, b, "r", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if calls.Add(1) == 1 {
			close(failed)
		}
		return errors.New("fail")
	}), bus.WithRetry(bus.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Hour, MaxBackoff: time.Hour, Multiplier: 1}))
	if err := b.Publish(context.Background(), mustSignal(t, "r", nil)); err != nil {
		t.Fatal(err)
	}
	<-failed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want DeadlineExceeded", err)
	}
	<-sub.Done()
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1: no retry after Close gave up", n)
	}
}

func TestWantsTellsWhetherDispatchWouldReachAnything(t *testing.T) {
	b := newBus(t)
	if b.Wants("order.created") {
		t.Error("a bus without subscriptions wants order.created")
	}
	sub := mustSubscribe(t, b, "order.*", bus.HandlerFunc(func(context.Context, bus.Signal) error { return nil }))
	mustSubscribe(t, b, "audit.**", bus.HandlerFunc(func(context.Context, bus.Signal) error { return nil }), bus.WithGroup("auditors"))
	for typ, want := range map[string]bool{
		"order.created": true, "order": false, "order.created.late": false,
		"audit": true, "audit.x.y": true, "billing.paid": false,
	} {
		if got := b.Wants(typ); got != want {
			t.Errorf("Wants(%q) = %v, want %v", typ, got, want)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if b.Wants("order.created") {
		t.Error("Wants(order.created) after its only subscription closed")
	}
	if withHistory := newBus(t, bus.WithHistory(10)); !withHistory.Wants("anything") {
		t.Error("a bus with history does not want a signal no subscription matches; its history would miss it")
	}
}

// TestOverflowPoliciesWithBatches publishes batches larger than the room a
// subscription's queue has while its worker is held: the batch is queued
// in runs under one lock while there is room, and the rest must meet the
// policy signal by signal, in order.
func TestOverflowPoliciesWithBatches(t *testing.T) {
	const queueSize, batchSize = 4, 40 // more than one run, more than the room
	batch := func(t *testing.T) []bus.Signal {
		signals := make([]bus.Signal, batchSize)
		for i := range signals {
			signals[i] = mustSignal(t, "q.batch", nil, bus.WithSubject(strconv.Itoa(i)))
		}
		return signals
	}
	// held subscribes h behind a worker that is held on a first signal
	// until release is closed.
	held := func(t *testing.T, b *bus.Bus, h *recorder, opts ...bus.SubscribeOption) (release func()) {
		inHandler, hold := make(chan struct{}), make(chan struct{})
		mustSubscribe(t, b, "q.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			if s.Type == "q.first" {
				close(inHandler)
				<-hold
			}
			return h.Handle(ctx, s)
		}), append([]bus.SubscribeOption{bus.WithQueueSize(queueSize)}, opts...)...)
		if err := b.Publish(context.Background(), mustSignal(t, "q.first", nil)); err != nil {
			t.Fatal(err)
		}
		<-inHandler
		return sync.OnceFunc(func() { close(hold) })
	}
	subjects := func(r *recorder) []int {
		r.mu.Lock()
		defer r.mu.Unlock()
		var out []int
		for _, s := range r.signals {
			if s.Type == "q.batch" {
				out = append(out, seqOf(t, s))
			}
		}
		return out
	}
	span := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}

	t.Run("block waits for room and delivers all in order", func(t *testing.T) {
		b := newBus(t)
		var r recorder
		release := held(t, b, &r)
		defer release()
		// The held worker never makes room: Publish waits until ctx ends,
		// with the first queueSize signals queued.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := b.Publish(ctx, batch(t)...)
		want := fmt.Sprintf("%d of %d signals routed", queueSize, batchSize)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Publish into a held queue = %v, want DeadlineExceeded and %q", err, want)
		}
		release()
		// Now the worker runs: a batch ten times the queue waits for room
		// signal by signal and arrives whole.
		if err := b.Publish(context.Background(), batch(t)...); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		waitFor(t, "the second batch", func() bool { return len(subjects(&r)) == queueSize+batchSize })
		if got, want := subjects(&r), append(span(0, queueSize), span(0, batchSize)...); !slices.Equal(got, want) {
			t.Errorf("handled %v, want %v", got, want)
		}
	})
	t.Run("reject refuses what has no room and keeps the rest in order", func(t *testing.T) {
		b := newBus(t)
		var r, roomy recorder
		release := held(t, b, &r, bus.WithOverflow(bus.Reject))
		defer release()
		mustSubscribe(t, b, "q.batch", &roomy)
		// Refusals do not stop routing: every signal was routed, and
		// those refused are named in the error.
		err := b.Publish(context.Background(), batch(t)...)
		if !errors.Is(err, bus.ErrQueueFull) || strings.Contains(err.Error(), "signals routed") {
			t.Fatalf("Publish = %v, want ErrQueueFull, with no signal unrouted", err)
		}
		release()
		waitFor(t, "the queued signals", func() bool { return len(subjects(&r)) == queueSize && roomy.len() == batchSize })
		if got := subjects(&r); !slices.Equal(got, span(0, queueSize)) {
			t.Errorf("the rejecting subscription handled %v, want the first %d", got, queueSize)
		}
		if got := subjects(&roomy); !slices.Equal(got, span(0, batchSize)) {
			t.Errorf("the subscription with room handled %v, want all %d in order", got, batchSize)
		}
	})
	t.Run("drop oldest keeps the newest in order", func(t *testing.T) {
		b := newBus(t)
		var r recorder
		release := held(t, b, &r, bus.WithOverflow(bus.DropOldest))
		if err := b.Publish(context.Background(), batch(t)...); err != nil {
			t.Fatalf("Publish = %v; DropOldest never fails", err)
		}
		release()
		waitFor(t, "the newest signals", func() bool { return len(subjects(&r)) == queueSize })
		if got := subjects(&r); !slices.Equal(got, span(batchSize-queueSize, batchSize)) {
			t.Errorf("handled %v, want the last %d", got, queueSize)
		}
	})
}

// TestMixedTypeBatchKeepsOrder publishes a batch whose types change every
// few signals (runs of one type are queued together): every subscription
// and the history must still see the batch in publish order.
func TestMixedTypeBatchKeepsOrder(t *testing.T) {
	b := newBus(t, bus.WithHistory(1000))
	var all, onlyA recorder
	mustSubscribe(t, b, "m.*", &all)
	mustSubscribe(t, b, "m.a", &onlyA)
	var signals []bus.Signal
	var wantA []string
	for i := range 100 {
		typ := []string{"m.a", "m.b", "m.c"}[i/7%3]
		signals = append(signals, mustSignal(t, typ, nil, bus.WithSubject(strconv.Itoa(i))))
		if typ == "m.a" {
			wantA = append(wantA, strconv.Itoa(i))
		}
	}
	if err := b.Publish(context.Background(), signals...); err != nil {
		t.Fatal(err)
	}
	subjectsOf := func(signals []bus.Signal) []string {
		out := make([]string, len(signals))
		for i, s := range signals {
			out[i] = s.Subject
		}
		return out
	}
	want := subjectsOf(signals)
	waitFor(t, "every signal", func() bool { return all.len() == len(signals) && onlyA.len() == len(wantA) })
	all.mu.Lock()
	got := subjectsOf(all.signals)
	all.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("m.* handled %v, want %v", got, want)
	}
	onlyA.mu.Lock()
	gotA := subjectsOf(onlyA.signals)
	onlyA.mu.Unlock()
	if !slices.Equal(gotA, wantA) {
		t.Errorf("m.a handled %v, want %v", gotA, wantA)
	}
	var replayed []bus.Signal
	if err := b.Replay(context.Background(), "m.**", time.Time{}, bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
		replayed = append(replayed, s)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if got := subjectsOf(replayed); !slices.Equal(got, want) {
		t.Errorf("Replay gave %v, want %v", got, want)
	}
}

// TestStoppedBatchReachesNoSubscriptionPastTheStop publishes a batch while
// one matching subscription (or group) is held with a full Block queue,
// until ctx ends: routing stops at the first signal, so no other
// subscription may get any signal after it (Publish says they were not
// routed: a caller that publishes them again must not make duplicates),
// and the history holds exactly what routing reached.
func TestStoppedBatchReachesNoSubscriptionPastTheStop(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			b := newBus(t, bus.WithHistory(100))
			var roomy recorder
			roomySub := mustSubscribe(t, b, "z.batch", &roomy)
			in, hold := make(chan struct{}), make(chan struct{})
			opts := []bus.SubscribeOption{bus.WithQueueSize(1)}
			if group {
				opts = append(opts, bus.WithGroup("g"))
			}
			mustSubscribe(t, b, "z.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
				if s.Type == "z.first" {
					close(in)
					<-hold
				}
				return nil
			}), opts...)
			release := sync.OnceFunc(func() { close(hold) })
			defer release()
			ctx := context.Background()
			if err := b.Publish(ctx, mustSignal(t, "z.first", nil)); err != nil {
				t.Fatal(err)
			}
			<-in
			if err := b.Publish(ctx, mustSignal(t, "z.fill", nil)); err != nil { // the queue is full
				t.Fatal(err)
			}
			var batch []bus.Signal
			for i := range 40 {
				batch = append(batch, mustSignal(t, "z.batch", nil, bus.WithSubject(strconv.Itoa(i))))
			}
			short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			err := b.Publish(short, batch...)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "0 of 40 signals routed") {
				t.Fatalf("Publish = %v, want DeadlineExceeded and 0 of 40 signals routed", err)
			}
			release()
			if err := roomySub.Close(); err != nil { // handles what is queued, then stops
				t.Fatal(err)
			}
			var history []bus.Signal
			if err := b.Replay(ctx, "z.batch", time.Time{}, bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
				history = append(history, s)
				return nil
			})); err != nil {
				t.Fatal(err)
			}
			if len(history) != 1 || history[0].Subject != "0" {
				t.Errorf("the history holds %d of the batch, want the one routing reached (0)", len(history))
			}
			if n := roomy.len(); n > len(history) {
				t.Errorf("a subscription got %d signals of the batch; routing reached %d", n, len(history))
			}
		})
	}
}

// TestHandlerReplaysItsOwnSignal: a signal is in the history before any
// handler runs on it, also when it came in a batch.
func TestHandlerReplaysItsOwnSignal(t *testing.T) {
	const batches, size = 50, 16
	b := newBus(t, bus.WithHistory(batches*size))
	var missing, seen atomic.Int64
	mustSubscribe(t, b, "v.x", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		found := false
		if err := b.Replay(ctx, "v.x", time.Time{}, bus.HandlerFunc(func(_ context.Context, r bus.Signal) error {
			found = found || r.ID == s.ID
			return nil
		})); err != nil {
			return err
		}
		if !found {
			missing.Add(1)
		}
		seen.Add(1)
		return nil
	}))
	for range batches {
		signals := make([]bus.Signal, size)
		for i := range signals {
			signals[i] = mustSignal(t, "v.x", nil)
		}
		if err := b.Publish(context.Background(), signals...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every signal handled", func() bool { return seen.Load() == batches*size })
	if n := missing.Load(); n > 0 {
		t.Errorf("%d of %d handlers did not find their signal in the history", n, batches*size)
	}
}

// TestDispatchMixedTypes dispatches a batch whose types change (queued in
// runs of one type): each subscription gets its own type's signals, in
// order, and nothing else.
func TestDispatchMixedTypes(t *testing.T) {
	b := newBus(t)
	var a, c recorder
	mustSubscribe(t, b, "a.x", &a)
	mustSubscribe(t, b, "b.y", &c)
	var signals []bus.Signal
	var wantA, wantB []string
	for i := range 40 {
		typ := []string{"a.x", "b.y"}[i/3%2]
		s := mustSignal(t, typ, nil, bus.WithSubject(strconv.Itoa(i)))
		signals = append(signals, s)
		if typ == "a.x" {
			wantA = append(wantA, s.Subject)
		} else {
			wantB = append(wantB, s.Subject)
		}
	}
	if err := b.Dispatch(context.Background(), signals...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both subscriptions", func() bool { return a.len() == len(wantA) && c.len() == len(wantB) })
	for _, tc := range []struct {
		r    *recorder
		want []string
	}{{&a, wantA}, {&c, wantB}} {
		tc.r.mu.Lock()
		var got []string
		for _, s := range tc.r.signals {
			got = append(got, s.Subject)
		}
		tc.r.mu.Unlock()
		if !slices.Equal(got, tc.want) {
			t.Errorf("got %v, want %v", got, tc.want)
		}
	}
}

// TestSubscriptionMadeDuringABatchGetsTheRest: a batch whose signals wait
// for room one by one sees a subscription made meanwhile, as signals
// published one by one would: it gets every signal routed after it was
// made (here from the fourth on).
func TestSubscriptionMadeDuringABatchGetsTheRest(t *testing.T) {
	b := newBus(t)
	var late recorder
	made := make(chan struct{})
	mustSubscribe(t, b, "n.x", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if s.Subject == "0" {
			mustSubscribe(t, b, "n.x", &late)
			close(made)
		}
		return nil
	}), bus.WithQueueSize(1)) // signal 2 waits until this worker took 1, after it made the subscription
	const n = 40
	var signals []bus.Signal
	for i := range n {
		signals = append(signals, mustSignal(t, "n.x", nil, bus.WithSubject(strconv.Itoa(i))))
	}
	if err := b.Publish(context.Background(), signals...); err != nil {
		t.Fatal(err)
	}
	<-made
	waitFor(t, "the late subscription to get the last signal", func() bool {
		late.mu.Lock()
		defer late.mu.Unlock()
		return len(late.signals) > 0 && late.signals[len(late.signals)-1].Subject == strconv.Itoa(n-1)
	})
	late.mu.Lock()
	defer late.mu.Unlock()
	first, _ := strconv.Atoi(late.signals[0].Subject)
	if first > 3 || len(late.signals) != n-first {
		t.Errorf("the late subscription got %d signals from %d on, want every one from 3 or earlier", len(late.signals), first)
	}
}

// TestGroupMemberClosedDuringABatch: a group member that closes while a
// batch is routed to the group one signal at a time loses the group none
// of the signals: the others take them.
func TestGroupMemberClosedDuringABatch(t *testing.T) {
	b := newBus(t)
	var handled atomic.Int64
	var second *bus.Subscription
	ready := make(chan struct{})
	closed := sync.OnceFunc(func() {
		<-ready
		if err := second.Close(); err != nil {
			t.Error(err)
		}
	})
	mustSubscribe(t, b, "g.x", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		closed()
		handled.Add(1)
		return nil
	}), bus.WithGroup("g"), bus.WithQueueSize(1))
	second = mustSubscribe(t, b, "g.x", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		handled.Add(1)
		return nil
	}), bus.WithGroup("g"), bus.WithQueueSize(1))
	close(ready)
	const n = 200
	var signals []bus.Signal
	for range n {
		signals = append(signals, mustSignal(t, "g.x", nil))
	}
	if err := b.Publish(context.Background(), signals...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every signal handled by a member", func() bool { return handled.Load() == n })
	if err := b.Close(context.Background()); err != nil { // drains: a signal handled twice would show
		t.Fatal(err)
	}
	if got := handled.Load(); got != n {
		t.Errorf("%d handler runs for %d signals", got, n)
	}
}

// TestAppendToDeliveredDataCopies: every subscription shares a signal's
// Data, so an append to it (which Go code does to a slice it only reads)
// must copy it: one handler's append never shows in another's, nor in the
// spare capacity of the publisher's buffer.
func TestAppendToDeliveredDataCopies(t *testing.T) {
	for name, send := range map[string]func(b *bus.Bus, s bus.Signal) error{
		"Publish":  func(b *bus.Bus, s bus.Signal) error { return b.Publish(context.Background(), s) },
		"Dispatch": func(b *bus.Bus, s bus.Signal) error { return b.Dispatch(context.Background(), s) },
	} {
		for _, middleware := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/middleware=%v", name, middleware), func(t *testing.T) {
				var opts []bus.Option
				if middleware {
					opts = append(opts, bus.WithPublishMiddleware(bus.Enrich(func(context.Context, *bus.Signal) {})))
				}
				b := newBus(t, opts...)
				aAppended, bAppended := make(chan []byte, 1), make(chan []byte, 1)
				if _, err := b.Subscribe("data.x", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
					aAppended <- append(s.Data, 'A')
					return nil
				})); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Subscribe("data.x", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
					first := <-aAppended // after A's append
					bAppended <- append(s.Data, 'B')
					aAppended <- first
					return nil
				})); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 5, 16)
				copy(buf, "hello")
				if err := send(b, bus.Signal{Type: "data.x", Source: "/t", Data: buf}); err != nil {
					t.Fatal(err)
				}
				gotB := <-bAppended
				gotA := <-aAppended
				if string(gotA) != "helloA" || string(gotB) != "helloB" {
					t.Errorf("handlers' appends read %q and %q, want helloA and helloB", gotA, gotB)
				}
				if spare := buf[:6][5]; spare != 0 {
					t.Errorf("an append wrote %q into the publisher's spare capacity", spare)
				}
			})
		}
	}
}
