package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// TestSignalTooBigForNATSIsRefused: a signal the bus takes (its data under
// the bus's 1 MiB limit) but whose message is over the server's
// max_payload (1 MiB, which must also hold the attributes) can never be
// sent: Publish says so with bus.ErrInvalidSignal, not ErrUnavailable, and
// PublishAsync's outbox lets it go (logged) instead of retrying it for
// ever at the head of its queue, holding back everything behind it. In
// durable mode its sequence number does not hold the publisher's floor
// back: nothing after it waits for it.
func TestSignalTooBigForNATSIsRefused(t *testing.T) {
	for _, mode := range []Mode{Fast, Durable} {
		t.Run(mode.String(), func(t *testing.T) {
			eachEncoding(t, func(t *testing.T, enc Encoding) {
				n := startNode(t, Config{Name: "big", Mode: mode, Encoding: enc})
				box := &inbox{}
				if _, err := n.Bus().Subscribe("big.*", box); err != nil {
					t.Fatal(err)
				}
				if mode == Durable {
					waitDurableReady(t, n)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				huge := bus.Signal{Type: "big.x", Source: "/big", Subject: "huge", Data: make([]byte, bus.DefaultMaxDataSize-10)}
				if err := n.Bus().Publish(ctx, huge); !errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, ErrUnavailable) {
					t.Errorf("Publish of %d bytes of data = %v, want bus.ErrInvalidSignal", len(huge.Data), err)
				}
				if err := n.PublishAsync(ctx, huge, bus.Signal{Type: "big.x", Source: "/big", Subject: "0"}); err != nil {
					t.Fatal(err)
				}
				if err := n.PublishAsync(ctx, bus.Signal{Type: "big.x", Source: "/big", Subject: "1"}); err != nil {
					t.Fatal(err)
				}
				// Well before the reorder gap (10 s), had the floor been held.
				deadline := time.Now().Add(5 * time.Second)
				for {
					box.mu.Lock()
					got := len(box.signals)
					box.mu.Unlock()
					if got >= 2 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("received %d of the 2 signals behind the one too big after 5 s; stats %+v", got, n.Stats())
					}
					time.Sleep(10 * time.Millisecond)
				}
				checkSequence(t, box.wait(t, 2), 0, 2)
				if st := n.Stats(); st.Held != 0 || st.Skipped != 0 || st.Lost != 0 {
					t.Errorf("stats %+v: the signal too big held others back", st)
				}
			})
		})
	}
}

// TestOutboxDropsOnlyTheSignalThatCannotBeSent: a PublishAsync batch with
// one signal too big for a NATS message between good ones: the good ones
// before it went out once (a fast node does not send them again when the
// rest fails), the bad one is dropped (and logged), and the good ones
// after it are still sent, in order.
func TestOutboxDropsOnlyTheSignalThatCannotBeSent(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c := startFastClusterEncoded(t, 2, enc)
		box := &inbox{}
		if _, err := c[1].Bus().Subscribe("part.*", box); err != nil {
			t.Fatal(err)
		}
		batch := []bus.Signal{
			{Type: "part.x", Source: "/n0", Subject: "0"},
			{Type: "part.x", Source: "/n0", Subject: "1"},
			{Type: "part.x", Source: "/n0", Subject: "bad", Extensions: map[string]any{"blob": strings.Repeat("x", bus.DefaultMaxDataSize)}},
			{Type: "part.x", Source: "/n0", Subject: "2"},
			{Type: "part.x", Source: "/n0", Subject: "3"},
		}
		if err := c[0].PublishAsync(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
		box.wait(t, 4)
		time.Sleep(100 * time.Millisecond) // a duplicate would arrive right behind
		checkSequence(t, box.wait(t, 4), 0, 4)
		if d := c[0].out.depth(); d != 0 {
			t.Errorf("outbox depth %d after the batch settled, want 0", d)
		}
	})
}
