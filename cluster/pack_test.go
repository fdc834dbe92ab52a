package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// TestProtobufBatchKeepsOrderAcrossTypes: a node with the batch encoding
// publishes runs of two interleaved types; a node with the same encoding
// and one with the default binary encoding each see every signal once, in
// publish order, both through a pattern over both types and through one
// for one type. On the wire the signals travel as fewer messages than
// signals, each in the protobuf batch format.
func TestProtobufBatchKeepsOrderAcrossTypes(t *testing.T) {
	for _, mode := range []Mode{Fast, Durable} {
		t.Run(mode.String(), func(t *testing.T) {
			ext := startNATS(t, mode == Durable)
			pub := startNode(t, Config{Name: "packer", Mode: mode, Encoding: ProtobufBatch, NATSURL: ext.ClientURL()})
			packed := startNode(t, Config{Name: "packed", Mode: mode, Encoding: ProtobufBatch, NATSURL: ext.ClientURL()})
			plain := startNode(t, Config{Name: "plain", Mode: mode, NATSURL: ext.ClientURL()})
			nodes := []*Node{pub, packed, plain}
			if mode == Durable {
				waitDurableReady(t, nodes...)
			} else {
				waitConnected(t, nodes)
			}
			watcher, err := nats.Connect(ext.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			defer watcher.Close()
			var (
				mu       sync.Mutex
				messages int
				formats  = map[string]int{}
			)
			if _, err := watcher.Subscribe("signals.t.>", func(m *nats.Msg) {
				mu.Lock()
				messages++
				formats[m.Header.Get("content-type")]++
				mu.Unlock()
			}); err != nil {
				t.Fatal(err)
			}
			_ = watcher.Flush()

			var all, onlyA []*inbox
			for _, n := range nodes[1:] {
				a, b := &inbox{}, &inbox{}
				if _, err := n.Bus().Subscribe("t.**", a); err != nil {
					t.Fatal(err)
				}
				if _, err := n.Bus().Subscribe("t.a", b); err != nil {
					t.Fatal(err)
				}
				all, onlyA = append(all, a), append(onlyA, b)
			}
			if mode == Fast {
				waitConnected(t, nodes)
			}
			const total = 600
			typeOf := func(i int) string {
				if i%7 < 4 {
					return "t.a"
				}
				return "t.b"
			}
			var wantA []string
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := 0; i < total; i += 50 {
				batch := make([]bus.Signal, 0, 50)
				for j := i; j < i+50; j++ {
					batch = append(batch, bus.Signal{Type: typeOf(j), Source: "/packer", Subject: strconv.Itoa(j)})
					if typeOf(j) == "t.a" {
						wantA = append(wantA, strconv.Itoa(j))
					}
				}
				publish := pub.Bus().Publish
				if i%100 == 50 {
					publish = pub.PublishAsync // the outbox joins these into bigger batches
				}
				if err := publish(ctx, batch...); err != nil {
					t.Fatal(err)
				}
			}
			for i, box := range all {
				checkSequence(t, box.wait(t, total), 0, total)
				got := onlyA[i].wait(t, len(wantA))
				for k, s := range got {
					if k >= len(wantA) || s.Subject != wantA[k] {
						t.Fatalf("%s: t.a subscription's signal %d is #%s, want #%s", nodes[i+1].Name(), k, s.Subject, wantA[k])
					}
				}
			}
			time.Sleep(100 * time.Millisecond) // a duplicate would arrive right behind
			for i, box := range all {
				if got := len(box.wait(t, 0)); got != total {
					t.Errorf("%s received %d, want exactly %d", nodes[i+1].Name(), got, total)
				}
				if got := len(onlyA[i].wait(t, 0)); got != len(wantA) {
					t.Errorf("%s t.a received %d, want exactly %d", nodes[i+1].Name(), got, len(wantA))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d signals in %d messages: %v", total, messages, formats)
			if messages >= total/2 || formats[wire.ProtobufBatchContentType] != messages {
				t.Errorf("%d signals went as %d messages %v, want fewer than half as many, all %s",
					total, messages, formats, wire.ProtobufBatchContentType)
			}
		})
	}
}

// TestProtobufBatchParksOnlyTheBadEvent: a batch from another client holds
// a bad event between two valid ones: one the decoder refuses (no id), or
// one only validation refuses (an upper-case extension name; a fast node
// leaves that check to its bus, and must still find the culprit). The
// valid ones reach the subscription; the bad one alone is parked, as a
// protobuf-format event with the reason.
func TestProtobufBatchParksOnlyTheBadEvent(t *testing.T) {
	event := func(id string, attributes ...[2]string) []byte {
		var b []byte
		if id != "" {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, id)
		}
		for field, v := range map[protowire.Number]string{2: "/other", 3: "1.0", 4: "job.run"} {
			b = protowire.AppendTag(b, field, protowire.BytesType)
			b = protowire.AppendString(b, v)
		}
		for _, a := range attributes {
			var value, entry []byte
			value = protowire.AppendTag(value, 3, protowire.BytesType) // ce_string
			value = protowire.AppendString(value, a[1])
			entry = protowire.AppendTag(entry, 1, protowire.BytesType)
			entry = protowire.AppendString(entry, a[0])
			entry = protowire.AppendTag(entry, 2, protowire.BytesType)
			entry = protowire.AppendBytes(entry, value)
			b = protowire.AppendTag(b, 5, protowire.BytesType)
			b = protowire.AppendBytes(b, entry)
		}
		return b
	}
	for _, bad := range []struct {
		name, reason string
		event        []byte
	}{
		{"no id", wire.ReasonMissingID, event("")},
		{"bad extension name", wire.ReasonBadExtension, event("three", [2]string{"BAD", "x"})},
	} {
		for _, tc := range []struct {
			mode  Mode
			group bool // the node's only subscription is a group member: the receiver still parks, the group does not again
		}{{Fast, false}, {Fast, true}, {Durable, false}} {
			mode := tc.mode
			t.Run(fmt.Sprintf("%s/%s/group=%v", bad.name, mode, tc.group), func(t *testing.T) {
				n := startNode(t, Config{Name: "solo", Mode: mode})
				nc, parked := watchParked(t, n)
				box := &inbox{}
				var opts []bus.SubscribeOption
				if tc.group {
					opts = append(opts, bus.WithGroup("g"))
				}
				if _, err := n.Bus().Subscribe("job.*", box, opts...); err != nil {
					t.Fatal(err)
				}
				if mode == Durable {
					waitDurableReady(t, n)
				}
				if tc.group {
					waitHeard(t, n, box, "job.probe")
				}
				good := []bus.Signal{
					{ID: "one", Type: "job.run", Source: "/other", Subject: "0"},
					{ID: "two", Type: "job.run", Source: "/other", Subject: "1"},
				}
				msg, err := wire.EncodeBatch(good, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				// Splice the bad event between the two.
				_, typ, tagLen := protowire.ConsumeTag(msg.Data)
				first, firstLen := protowire.ConsumeBytes(msg.Data[tagLen:])
				if typ != protowire.BytesType || firstLen < 0 {
					t.Fatal("cannot split the batch")
				}
				var body []byte
				body = protowire.AppendTag(body, 1, protowire.BytesType)
				body = protowire.AppendBytes(body, first)
				body = protowire.AppendTag(body, 1, protowire.BytesType)
				body = protowire.AppendBytes(body, bad.event)
				body = append(body, msg.Data[tagLen+firstLen:]...)
				msg.Data = body
				if mode == Durable {
					js, err := jetstream.New(nc)
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if _, err := js.PublishMsg(ctx, msg); err != nil {
						t.Fatal(err)
					}
				} else if err := nc.PublishMsg(msg); err != nil {
					t.Fatal(err)
				}
				checkSequence(t, box.wait(t, 2), 0, 2)
				m, err := parked.NextMsg(10 * time.Second)
				if err != nil {
					t.Fatalf("parked event: %v", err)
				}
				if got := m.Header.Get("signalbus-reason"); got != bad.reason {
					t.Errorf("parked with reason %q, want %q", got, bad.reason)
				}
				if got := m.Header.Get("content-type"); got != wire.ProtobufContentType {
					t.Errorf("parked event content-type %q, want %q", got, wire.ProtobufContentType)
				}
				if string(m.Data) != string(bad.event) {
					t.Errorf("parked body is not the bad event")
				}
				time.Sleep(100 * time.Millisecond) // a second parking would be right behind
				if m, err := parked.NextMsg(10 * time.Millisecond); err == nil {
					t.Errorf("parked again: %v", m.Header)
				}
				if got := n.Stats().Parked; got != 1 {
					t.Errorf("Stats().Parked = %d, want 1", got)
				}
			})
		}
	}
}

// waitHeard publishes probes of type typ from n until box has one (a
// group's interest reaches the server on a connection of its own), then
// empties box.
func waitHeard(t *testing.T, n *Node, box *inbox, typ string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	sent := 0
	for len(box.wait(t, 0)) == 0 {
		sent++
		if err := n.Bus().Publish(context.Background(), bus.Signal{Type: typ, Source: "/probe", Subject: strconv.Itoa(sent)}); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no probe of %s heard", typ)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The probes still in flight: the last one sent comes after the one
	// heard, and after every other (one publisher's order).
	last := strconv.Itoa(sent)
	for heardLast := false; !heardLast; time.Sleep(time.Millisecond) {
		for _, s := range box.wait(t, 0) {
			heardLast = heardLast || s.Source == "/probe" && s.Subject == last
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe %s of %s not heard", last, typ)
		}
	}
	box.mu.Lock()
	box.signals = nil
	box.mu.Unlock()
}

// TestParkedEventIsNotCountedLost: a node checks each publisher's sequence
// for gaps (fast mode) or holds back what follows a gap until it fills
// (durable mode). A stamped signal that is not a valid one (an event of a
// batch that decodes but fails validation, or does not decode; a binary
// message with a malformed type or specversion) is parked, and it was not
// lost in transit: the next one from its publisher is no gap, neither
// counted lost nor held for the gap timeout (an hour here) and skipped.
func TestParkedEventIsNotCountedLost(t *testing.T) {
	stamps := func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: ExtensionNode, Value: "other"}, wire.Attr{Name: ExtensionInstance, Value: "run-1"},
			wire.Attr{Name: ExtensionSequence, Value: strconv.Itoa(i + 1)})
	}
	for _, mode := range []Mode{Fast, Durable} {
		t.Run(mode.String(), func(t *testing.T) { testParkedEventIsNotCountedLost(t, mode, stamps) })
	}
}

func testParkedEventIsNotCountedLost(t *testing.T, mode Mode, stamps func(int, []wire.Attr) []wire.Attr) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		n := startNode(t, Config{Name: "solo", Mode: mode, Encoding: enc, ReorderGap: time.Hour})
		nc, parked := watchParked(t, n)
		box := &inbox{}
		if _, err := n.Bus().Subscribe("job.*", box); err != nil {
			t.Fatal(err)
		}
		if mode == Durable {
			waitDurableReady(t, n)
		}
		signals := make([]bus.Signal, 4)
		for i := range signals {
			signals[i] = bus.Signal{ID: strconv.Itoa(i), Type: "job.run", Source: "/other", Subject: strconv.Itoa(i)}
		}
		var msgs []*nats.Msg
		if enc == ProtobufBatch {
			signals[1].Extensions = map[string]any{"Bad": "x"} // passes the decoder, not validation
			signals[2].SpecVersion = "0.3"                     // does not decode
			msg, err := wire.EncodePublished(signals, "", stamps)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, msg)
		} else {
			for i, s := range signals {
				msg, err := wire.Encode(s, "")
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range stamps(i, nil) {
					msg.Header["ce-"+a.Name] = []string{a.Value}
				}
				msgs = append(msgs, msg)
			}
			msgs[1].Header["ce-type"] = []string{"job..run"}
			msgs[2].Header["ce-specversion"] = []string{"0.3"}
		}
		for _, msg := range msgs {
			if err := nc.PublishMsg(msg); err != nil {
				t.Fatal(err)
			}
		}
		got := box.wait(t, 2)
		if got[0].Subject != "0" || got[1].Subject != "3" {
			t.Errorf("delivered %q and %q, want 0 and 3", got[0].Subject, got[1].Subject)
		}
		for range 2 {
			if _, err := parked.NextMsg(10 * time.Second); err != nil {
				t.Fatalf("parked event: %v", err)
			}
		}
		if st := n.Stats(); st.Lost != 0 || st.Skipped != 0 || st.Parked != 2 {
			t.Errorf("Stats: lost %d, skipped %d, parked %d; want 0, 0 and 2", st.Lost, st.Skipped, st.Parked)
		}
	})
}

// settledMsg is a jetstream.Msg that records how it was settled.
type settledMsg struct {
	jetstream.Msg
	mu      sync.Mutex
	settled []string
}

func (m *settledMsg) record(s string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settled = append(m.settled, s)
	return nil
}

func (m *settledMsg) Ack() error                         { return m.record("ack") }
func (m *settledMsg) Nak() error                         { return m.record("nak") }
func (m *settledMsg) NakWithDelay(d time.Duration) error { return m.record("nak " + d.String()) }
func (m *settledMsg) Term() error                        { return m.record("term") }
func (m *settledMsg) result() []string                   { m.mu.Lock(); defer m.mu.Unlock(); return m.settled }

func TestBatchAckSettlesTheMessageOnceEveryShareIs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shares func(s []acker)
		want   string
	}{
		{"all acked", func(s []acker) { _ = s[0].Ack(); _ = s[1].Ack(); _ = s[2].Ack() }, "[ack]"},
		{"a terminated one needs no redelivery", func(s []acker) { _ = s[0].Ack(); _ = s[1].Term(); _ = s[2].Ack() }, "[ack]"},
		{"one nak redelivers the batch", func(s []acker) { _ = s[0].Ack(); _ = s[1].Nak(); _ = s[2].Ack() }, "[nak]"},
		{"the longest delay wins", func(s []acker) {
			_ = s[0].NakWithDelay(time.Second)
			_ = s[1].Ack()
			_ = s[2].NakWithDelay(250 * time.Millisecond)
		}, "[nak 1s]"},
		{"a share left unsettled holds the batch", func(s []acker) { _ = s[0].Ack(); _ = s[2].Ack() }, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &settledMsg{}
			b := newBatchAck(m, 3)
			shares := []acker{b.share(), b.share(), b.share()}
			tc.shares(shares)
			if got := fmt.Sprint(m.result()); got != tc.want {
				t.Errorf("message settled %s, want %s", got, tc.want)
			}
		})
	}
}

// TestUnwantedSignalsGoUndecoded: in fast mode every node receives every
// signal subject other nodes send. A node lets a stamped message whose
// type no local subscription wants go undecoded, yet keeps counting that
// publisher's sequence across it: no false loss when a wanted signal
// follows an unwanted run. A type a group of the node takes is wanted.
func TestUnwantedSignalsGoUndecoded(t *testing.T) {
	for _, enc := range []Encoding{Binary, ProtobufBatch} {
		t.Run(enc.String(), func(t *testing.T) {
			ext := startNATS(t, false)
			pub := startNode(t, Config{Name: "pub", Mode: Fast, Encoding: enc, NATSURL: ext.ClientURL()})
			sub := startNode(t, Config{Name: "sub", Mode: Fast, Encoding: enc, NATSURL: ext.ClientURL()})
			wanted, mine := &inbox{}, &inbox{}
			if _, err := sub.Bus().Subscribe("u.wanted", wanted); err != nil {
				t.Fatal(err)
			}
			// A group's type counts as wanted (the receiver parks for it),
			// and only that type.
			if _, err := sub.Bus().Subscribe("u.grouped", &inbox{}, bus.WithGroup("g")); err != nil {
				t.Fatal(err)
			}
			if _, err := pub.Bus().Subscribe("u.mine", mine); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, []*Node{pub, sub})
			// What pub let go undecoded of sub's last probes, once they
			// are in: a fence from sub comes after them.
			waitFenced(t, sub, pub)
			pubUndecoded := pub.Stats().Undecoded
			const runs, runLength = 6, 50
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for r := range runs {
				batch := make([]bus.Signal, 0, runLength+1)
				for i := range runLength {
					batch = append(batch, bus.Signal{Type: "u.wanted", Source: "/pub", Subject: strconv.Itoa(r*runLength + i)})
				}
				batch = append(batch, bus.Signal{Type: "u.mine", Source: "/pub", Subject: strconv.Itoa(r)})
				if err := pub.Bus().Publish(ctx, batch...); err != nil {
					t.Fatal(err)
				}
			}
			checkSequence(t, wanted.wait(t, runs*runLength), 0, runs*runLength)
			checkSequence(t, mine.wait(t, runs), 0, runs)
			for _, n := range []*Node{pub, sub} {
				st := n.Stats()
				if st.Lost != 0 {
					t.Errorf("%s counted %d signals lost; the ones it let go undecoded were not lost", n.Name(), st.Lost)
				}
				switch {
				case n == sub && st.Undecoded == 0:
					t.Errorf("%s decoded every message, though it has no subscription for one of the two types", n.Name())
				case n == pub && st.Undecoded != pubUndecoded:
					// Its own signals do not come back to it (ownDelivery).
					t.Errorf("%s let %d messages go undecoded, %d of them after the probes; none of its own should reach it",
						n.Name(), st.Undecoded, st.Undecoded-pubUndecoded)
				}
			}
		})
	}
}

func TestMsgPoolLendsWhatItWasGiven(t *testing.T) {
	var nilPool *msgPool
	if m := nilPool.get(); m != nil {
		t.Fatal("a nil pool lent a message")
	}
	nilPool.put(&nats.Msg{Data: make([]byte, 10)}) // keeps nothing, does not panic
	var p msgPool
	if m := p.get(); m == nil {
		t.Fatal("an empty pool lent nothing; it makes a message")
	}
	m := &nats.Msg{Data: make([]byte, 5, 1024)}
	p.put(m)
	// sync.Pool may drop what it holds at any GC: get returns either a
	// new message or the one given, its body emptied.
	if got := p.get(); got == m && (len(got.Data) != 0 || cap(got.Data) != 1024) {
		t.Errorf("lent the message back with a body of len %d cap %d, want it emptied", len(got.Data), cap(got.Data))
	}
	big := &nats.Msg{Data: make([]byte, 0, maxPooledBody+1)}
	p.put(big)
	if got := p.get(); got == big {
		t.Errorf("kept a message with a %d-byte body, over the %d limit", cap(big.Data), maxPooledBody)
	}
}

// TestFastReceiverDropsWhatIsBehindItsPublisher: fast mode never repeats
// a signal nor lets one overtake another. A signal arriving with a number
// its publisher's sequence has passed here (seen already, or late behind
// later ones: a client that reconnected to another server while the old
// one's route was still behind) is dropped; the late one was counted lost
// when the gap was seen, and stays so.
func TestFastReceiverDropsWhatIsBehindItsPublisher(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		n := startNode(t, Config{Name: "solo", Mode: Fast, Encoding: enc})
		nc, err := nats.Connect(n.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		box := &inbox{}
		if _, err := n.Bus().Subscribe("job.*", box); err != nil {
			t.Fatal(err)
		}
		for _, seq := range []int{1, 2, 3, 2, 5, 4, 6} {
			s := bus.Signal{ID: bus.NewID(), Type: "job.run", Source: "/other", Subject: strconv.Itoa(seq)}
			stamp := func(_ int, dst []wire.Attr) []wire.Attr {
				return append(dst, wire.Attr{Name: ExtensionNode, Value: "other"}, wire.Attr{Name: ExtensionInstance, Value: "run-1"},
					wire.Attr{Name: ExtensionSequence, Value: strconv.Itoa(seq)})
			}
			var msg *nats.Msg
			if enc == ProtobufBatch {
				msg, err = wire.EncodePublished([]bus.Signal{s}, "", stamp)
			} else {
				msg, err = wire.Encode(s, "")
				for _, a := range stamp(0, nil) {
					msg.Header["ce-"+a.Name] = []string{a.Value}
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.PublishMsg(msg); err != nil {
				t.Fatal(err)
			}
		}
		got := box.wait(t, 5)
		time.Sleep(100 * time.Millisecond) // anything more would come right behind
		got = box.wait(t, 5)
		var subjects []string
		for _, s := range got {
			subjects = append(subjects, s.Subject)
		}
		if want := []string{"1", "2", "3", "5", "6"}; !slices.Equal(subjects, want) {
			t.Errorf("delivered %v, want %v", subjects, want)
		}
		if st := n.Stats(); st.Lost != 1 {
			t.Errorf("Stats %+v: lost %d, want 1 (#4, late)", st, st.Lost)
		}
	})
}
