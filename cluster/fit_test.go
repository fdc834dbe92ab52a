package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
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
				seq := n.seq.Load()
				for _, bad := range tooBig {
					for name, publish := range map[string]func(context.Context, ...bus.Signal) error{"Publish": n.Bus().Publish, "PublishAsync": n.PublishAsync} {
						err := publish(ctx, small("never"), bad)
						if !errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "max_payload") {
							t.Errorf("%s with a signal too big (%s) = %v, want bus.ErrInvalidSignal naming max_payload", name, bad.Subject, err)
						}
					}
				}
				if now := n.seq.Load(); now != seq {
					t.Errorf("the refused calls took sequence numbers %d to %d: receivers would see a gap", seq+1, now)
				}
				fits := small("0")
				fits.Data = make([]byte, limit-1500)
				if n.roughSize(fits) <= int64(limit) {
					t.Fatal("the signal that fits is under the rough bound: the test would not exercise the exact measure")
				}
				if err := n.Bus().Publish(ctx, fits); err != nil {
					t.Fatalf("Publish of a signal that fits (%d bytes of data, max_payload %d): %v", len(fits.Data), limit, err)
				}
				if err := n.PublishAsync(ctx, small("1")); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(9 * time.Second) // under the 10 s reorder gap
				for {
					box.mu.Lock()
					got := len(box.signals)
					box.mu.Unlock()
					if got >= 2 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("received %d of 2 after 9 s; stats %+v", got, n.Stats())
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

// TestSignalWithHeadersTooBigToStoreIsRefused: a JetStream stream does not
// store a message whose headers are over 64 KiB (nats-server error
// 10097), which a durable node's binary encoding, writing every attribute
// as a header, makes of a signal with a big extension; its publish would
// be refused every time. Publish refuses it with bus.ErrInvalidSignal,
// naming the headers, before numbering anything; a signal whose headers
// are measured at the limit is stored (the measure is not under what the
// server counts); and the batch encoding, which carries attributes in the
// body, stores a bigger one too.
func TestSignalWithHeadersTooBigToStoreIsRefused(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		n := startNode(t, Config{Name: "hdr", Encoding: enc})
		box := &inbox{}
		if _, err := n.Bus().Subscribe("hdr.*", box); err != nil {
			t.Fatal(err)
		}
		waitDurableReady(t, n)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Id and time as the bus would fill them, set here so that the
		// measure and the publish see the same (a time's text varies in
		// length).
		at := time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.UTC)
		withBlob := func(subject string, size int) bus.Signal {
			return bus.Signal{ID: bus.NewID(), Time: at, SpecVersion: bus.SpecVersion, Type: "hdr.x", Source: "/hdr", Subject: subject,
				Extensions: map[string]any{"blob": strings.Repeat("b", size)}}
		}
		// The blob that makes the headers, as measured, exactly as big as
		// a stream stores, and one a little bigger (the measure counts
		// the stamps with 20-digit numbers: some 40 bytes of slack).
		_, header, err := n.messageSize(withBlob("0", 0))
		if err != nil {
			t.Fatal(err)
		}
		fit := maxStoredHeader - int(header)
		under, over := withBlob("0", fit), withBlob("1", fit+100)
		if enc == ProtobufBatch {
			over = withBlob("1", 2*maxStoredHeader)
		}
		if enc == Binary && n.roughHeaderSize(under, n.roughSize(under)) <= maxStoredHeader {
			t.Fatal("the signal under the limit is under the rough bound: the test would not exercise the exact measure")
		}
		if err := n.Bus().Publish(ctx, under); err != nil {
			t.Fatalf("Publish of a signal whose headers fit: %v", err)
		}
		seq := n.seq.Load()
		err = n.Bus().Publish(ctx, over)
		if enc == ProtobufBatch {
			if err != nil {
				t.Fatalf("Publish of a big extension in the batch encoding: %v", err)
			}
			checkSequence(t, box.wait(t, 2), 0, 2)
			return
		}
		if !errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "headers would be") {
			t.Fatalf("Publish of a signal whose headers are over 64 KiB = %v, want bus.ErrInvalidSignal naming the headers", err)
		}
		if now := n.seq.Load(); now != seq {
			t.Errorf("the refused call took sequence numbers %d to %d", seq+1, now)
		}
		if err := n.PublishAsync(ctx, withBlob("1", 10)); err != nil {
			t.Fatal(err)
		}
		checkSequence(t, box.wait(t, 2), 0, 2)
		if st := n.Stats(); st.Held != 0 || st.Skipped != 0 {
			t.Errorf("stats %+v: something was held back", st)
		}
	})
}

// TestRoughSizeBoundsTheMessage: the cheap bound is never under the
// measured size of the message as the node would send it, in either mode
// and encoding, for attributes that expand the most (percent-encoded
// text, attributes written twice, base64, a long node name in the
// stamps), so no signal too big slips past the check unmeasured.
func TestRoughSizeBoundsTheMessage(t *testing.T) {
	longName := strings.Repeat("n", MaxNameLength) // in the stamps of every signal
	big := strings.Repeat("%", 20000)              // each % percent-encoded to three bytes
	signals := []bus.Signal{
		{ID: "1", Type: "a.b", Source: "/s"},
		// One attribute written twice dominating each: the id, the
		// content type, the trace state.
		{ID: big, Type: "a.b", Source: "/s"},
		{ID: "2", Type: "a.b", Source: "/s", DataContentType: "text/plain;x=" + big},
		{ID: "3", Type: "a.b", Source: "/s", Extensions: map[string]any{"tracestate": big}},
		{ID: strings.Repeat("%", 2000), Type: "a.b", Source: "/ünïcödé ßource%", Subject: strings.Repeat("é", 300),
			DataContentType: "text/plain;x=" + strings.Repeat("%", 500), DataSchema: "https://example.com/%%",
			Data: []byte("hello"), Time: time.Now(),
			Extensions: map[string]any{
				"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				"tracestate":  strings.Repeat("%", 1000),
				"blob":        []byte(strings.Repeat("\xff+/", 500)),
				"n":           42, "flag": true, "at": time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)),
				"u":    &url.URL{Scheme: "https", Host: "example.com", Path: "/%%/é"},
				"text": strings.Repeat("%é ", 300),
			}},
	}
	for _, mode := range []Mode{Fast, Durable} {
		for _, enc := range []Encoding{Binary, ProtobufBatch} {
			n := startNode(t, Config{Name: longName, Mode: mode, Encoding: enc})
			for i, s := range signals {
				size, header, err := n.messageSize(s)
				if err != nil {
					t.Fatal(err)
				}
				bound := n.roughSize(s)
				if bound < size {
					t.Errorf("%s %s, signal %d: rough size %d under the measured %d", mode, enc, i, bound, size)
				}
				if headerBound := n.roughHeaderSize(s, bound); headerBound < header {
					t.Errorf("%s %s, signal %d: rough header size %d under the measured %d", mode, enc, i, headerBound, header)
				}
			}
		}
	}
}

// TestSignalTheStreamRefusesIsGivenUp: an operator may give the stream a
// message size limit under what the node's checks at Publish know
// (max_msg_size); a signal over it is refused by the stream every time it
// is sent (JetStream error 10054). The outbox must give it up, not retry
// it for ever at its head, holding every later publish: PublishAsync's
// other signals, before and after it, are stored and delivered, in order;
// a synchronous Publish of it fails at once with bus.ErrInvalidSignal,
// not ErrUnavailable when its ctx ends; the receiver skips the refused
// signals' sequence numbers, and no others.
func TestSignalTheStreamRefusesIsGivenUp(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		n := startNode(t, Config{Name: "limited", Encoding: enc, ReorderGap: 200 * time.Millisecond})
		box := &inbox{}
		if _, err := n.Bus().Subscribe("lim.*", box); err != nil {
			t.Fatal(err)
		}
		waitDurableReady(t, n)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		setStreamMaxMsgSize(ctx, t, n, 4096)
		small := func(i int) bus.Signal { return bus.Signal{Type: "lim.x", Source: "/lim", Subject: strconv.Itoa(i)} }
		big := bus.Signal{Type: "lim.x", Source: "/lim", Subject: "big", Data: make([]byte, 8192)}
		if err := n.PublishAsync(ctx, small(0), big, small(1)); err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
		defer cancelShort()
		err := n.Bus().Publish(short, big)
		if !errors.Is(err, bus.ErrInvalidSignal) || errors.Is(err, ErrUnavailable) {
			t.Errorf("Publish of a signal the stream refuses = %v, want bus.ErrInvalidSignal", err)
		}
		if err := n.PublishAsync(ctx, small(2)); err != nil {
			t.Fatal(err)
		}
		checkSequence(t, box.wait(t, 3), 0, 3)
		if err := n.out.waitEmpty(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // past the reorder gap: anything held back would come now
		checkSequence(t, box.wait(t, 3), 0, 3)
		// The two refused signals took a sequence number each, which the
		// receiver skips; the others stored keep theirs when they are
		// sent again after the batch that held the first failed (before,
		// they took new ones, which the stream's dedup dropped: numbers
		// that never came, held for and skipped).
		if st := n.Stats(); st.Skipped != 2 {
			t.Errorf("stats %+v: %d sequence numbers skipped, want 2, the refused signals'", st, st.Skipped)
		}
	})
}

// TestBatchesArePackedUnderTheStreamsSizeLimit: an operator gives the
// stream a max_msg_size far under what a batch of the node's signals
// takes. Once the stream has refused one batch for it, the node reads the
// limit and packs its batches under it: the signals are all stored and
// delivered in order, and the stream refuses no other batch (before, it
// refused every full batch, the outbox falling back to one signal at a
// time after each: some 20 signals/s).
func TestBatchesArePackedUnderTheStreamsSizeLimit(t *testing.T) {
	logs := &lockedBuffer{}
	n := startNode(t, Config{Name: "packed", Encoding: ProtobufBatch,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	box := &inbox{}
	if _, err := n.Bus().Subscribe("pk.*", box); err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	setStreamMaxMsgSize(ctx, t, n, 8192)
	const count, chunk = 640, 64
	for i := 0; i < count; i += chunk {
		batch := make([]bus.Signal, chunk)
		for j := range batch {
			batch[j] = bus.Signal{Type: "pk.x", Source: "/pk", Subject: strconv.Itoa(i + j), Data: make([]byte, 1024)}
		}
		if err := n.Bus().Publish(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	checkSequence(t, box.wait(t, count), 0, count)
	if refusals := strings.Count(logs.String(), "maximum"); refusals > 1 {
		t.Errorf("the stream refused %d batches for their size, want at most the first", refusals)
	}
}

// setStreamMaxMsgSize gives the node's stream a max_msg_size, as an
// operator may.
func setStreamMaxMsgSize(ctx context.Context, t *testing.T, n *Node, size int32) {
	t.Helper()
	js, err := jetstream.New(n.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, wire.StreamName(n.cfg.Prefix))
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = size
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestSignalWithAContentTypeTheWireCannotCarryIsRefused: the bus takes any
// UTF-8 datacontenttype, but a binary-mode message carries it as its
// content-type header, which holds neither non-ASCII text nor a
// CloudEvents format (that would announce a structured event). Before, a
// node took such a signal and its PublishAsync acknowledged it, and the
// outbox then dropped it with a log line. Now Publish and PublishAsync
// refuse the call with bus.ErrInvalidSignal naming the datacontenttype, in
// either encoding (a signal a node takes must always travel, and park, in
// binary mode), before numbering anything, and what follows goes through.
func TestSignalWithAContentTypeTheWireCannotCarryIsRefused(t *testing.T) {
	for _, mode := range []Mode{Fast, Durable} {
		t.Run(mode.String(), func(t *testing.T) {
			eachEncoding(t, func(t *testing.T, enc Encoding) {
				n := startNode(t, Config{Name: "ct", Mode: mode, Encoding: enc})
				box := &inbox{}
				if _, err := n.Bus().Subscribe("ct.*", box); err != nil {
					t.Fatal(err)
				}
				if mode == Durable {
					waitDurableReady(t, n)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				seq := n.seq.Load()
				for _, ct := range []string{"application/cloudevents+json", "Application/CloudEvents-Batch+json; charset=utf-8", "text/plain; name=é", " text/plain"} {
					bad, err := bus.NewSignal("ct.x", "/ct", nil, bus.WithDataContentType(ct))
					if err != nil {
						t.Fatalf("the bus refuses datacontenttype %q (%v): the test needs one it takes", ct, err)
					}
					good, err := bus.NewSignal("ct.x", "/ct", nil)
					if err != nil {
						t.Fatal(err)
					}
					for name, publish := range map[string]func(context.Context, ...bus.Signal) error{"Publish": n.Bus().Publish, "PublishAsync": n.PublishAsync} {
						err := publish(ctx, good, bad)
						if !errors.Is(err, bus.ErrInvalidSignal) || !strings.Contains(err.Error(), "datacontenttype") || !strings.Contains(err.Error(), "signal 2 of 2") {
							t.Errorf("%s with datacontenttype %q = %v, want bus.ErrInvalidSignal naming signal 2 and its datacontenttype", name, ct, err)
						}
					}
				}
				if now := n.seq.Load(); now != seq {
					t.Errorf("the refused calls took sequence numbers %d to %d: receivers would see a gap", seq+1, now)
				}
				ok, err := bus.NewSignal("ct.x", "/ct", []byte(`{}`), bus.WithDataContentType("application/json"))
				if err != nil {
					t.Fatal(err)
				}
				if err := n.PublishAsync(ctx, ok); err != nil {
					t.Fatal(err)
				}
				// Delivery keeps the publisher's order: had anything of the
				// refused calls been sent, it would arrive first.
				got := box.wait(t, 1)
				if got[0].ID != ok.ID || got[0].DataContentType != "application/json" {
					t.Errorf("received first %+v, want the valid signal %s with its content type", got[0], ok.ID)
				}
			})
		})
	}
}
