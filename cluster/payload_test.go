package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// TestSignalTooBigForNATSIsRefusedAtPublish: the bus's default data limit
// (1 MiB) is NATS's default max_payload, which must also hold the
// CloudEvent's attributes: a node lowers its bus's limit to what one NATS
// message can carry, so a signal that could never be sent is refused at
// Publish and PublishAsync with bus.ErrInvalidSignal naming the data limit,
// rather than failing as unavailable (Publish) or being retried forever at
// the head of the outbox (PublishAsync), holding back what follows it.
func TestSignalTooBigForNATSIsRefusedAtPublish(t *testing.T) {
	for _, mode := range []Mode{Fast, Durable} {
		t.Run(mode.String(), func(t *testing.T) {
			n := startNode(t, Config{Name: "big", Mode: mode})
			box := &inbox{}
			if _, err := n.Bus().Subscribe("big.*", box); err != nil {
				t.Fatal(err)
			}
			if mode == Durable {
				waitDurableReady(t, n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			huge := bus.Signal{Type: "big.x", Source: "/big", Data: make([]byte, bus.DefaultMaxDataSize-10)}
			for name, publish := range map[string]func(context.Context, ...bus.Signal) error{"Publish": n.Bus().Publish, "PublishAsync": n.PublishAsync} {
				err := publish(ctx, huge)
				if !errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, ErrUnavailable) {
					t.Errorf("%s of %d bytes of data = %v, want bus.ErrInvalidSignal (the data limit)", name, len(huge.Data), err)
				}
			}
			if max := n.Bus().MaxDataSize(); max >= bus.DefaultMaxDataSize || max <= 0 {
				t.Errorf("the node's bus takes up to %d bytes of data, more than a NATS message carries", max)
			}
			// An extension can still make a message too big: Publish
			// says so, not "unavailable" (and the outbox does not retry
			// it for ever).
			bigExt := bus.Signal{Type: "big.x", Source: "/big", Extensions: map[string]any{"blob": strings.Repeat("x", bus.DefaultMaxDataSize)}}
			if err := n.Bus().Publish(ctx, bigExt); !errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, ErrUnavailable) {
				t.Errorf("Publish of a signal with a 1 MiB extension = %v, want bus.ErrInvalidSignal", err)
			}
			// The largest signal the bus takes goes through, and what
			// follows it too.
			fits := bus.Signal{Type: "big.x", Source: "/big", Subject: "0", Data: make([]byte, n.Bus().MaxDataSize())}
			small := bus.Signal{Type: "big.x", Source: "/big", Subject: "1"}
			if err := n.PublishAsync(ctx, fits, small); err != nil {
				t.Fatal(err)
			}
			checkSequence(t, box.wait(t, 2), 0, 2)
		})
	}
}

// TestStartRefusesABusDataLimitNATSCannotCarry: a bus data limit set
// above what one NATS message carries is a configuration error at Start.
func TestStartRefusesABusDataLimitNATSCannotCarry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Start(ctx, Config{Name: "toobig", Mode: Fast, Listen: "127.0.0.1:0", Logger: quietLogger(),
		BusOptions: []bus.Option{bus.WithMaxDataSize(8 << 20)}})
	if err == nil {
		_ = n.Close(ctx)
		t.Fatal("Start accepted a bus data limit of 8 MiB over NATS's 1 MiB max_payload")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "BusOptions" {
		t.Fatalf("Start = %v, want a *ConfigError for BusOptions", err)
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
