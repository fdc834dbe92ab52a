package wire_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// benchSignal is a signal as the bus publishes it: a 128-byte payload, the
// trace context and a sequence extension.
func benchSignal(b *testing.B) bus.Signal {
	payload := make([]byte, 128)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	return mustSignal(b, "order.created", "/nodes/node-1", payload,
		bus.WithDataContentType("application/octet-stream"),
		bus.WithExtension("traceparent", traceParent),
		bus.WithExtension("seq", int64(123456)))
}

func BenchmarkEncode(b *testing.B) {
	s := benchSignal(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.Encode(s, wire.DefaultPrefix); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	s := benchSignal(b)
	binary, err := wire.Encode(s, wire.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(s)
	if err != nil {
		b.Fatal(err)
	}
	structured := &nats.Msg{Subject: binary.Subject, Header: nats.Header{"content-type": {"application/cloudevents+json"}}, Data: body}
	for _, bc := range []struct {
		name string
		msg  *nats.Msg
	}{{"mode=binary", binary}, {"mode=structured", structured}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wire.Decode(bc.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatch encodes and decodes 64 signals as one protobuf batch
// message; ns/op is per signal, to compare with Encode and Decode.
func BenchmarkBatch(b *testing.B) {
	signals := make([]bus.Signal, 64)
	for i := range signals {
		signals[i] = benchSignal(b)
	}
	stamp := func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: "sbnode", Value: "node-1"}, wire.Attr{Name: "sbseq", Value: "123456"})
	}
	b.Run("op=encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%len(signals) == 0 {
				if _, err := wire.EncodeBatch(signals, wire.DefaultPrefix, stamp); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	msg, err := wire.EncodeBatch(signals, wire.DefaultPrefix, stamp)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("op=decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%len(signals) == 0 {
				if _, err := wire.DecodeAll(msg); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	// What a fast node's receiver does: a kept Decoder, no validation
	// (Dispatch validates), the events stamped as a node sends them (its
	// name and run repeat, the sequence number does not).
	stamped, err := wire.EncodeBatch(signals, wire.DefaultPrefix, func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: "sbnode", Value: "node-1"}, wire.Attr{Name: "sbinst", Value: "k3x9q2m1"},
			wire.Attr{Name: "sbseq", Value: strconv.Itoa(1_000_000 + i)})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("op=receive", func(b *testing.B) {
		var d wire.Decoder
		var events []wire.Event
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%len(signals) == 0 {
				clear(events)
				if events, err = d.AppendBatchUnchecked(events[:0], stamped.Data); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
