package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// TestSignalTooBigForNATSIsRefused: a signal the bus takes (data under its
// 1 MiB limit) whose message would be over the server's max_payload (1
// MiB, which must also hold the attributes) could never be sent: Publish
// and PublishAsync refuse the call with bus.ErrInvalidSignal naming it,
// nothing of the call is sent, and what is published next goes through at
// once, nothing held back (before, PublishAsync retried it for ever at the
// head of the outbox). A signal near the limit that does fit is measured
// and sent.
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
				limit := int(n.signalConn().MaxPayload())
				small := func(subject string) bus.Signal {
					return bus.Signal{Type: "big.x", Source: "/big", Subject: subject}
				}
				tooBig := []bus.Signal{
					{Type: "big.x", Source: "/big", Subject: "data", Data: make([]byte, bus.DefaultMaxDataSize-10)},
					{Type: "big.x", Source: "/big", Subject: "ext", Extensions: map[string]any{"blob": strings.Repeat("x", limit)}},
				}
				for _, bad := range tooBig {
					for name, publish := range map[string]func(context.Context, ...bus.Signal) error{"Publish": n.Bus().Publish, "PublishAsync": n.PublishAsync} {
						err := publish(ctx, small("never"), bad)
						if !errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "max_payload") {
							t.Errorf("%s with a signal too big (%s) = %v, want bus.ErrInvalidSignal naming max_payload", name, bad.Subject, err)
						}
					}
				}
				fits := small("0")
				fits.Data = make([]byte, limit-4096)
				if err := n.Bus().Publish(ctx, fits); err != nil {
					t.Fatalf("Publish of a signal that fits (%d bytes of data, max_payload %d): %v", len(fits.Data), limit, err)
				}
				if err := n.PublishAsync(ctx, small("1")); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second) // well under the 10 s reorder gap
				for {
					box.mu.Lock()
					got := len(box.signals)
					box.mu.Unlock()
					if got >= 2 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("received %d of 2 after 5 s; stats %+v", got, n.Stats())
					}
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond) // anything of the refused calls would come right behind
				checkSequence(t, box.wait(t, 2), 0, 2)
				if st := n.Stats(); st.Held != 0 || st.Skipped != 0 {
					t.Errorf("stats %+v: something was held back", st)
				}
				if d := n.out.depth(); d != 0 {
					t.Errorf("outbox depth %d, want 0", d)
				}
			})
		})
	}
}

// TestRoughSizeBoundsTheMessage: the cheap bound is never under the
// measured size, whatever the attributes, so no signal too big slips past
// the check unmeasured.
func TestRoughSizeBoundsTheMessage(t *testing.T) {
	for _, enc := range []Encoding{Binary, ProtobufBatch} {
		n := &Node{cfg: Config{Encoding: enc, Prefix: "signals"}}
		for _, s := range []bus.Signal{
			{ID: "1", Type: "a.b", Source: "/s", SpecVersion: "1.0"},
			{ID: "2", Type: "a.b", Source: "/ünïcödé ßource with spaces%", Subject: strings.Repeat("é", 300), SpecVersion: "1.0",
				DataContentType: "text/plain; charset=utf-8", Data: []byte("hello"), Time: time.Now(),
				Extensions: map[string]any{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": strings.Repeat("k=v%,", 400),
					"blob": []byte(strings.Repeat("\xff+/", 500)), "n": 42, "flag": true}},
		} {
			size, err := n.messageSize(s)
			if err != nil {
				t.Fatal(err)
			}
			if bound := roughSize(s); bound < size {
				t.Errorf("%s: rough size %d under the measured %d", enc, bound, size)
			}
		}
	}
}
