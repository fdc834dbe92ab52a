package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/internal/faultproxy"
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
	o, entry, want := scriptedOutbox(t, Durable, send)
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
	if !slices.Equal(sent, *want) {
		t.Errorf("sent %v, want each once in order: %v", sent, *want)
	}
	if d := o.depth(); d != 0 {
		t.Errorf("depth after draining = %d, want 0", d)
	}
}

// scriptedOutbox makes the outbox of a node of the given mode that sends
// through send, in batches of 4, and entry, which makes count signals with
// the ids name-0, name-1…, adding them to want in the order made.
func scriptedOutbox(t *testing.T, mode Mode, send func(context.Context, []bus.Signal) error) (o *outbox, entry func(name string, count int) []bus.Signal, want *[]string) {
	t.Helper()
	cfg := Config{Name: "solo", Mode: mode, BatchSize: 4, OutboxSize: 100, TracerProvider: tracenoop.NewTracerProvider()}
	n := &Node{cfg: cfg, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	o, err := newOutbox(n, send, nil, metricnoop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	want = new([]string)
	entry = func(name string, count int) []bus.Signal {
		signals := make([]bus.Signal, count)
		for i := range signals {
			signals[i].ID = fmt.Sprintf("%s-%d", name, i)
			*want = append(*want, signals[i].ID)
		}
		return signals
	}
	return o, entry, want
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

// TestOutboxSendsNothingTwiceAfterAPartlyFailedSend scripts sends that
// fail partway through a batch, as a fast node's does when nats.go's
// reconnect buffer fills between two messages of one batch: the signals
// before the failure went out, and the outbox must retry only the rest.
// The first publish is synchronous into an empty fast outbox, so it is
// sent from the caller's goroutine (the direct path); its failure must
// queue what is left and wait for it. Every signal must be sent exactly
// once, in publish order, and every publisher must hear nil.
func TestOutboxSendsNothingTwiceAfterAPartlyFailedSend(t *testing.T) {
	// Each of these fails the first send that reaches it, after sending
	// what is before it in that send.
	failAt := map[string]bool{"c-1": true, "a-3": true, "a-5": true, "b-0": true}
	var (
		mu   sync.Mutex
		sent []string
	)
	send := func(_ context.Context, batch []bus.Signal) error {
		mu.Lock()
		defer mu.Unlock()
		for i, s := range batch {
			if failAt[s.ID] {
				delete(failAt, s.ID)
				return partlySent(i, fmt.Errorf("%w: scripted failure at %s", ErrUnavailable, s.ID))
			}
			sent = append(sent, s.ID)
		}
		return nil
	}
	o, entry, want := scriptedOutbox(t, Fast, send)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := o.Send(ctx, entry("c", 3)); err != nil {
		t.Fatalf("synchronous send whose first attempt failed after one signal: %v", err)
	}
	if err := o.put(entry("a", 7)); err != nil {
		t.Fatal(err)
	}
	if err := o.put(entry("b", 2)); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(ctx, entry("d", 2)); err != nil {
		t.Fatalf("synchronous send behind the failures: %v", err)
	}
	if err := o.close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failAt) > 0 {
		t.Errorf("scripted failures never reached: %v", failAt)
	}
	if !slices.Equal(sent, *want) {
		t.Errorf("sent %v, want each once in order: %v", sent, *want)
	}
	if d := o.depth(); d != 0 {
		t.Errorf("depth after draining = %d, want 0", d)
	}
}

// TestFastNodeCutOffSendsEachSignalOnce cuts a fast node off from NATS
// while it publishes big signals faster than nats.go's reconnect buffer
// (8 MiB) holds them, several NATS messages to a batch (the binary
// encoding, one message per signal; the batch encoding, one per run of a
// type, the types alternating): the buffer fills partway through a batch,
// whose first signals were buffered (and go out on reconnect) and whose
// others were refused. The outbox must retry only those, under the
// sequence numbers they had, so that the other node, which stays
// connected, receives every signal once and in order, and counts none
// lost. With PublishAsync the outbox's goroutine meets the full buffer;
// with Publish, the publisher's own goroutine (nothing is queued), which
// must then wait for the rest to be sent.
func TestFastNodeCutOffSendsEachSignalOnce(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		for _, async := range []bool{true, false} {
			name := "Publish"
			if async {
				name = "PublishAsync"
			}
			t.Run(name, func(t *testing.T) {
				// Where the buffer fills depends on how the outbox happened
				// to batch what was queued: now and then exactly at a
				// batch's first message, failing nothing partway. Each run
				// must deliver every signal once; one of them at least must
				// have met the case this test is about.
				for range 3 {
					if testFastNodeCutOff(t, enc, async) {
						return
					}
				}
				t.Error("in 3 runs no send failed partway through a batch")
			})
		}
	})
}

// testFastNodeCutOff runs the test once and reports whether a send failed
// after sending some of its signals.
func testFastNodeCutOff(t *testing.T, enc Encoding, async bool) (partial bool) {
	ext := startNATS(t, false)
	proxy, err := faultproxy.New(context.Background(), "127.0.0.1:0", hostPort(ext.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pub := startNode(t, Config{Name: "pub", Mode: Fast, Encoding: enc, NATSURL: "nats://" + proxy.Addr(), BatchSize: 64, OutboxSize: 10_000, Logger: logger})
	sub := startNode(t, Config{Name: "sub", Mode: Fast, NATSURL: ext.ClientURL()})
	box := &inbox{}
	if _, err := sub.Bus().Subscribe("big.*", box); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, []*Node{pub, sub}) // the subscription's interest has reached the server

	proxy.Cut()
	waitFor(t, pub.sigs.IsReconnecting)
	// 1 200 signals of 16 KiB: about 500 fit in the reconnect buffer.
	const count, chunk = 1200, 50
	data := make([]byte, 16<<10)
	publish := pub.Bus().Publish
	if async {
		publish = pub.PublishAsync
	}
	published := make(chan error, 1)
	go func() {
		for i := 0; i < count; i += chunk {
			batch := make([]bus.Signal, chunk)
			for j := range batch {
				typ := [...]string{"big.x", "big.y"}[(i+j)/5%2]
				batch[j] = bus.Signal{Type: typ, Source: "/pub", Subject: strconv.Itoa(i + j), Data: data}
			}
			if err := publish(context.Background(), batch...); err != nil {
				published <- fmt.Errorf("%s #%d… while cut off: %w", map[bool]string{true: "PublishAsync", false: "Publish"}[async], i, err)
				return
			}
		}
		published <- nil
	}()
	// Wait until a send has failed on the full buffer (the outbox logs
	// it), however long filling 8 MiB takes on this machine, and then a
	// little for a retry or two.
	waitFor(t, func() bool { return strings.Contains(logs.String(), "outbox: cluster unreachable") })
	time.Sleep(100 * time.Millisecond)
	proxy.Restore()
	if err := <-published; err != nil {
		t.Fatal(err)
	}

	got := box.wait(t, count)
	if err := pub.out.waitEmpty(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a duplicate would arrive right behind
	got = box.wait(t, count)
	checkSequence(t, got, 0, count)
	if st := sub.Stats(); st.Lost != 0 || st.SlowLost != 0 {
		t.Errorf("receiving node counted %d lost and %d dropped, want none: every signal arrived (stats %+v)", st.Lost, st.SlowLost, st)
	}
	return regexp.MustCompile(`the first [1-9][0-9]* signals were sent`).MatchString(logs.String())
}

// lockedBuffer is a bytes.Buffer that goroutines may write at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestOutboxDropsOnlyTheSignalThatCannotBeSent: a send that fails for good
// (not ErrUnavailable) partway through a batch fails the first signal it
// did not send: of an asynchronous publish that signal alone is dropped;
// a synchronous publisher of it hears the error; the other signals of the
// batch, of that publish and of others, are sent.
func TestOutboxDropsOnlyTheSignalThatCannotBeSent(t *testing.T) {
	bad := map[string]bool{"a-2": true, "c-1": true}
	var (
		mu   sync.Mutex
		sent []string
	)
	errBad := errors.New("scripted: cannot be sent")
	send := func(_ context.Context, batch []bus.Signal) error {
		mu.Lock()
		defer mu.Unlock()
		for i, s := range batch {
			if bad[s.ID] {
				return partlySent(i, fmt.Errorf("signal %s: %w", s.ID, errBad))
			}
			sent = append(sent, s.ID)
		}
		return nil
	}
	o, entry, _ := scriptedOutbox(t, Durable, send)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := o.put(entry("a", 5)); err != nil {
		t.Fatal(err)
	}
	syncDone := make(chan error, 2)
	go func() { syncDone <- o.Send(ctx, entry("b", 2)) }()
	// b is queued (or already done) before c.
	waitFor(t, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return slices.ContainsFunc(o.entries, func(e *outboxEntry) bool { return e.sync }) || len(syncDone) > 0
	})
	c := entry("c", 3)
	go func() { syncDone <- o.Send(ctx, c) }()
	var errs []error
	for range 2 {
		errs = append(errs, <-syncDone)
	}
	if err := o.close(ctx); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			if !errors.Is(err, errBad) {
				t.Errorf("synchronous publish failed with %v, want the send's error", err)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d synchronous publishes failed, want 1 (c, which holds c-1): %v", failed, errs)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{"a-0", "a-1", "a-3", "a-4", "b-0", "b-1", "c-0"} {
		if !slices.Contains(sent, id) {
			t.Errorf("%s was not sent (sent %v)", id, sent)
		}
	}
	for _, id := range sent {
		if bad[id] {
			t.Errorf("%s was sent", id)
		}
	}
	if d := o.depth(); d != 0 {
		t.Errorf("depth %d, want 0", d)
	}
}

// TestOutboxGivesUpOnlyASignalThatFailsAlone: a send that fails for good
// without saying which signal was at fault (an encoding refused as a
// whole) gives up none of a batch of several: they are sent again one at
// a time, and only the one that fails alone is dropped.
func TestOutboxGivesUpOnlyASignalThatFailsAlone(t *testing.T) {
	var (
		mu   sync.Mutex
		sent []string
	)
	send := func(_ context.Context, batch []bus.Signal) error {
		mu.Lock()
		defer mu.Unlock()
		if slices.ContainsFunc(batch, func(s bus.Signal) bool { return s.ID == "x-2" }) {
			return errors.New("scripted: the batch cannot be encoded")
		}
		for _, s := range batch {
			sent = append(sent, s.ID)
		}
		return nil
	}
	o, entry, _ := scriptedOutbox(t, Durable, send)
	if err := o.put(entry("x", 4)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := o.close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"x-0", "x-1", "x-3"}; !slices.Equal(sent, want) {
		t.Errorf("sent %v, want %v: only x-2 given up", sent, want)
	}
}
