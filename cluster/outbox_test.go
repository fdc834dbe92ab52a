package cluster

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/faultproxy"
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
