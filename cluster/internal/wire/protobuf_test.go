package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	cepb "github.com/cloudevents/sdk-go/binding/format/protobuf/v2"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// typedExtensions is the oracle for a protobuf round trip, which keeps
// types: every integer comes back as an int32, a time as the same instant,
// a URL as a *url.URL. Times and URLs are rendered as strings so that
// DeepEqual compares instants and text, not representations.
func typedExtensions(ext map[string]any) map[string]any {
	if ext == nil {
		return nil
	}
	out := make(map[string]any, len(ext))
	for k, v := range ext {
		switch x := v.(type) {
		case int:
			v = int32(x)
		case int8:
			v = int32(x)
		case int16:
			v = int32(x)
		case int64:
			v = int32(x)
		case uint8:
			v = int32(x)
		case uint16:
			v = int32(x)
		case uint32:
			v = int32(x)
		case time.Time:
			v = "time " + x.UTC().Format(time.RFC3339Nano)
		case *url.URL:
			v = "url " + x.String()
		}
		out[k] = v
	}
	return out
}

// diffTyped compares two signals with typed extensions.
func diffTyped(want, got bus.Signal) string {
	w, g := want, got
	w.Extensions, g.Extensions = nil, nil
	if len(w.Data) == 0 {
		w.Data = nil
	}
	if w.SpecVersion == "" {
		w.SpecVersion = bus.SpecVersion
	}
	d := diffSignals(w, g)
	if we, ge := typedExtensions(want.Extensions), typedExtensions(got.Extensions); !reflect.DeepEqual(we, ge) {
		if d != "" {
			d += "\n"
		}
		d += "Extensions differ:\n got  " + jsonString(ge) + "\n want " + jsonString(we)
	}
	return d
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// batchEvents splits a CloudEventBatch body into its encoded events, with
// the protobuf library's own wire reader.
func batchEvents(t *testing.T, body []byte) [][]byte {
	t.Helper()
	var events [][]byte
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			t.Fatalf("batch field: num %d type %d (n %d), want events (1, bytes)", num, typ, n)
		}
		body = body[n:]
		raw, m := protowire.ConsumeBytes(body)
		if m < 0 {
			t.Fatalf("batch event: %v", protowire.ParseError(m))
		}
		events = append(events, raw)
		body = body[m:]
	}
	return events
}

func TestBatchRoundTrip(t *testing.T) {
	for name, s := range roundTripSignals(t) {
		t.Run(name, func(t *testing.T) {
			msg, err := wire.EncodeBatch([]bus.Signal{s}, "", nil)
			if err != nil {
				t.Fatalf("EncodeBatch: %v", err)
			}
			if want := "signals." + s.Type; msg.Subject != want {
				t.Errorf("subject = %q, want %q", msg.Subject, want)
			}
			if got := msg.Header.Get("content-type"); got != wire.ProtobufBatchContentType {
				t.Errorf("content-type = %q, want %q", got, wire.ProtobufBatchContentType)
			}
			events, err := wire.DecodeAll(msg)
			if err != nil {
				t.Fatalf("DecodeAll: %v", err)
			}
			if len(events) != 1 || events[0].Err != nil {
				t.Fatalf("DecodeAll gave %d events (first error %v), want 1 signal", len(events), firstErr(events))
			}
			if d := diffTyped(s, events[0].Signal); d != "" {
				t.Errorf("round trip differs:\n%s", d)
			}
		})
	}
}

func firstErr(events []wire.Event) error {
	for _, e := range events {
		if e.Err != nil {
			return e.Err
		}
	}
	return nil
}

func TestEncodeBatchKeepsOrderAndStamps(t *testing.T) {
	signals := make([]bus.Signal, 5)
	for i := range signals {
		signals[i] = mustSignal(t, "order.created", "/orders", map[string]int{"n": i},
			bus.WithExtension("traceparent", traceParent))
	}
	msg, err := wire.EncodeBatch(signals, "custom", func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: "sbseq", Value: strconv.Itoa(100 + i)}, wire.Attr{Name: "sbnode", Value: "n1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "custom.order.created" {
		t.Errorf("subject = %q", msg.Subject)
	}
	if id := msg.Header.Get(nats.MsgIdHdr); id != "" {
		t.Errorf("Nats-Msg-Id = %q, want none (the caller names a batch)", id)
	}
	events, err := wire.DecodeAll(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(signals) {
		t.Fatalf("%d events, want %d", len(events), len(signals))
	}
	for i, e := range events {
		if e.Err != nil {
			t.Fatalf("event %d: %v", i, e.Err)
		}
		want := signals[i].Clone()
		want.Extensions["sbseq"] = strconv.Itoa(100 + i)
		want.Extensions["sbnode"] = "n1"
		if d := diffTyped(want, e.Signal); d != "" {
			t.Errorf("event %d differs:\n%s", i, d)
		}
		if e.Signal.DataContentType != "application/json" {
			t.Errorf("event %d: datacontenttype %q", i, e.Signal.DataContentType)
		}
	}
}

func TestEncodeBatchRefuses(t *testing.T) {
	a := mustSignal(t, "a", "/s", nil)
	b := mustSignal(t, "b", "/s", nil)
	for _, tc := range []struct {
		name    string
		signals []bus.Signal
	}{
		{"no signals", nil},
		{"two types", []bus.Signal{a, b}},
		{"no id", []bus.Signal{{Type: "a", Source: "/s"}}},
		{"bad extension value", []bus.Signal{{ID: "1", Type: "a", Source: "/s", Extensions: map[string]any{"x": 1.5}}}},
		{"year 10000", []bus.Signal{{ID: "1", Type: "a", Source: "/s", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := wire.EncodeBatch(tc.signals, "", nil); !errors.Is(err, bus.ErrInvalidSignal) {
				t.Errorf("EncodeBatch error = %v, want one wrapping bus.ErrInvalidSignal", err)
			}
		})
	}
}

// TestBatchReadByTheCloudEventsSDK checks interoperability one way: every
// event of a batch the node sends is a CloudEvent the CloudEvents Go SDK's
// protobuf format reads, with its attributes and data.
func TestBatchReadByTheCloudEventsSDK(t *testing.T) {
	when := time.Date(2026, 11, 27, 8, 30, 0, 123456789, time.UTC)
	signals := []bus.Signal{
		mustSignal(t, "order.created", "/orders", map[string]any{"id": 1},
			bus.WithSubject("order-1"), bus.WithTime(when),
			bus.WithExtension("tenant", "acme"), bus.WithExtension("count", 3), bus.WithExtension("flag", true)),
		mustSignal(t, "order.created", "/orders", []byte{0, 1, 2, 0xff},
			bus.WithDataContentType("application/octet-stream"), bus.WithTime(when)),
	}
	msg, err := wire.EncodeBatch(signals, "", func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: "sbseq", Value: strconv.Itoa(i + 1)})
	})
	if err != nil {
		t.Fatal(err)
	}
	raws := batchEvents(t, msg.Data)
	if len(raws) != len(signals) {
		t.Fatalf("%d events in the batch, want %d", len(raws), len(signals))
	}
	for i, raw := range raws {
		var container pb.CloudEvent
		if err := proto.Unmarshal(raw, &container); err != nil {
			t.Fatalf("event %d: proto.Unmarshal: %v", i, err)
		}
		e, err := cepb.FromProto(&container)
		if err != nil {
			t.Fatalf("event %d: FromProto: %v", i, err)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("event %d: the SDK finds it invalid: %v", i, err)
		}
		s := signals[i]
		if e.ID() != s.ID || e.Source() != s.Source || e.Type() != s.Type || e.SpecVersion() != "1.0" {
			t.Errorf("event %d: id %q source %q type %q specversion %q, want %q %q %q 1.0",
				i, e.ID(), e.Source(), e.Type(), e.SpecVersion(), s.ID, s.Source, s.Type)
		}
		if !e.Time().Equal(s.Time) || e.Subject() != s.Subject || e.DataContentType() != s.DataContentType {
			t.Errorf("event %d: time %v subject %q datacontenttype %q, want %v %q %q",
				i, e.Time(), e.Subject(), e.DataContentType(), s.Time, s.Subject, s.DataContentType)
		}
		if !bytes.Equal(e.Data(), s.Data) {
			t.Errorf("event %d: data %q, want %q", i, e.Data(), s.Data)
		}
		if got := e.Extensions()["sbseq"]; got != strconv.Itoa(i+1) {
			t.Errorf("event %d: sbseq = %#v, want %q", i, got, strconv.Itoa(i+1))
		}
	}
	var first pb.CloudEvent
	if err := proto.Unmarshal(raws[0], &first); err != nil {
		t.Fatal(err)
	}
	e, err := cepb.FromProto(&first)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]any{"tenant": "acme", "count": int32(3), "flag": true} {
		if got := e.Extensions()[name]; got != want {
			t.Errorf("extension %s = %#v, want %#v (types kept)", name, got, want)
		}
	}
}

// TestBatchFromTheCloudEventsSDK checks the other way: events the SDK
// turns into protobuf, put in a CloudEventBatch, are read as signals; and
// one event in the SDK's protobuf format, as a structured-mode message.
func TestBatchFromTheCloudEventsSDK(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	var body []byte
	var events []event.Event
	for i := range 3 {
		e := event.New()
		e.SetID("sdk-" + strconv.Itoa(i))
		e.SetSource("/sdk")
		e.SetType("sdk.sent")
		e.SetTime(when)
		e.SetSubject("s" + strconv.Itoa(i))
		e.SetExtension("tenant", "acme")
		if err := e.SetData("application/json", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
		container, err := cepb.ToProto(&e)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(container)
		if err != nil {
			t.Fatal(err)
		}
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendBytes(body, raw)
		events = append(events, e)
	}
	msg := &nats.Msg{Subject: "signals.sdk.sent", Header: nats.Header{"Content-Type": {"Application/CloudEvents-Batch+Protobuf; charset=binary"}}, Data: body}
	got, err := wire.DecodeAll(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(events) {
		t.Fatalf("%d events, want %d", len(got), len(events))
	}
	for i, g := range got {
		if g.Err != nil {
			t.Fatalf("event %d: %v", i, g.Err)
		}
		e := events[i]
		want := bus.Signal{ID: e.ID(), Source: e.Source(), Type: e.Type(), SpecVersion: "1.0", Time: when,
			Subject: e.Subject(), DataContentType: "application/json", Data: e.Data(),
			Extensions: map[string]any{"tenant": "acme"}}
		if d := diffTyped(want, g.Signal); d != "" {
			t.Errorf("event %d differs:\n%s", i, d)
		}
	}

	single, err := cepb.Protobuf.Marshal(&events[1])
	if err != nil {
		t.Fatal(err)
	}
	s, err := wire.Decode(&nats.Msg{Subject: "signals.sdk.sent", Header: nats.Header{"content-type": {wire.ProtobufContentType}}, Data: single})
	if err != nil {
		t.Fatalf("Decode of one protobuf event: %v", err)
	}
	if s.ID != "sdk-1" || s.Subject != "s1" || !bytes.Equal(s.Data, events[1].Data()) {
		t.Errorf("one protobuf event decoded as %+v", s)
	}
}

func TestDecodeRefusesABatchWithoutDecodeAll(t *testing.T) {
	msg, err := wire.EncodeBatch([]bus.Signal{mustSignal(t, "a", "/s", nil)}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wire.Decode(msg)
	if !errors.Is(err, wire.ErrNotCloudEvent) || wire.Reason(err) != wire.ReasonUnsupportedFormat {
		t.Errorf("Decode of a batch: %v (reason %q), want unsupported_format", err, wire.Reason(err))
	}
}

// protoEvent builds a CloudEvent message field by field, for the reject
// cases: each field is (number, wire type, value).
type pbField struct {
	num   protowire.Number
	typ   protowire.Type
	bytes []byte
	n     uint64
}

func pbMessage(fields ...pbField) []byte {
	var b []byte
	for _, f := range fields {
		b = protowire.AppendTag(b, f.num, f.typ)
		if f.typ == protowire.VarintType {
			b = protowire.AppendVarint(b, f.n)
		} else {
			b = protowire.AppendBytes(b, f.bytes)
		}
	}
	return b
}

func str(num protowire.Number, s string) pbField {
	return pbField{num: num, typ: protowire.BytesType, bytes: []byte(s)}
}

func msgField(num protowire.Number, fields ...pbField) pbField {
	return pbField{num: num, typ: protowire.BytesType, bytes: pbMessage(fields...)}
}

func attr(name string, value ...pbField) pbField {
	return msgField(5, str(1, name), msgField(2, value...))
}

func validEvent(extra ...pbField) []byte {
	return pbMessage(append([]pbField{str(1, "id-1"), str(2, "/src"), str(3, "1.0"), str(4, "a.b")}, extra...)...)
}

func TestDecodeBatchRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		event  []byte
		reason string
	}{
		{"no id", pbMessage(str(2, "/src"), str(3, "1.0"), str(4, "a")), wire.ReasonMissingID},
		{"empty source", pbMessage(str(1, "1"), str(2, ""), str(3, "1.0"), str(4, "a")), wire.ReasonMissingSource},
		{"no type", pbMessage(str(1, "1"), str(2, "/s"), str(3, "1.0")), wire.ReasonMissingType},
		{"no specversion", pbMessage(str(1, "1"), str(2, "/s"), str(4, "a")), wire.ReasonMissingSpecVersion},
		{"specversion 0.3", pbMessage(str(1, "1"), str(2, "/s"), str(3, "0.3"), str(4, "a")), wire.ReasonBadSpecVersion},
		{"type outside the grammar", pbMessage(str(1, "1"), str(2, "/s"), str(3, "1.0"), str(4, "a..b")), wire.ReasonBadType},
		{"id as a varint", pbMessage(pbField{num: 1, typ: protowire.VarintType, n: 7}, str(2, "/s"), str(3, "1.0"), str(4, "a")), wire.ReasonBadStructured},
		{"id not UTF-8", pbMessage(str(1, "\xff"), str(2, "/s"), str(3, "1.0"), str(4, "a")), wire.ReasonBadEncoding},
		{"extension name upper-case", validEvent(attr("Tenant", str(3, "x"))), wire.ReasonBadExtension},
		{"attribute without a value", validEvent(msgField(5, str(1, "x"))), wire.ReasonBadStructured},
		{"attribute with an empty value", validEvent(attr("x")), wire.ReasonBadStructured},
		{"time as a bool", validEvent(attr("time", pbField{num: 1, typ: protowire.VarintType, n: 1})), wire.ReasonBadTime},
		{"time not RFC 3339", validEvent(attr("time", str(3, "yesterday"))), wire.ReasonBadTime},
		{"timestamp nanos out of range", validEvent(attr("when", msgField(7, pbField{num: 2, typ: protowire.VarintType, n: 2_000_000_000}))), wire.ReasonBadStructured},
		{"id as an attribute", validEvent(attr("id", str(3, "other"))), wire.ReasonDuplicateHeader},
		{"text data not UTF-8", validEvent(str(7, "\xfe")), wire.ReasonBadEncoding},
		{"truncated field", append(validEvent(), 0x0a, 0x05, 'a'), wire.ReasonBadStructured},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := validEvent()
			body := pbMessage(pbField{num: 1, typ: protowire.BytesType, bytes: good},
				pbField{num: 1, typ: protowire.BytesType, bytes: tc.event},
				pbField{num: 1, typ: protowire.BytesType, bytes: good})
			events, err := wire.DecodeBatch(body)
			if err != nil {
				t.Fatalf("DecodeBatch: %v, want per-event errors", err)
			}
			if len(events) != 3 {
				t.Fatalf("%d events, want 3", len(events))
			}
			if events[0].Err != nil || events[2].Err != nil {
				t.Errorf("the valid events around the bad one failed: %v, %v", events[0].Err, events[2].Err)
			}
			bad := events[1]
			if !errors.Is(bad.Err, wire.ErrNotCloudEvent) {
				t.Fatalf("bad event error = %v, want one wrapping ErrNotCloudEvent", bad.Err)
			}
			if got := wire.Reason(bad.Err); got != tc.reason {
				t.Errorf("reason = %q, want %q (error %v)", got, tc.reason, bad.Err)
			}
			if !bytes.Equal(bad.Raw, tc.event) {
				t.Errorf("Raw is not the bad event's bytes")
			}
		})
	}
}

func TestDecodeBatchRejectsAMalformedBody(t *testing.T) {
	for name, body := range map[string][]byte{
		"not protobuf":        []byte("hello, world"),
		"events as a varint":  pbMessage(pbField{num: 1, typ: protowire.VarintType, n: 1}),
		"truncated event":     {0x0a, 0x10, 0x0a},
		"an end-group tag":    {0x0c},
		"a varint never ends": {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			events, err := wire.DecodeBatch(body)
			if !errors.Is(err, wire.ErrNotCloudEvent) || wire.Reason(err) != wire.ReasonBadStructured {
				t.Errorf("DecodeBatch = %d events, %v (reason %q), want a bad_structured error", len(events), err, wire.Reason(err))
			}
		})
	}
}

func TestDecodeBatchSkipsUnknownFields(t *testing.T) {
	body := pbMessage(pbField{num: 9, typ: protowire.VarintType, n: 3},
		pbField{num: 1, typ: protowire.BytesType, bytes: validEvent(pbField{num: 99, typ: protowire.BytesType, bytes: []byte("future")})})
	events, err := wire.DecodeBatch(body)
	if err != nil || len(events) != 1 || events[0].Err != nil {
		t.Fatalf("DecodeBatch = %v, %v; want one signal", events, err)
	}
	if events[0].Signal.ID != "id-1" {
		t.Errorf("signal %+v", events[0].Signal)
	}
}

// checkPartialReaders checks that AppendBatch and BatchStamps read body as
// DecodeBatch did (events, err).
func checkPartialReaders(t *testing.T, body []byte, events []wire.Event, err error) {
	t.Helper()
	// Two kinds of dst: one without room (AppendBatch moves to a new
	// array) and one with more room than the body has events (each takes
	// two bytes at least), filled with live values that AppendBatch may
	// overwrite only by appending: on error it clears what it appended and
	// nothing else.
	for _, room := range []int{0, len(body)/2 + 1} {
		backing := make([]wire.Event, 1+room)
		for i := range backing {
			backing[i].Raw = []byte("live")
		}
		backing[0].Raw = []byte("kept")
		dst := backing[:1]
		appended, aerr := wire.AppendBatch(dst, body)
		if (aerr != nil) != (err != nil) {
			t.Fatalf("AppendBatch error %v, DecodeBatch error %v", aerr, err)
		}
		if err != nil {
			if len(appended) != 1 || string(appended[0].Raw) != "kept" {
				t.Fatalf("AppendBatch failed but changed dst: %d events", len(appended))
			}
			for i, e := range backing[1:] {
				if e.Raw != nil && string(e.Raw) != "live" {
					t.Fatalf("AppendBatch failed and left event %d behind in dst's room", i)
				}
			}
			if room > 0 && string(backing[room].Raw) != "live" {
				t.Fatal("AppendBatch failed and cleared room it had not appended to")
			}
		} else if len(appended) != 1+len(events) || string(appended[0].Raw) != "kept" {
			t.Fatalf("AppendBatch gave %d events after dst, DecodeBatch %d", len(appended)-1, len(events))
		}
	}
	// A Decoder kept from an earlier body (other source, type, names and
	// values) must decode this one as a fresh one does.
	var kept wire.Decoder
	if _, err := kept.AppendBatch(nil, primerBody); err != nil {
		t.Fatal(err)
	}
	again, kerr := kept.AppendBatch(nil, body)
	if (kerr != nil) != (err != nil) || len(again) != len(events) {
		t.Fatalf("kept Decoder: %d events, error %v; DecodeBatch %d, %v", len(again), kerr, len(events), err)
	}
	for i, e := range events {
		k := again[i]
		if (k.Err != nil) != (e.Err != nil) || (e.Err != nil && wire.Reason(k.Err) != wire.Reason(e.Err)) {
			t.Fatalf("event %d: kept Decoder's error %v, DecodeBatch's %v", i, k.Err, e.Err)
		}
		if e.Err != nil {
			continue
		}
		if d := diffTyped(e.Signal, k.Signal); d != "" {
			t.Fatalf("event %d: kept Decoder's signal differs:\n%s", i, d)
		}
	}
	unchecked, uerr := wire.AppendBatchUnchecked(nil, body)
	if (uerr != nil) != (err != nil) || len(unchecked) != len(events) {
		t.Fatalf("AppendBatchUnchecked: %d events, error %v; DecodeBatch %d, %v", len(unchecked), uerr, len(events), err)
	}
	for i, e := range events {
		u := unchecked[i]
		if !bytes.Equal(u.Raw, e.Raw) {
			t.Fatalf("event %d: AppendBatchUnchecked's raw bytes are not DecodeBatch's", i)
		}
		switch {
		case e.Err == nil && u.Err != nil:
			t.Fatalf("event %d: AppendBatchUnchecked refused what DecodeBatch took: %v", i, u.Err)
		case e.Err == nil:
			if d := diffTyped(e.Signal, u.Signal); d != "" {
				t.Fatalf("event %d: AppendBatchUnchecked's signal differs:\n%s", i, d)
			}
		case u.Err != nil:
			if wire.Reason(u.Err) != wire.Reason(e.Err) {
				t.Fatalf("event %d: AppendBatchUnchecked's reason %q, DecodeBatch's %q", i, wire.Reason(u.Err), wire.Reason(e.Err))
			}
		default:
			// Left to the caller's validation: Check must find what
			// DecodeBatch found.
			cerr := wire.Check(u.Signal)
			if cerr == nil || wire.Reason(cerr) != wire.Reason(e.Err) {
				t.Fatalf("event %d: Check gives %v, DecodeBatch refused it with %v", i, cerr, e.Err)
			}
		}
	}
	names := []string{"sbnode", "sbseq", "tenant"}
	first, last, n, serr := wire.BatchStamps(body, names...)
	if (serr != nil) != (err != nil) {
		t.Fatalf("BatchStamps error %v, DecodeBatch error %v", serr, err)
	}
	keptFirst, keptLast, keptN, _ := kept.BatchStamps(body, names...)
	if keptFirst != first || keptLast != last || keptN != n {
		t.Fatalf("a kept Decoder's BatchStamps %+v %+v %d differ from a fresh one's %+v %+v %d", keptFirst, keptLast, keptN, first, last, n)
	}
	if err != nil {
		return
	}
	if n != len(events) {
		t.Fatalf("BatchStamps counted %d events, DecodeBatch decoded %d", n, len(events))
	}
	if n == 0 {
		return
	}
	for _, end := range []struct {
		name string
		got  wire.Stamps
		want wire.Event
	}{{"first", first, events[0]}, {"last", last, events[n-1]}} {
		if end.want.Err != nil {
			continue // nothing promised of an event that is not a signal
		}
		if !end.got.OK || end.got.Type != end.want.Signal.Type {
			t.Fatalf("BatchStamps' %s event: OK %v, type %q; DecodeBatch's type %q", end.name, end.got.OK, end.got.Type, end.want.Signal.Type)
		}
		for i, name := range names {
			want, _ := end.want.Signal.Extensions[name].(string)
			if end.got.Values[i] != want {
				t.Fatalf("BatchStamps' %s event: %s = %q, DecodeBatch's %q", end.name, name, end.got.Values[i], want)
			}
		}
	}
}

// checkEventsDecodeAsAlone checks that each event of a decoded batch is
// what the event decodes to alone: the decoder shares work between the
// events of a batch (strings, repeated values, the layout of extensions),
// and none of it may show. Each event's extensions must also be a map of
// its own: they are changed here, and no other event may see it.
func checkEventsDecodeAsAlone(t *testing.T, events []wire.Event) {
	t.Helper()
	alone := make([]wire.Event, len(events))
	for i, e := range events {
		got, err := wire.DecodeBatch(pbMessage(pbField{num: 1, typ: protowire.BytesType, bytes: e.Raw}))
		if err != nil || len(got) != 1 {
			t.Fatalf("event %d alone: %d events, %v", i, len(got), err)
		}
		alone[i] = got[0]
		if (e.Err == nil) != (got[0].Err == nil) || wire.Reason(e.Err) != wire.Reason(got[0].Err) {
			t.Fatalf("event %d: %v in the batch, %v alone", i, e.Err, got[0].Err)
		}
		if !reflect.DeepEqual(e.Signal, got[0].Signal) {
			t.Fatalf("event %d differs from the event alone:\n batch %+v\n alone %+v", i, e.Signal, got[0].Signal)
		}
	}
	for i, e := range events {
		if e.Signal.Extensions != nil {
			e.Signal.Extensions["zzchanged"] = i
		}
	}
	for i, e := range events {
		if e.Signal.Extensions == nil {
			continue
		}
		delete(e.Signal.Extensions, "zzchanged")
		if !reflect.DeepEqual(e.Signal.Extensions, alone[i].Signal.Extensions) {
			t.Fatalf("event %d's extensions changed with another event's: %v, want %v", i, e.Signal.Extensions, alone[i].Signal.Extensions)
		}
	}
}

// TestBatchEventsDecodeAsAlone decodes a batch whose events repeat,
// reorder, change and repeat within themselves their extensions, the
// cases where the decoder's sharing between events could show.
func TestBatchEventsDecodeAsAlone(t *testing.T) {
	s := func(v string) pbField { return str(3, v) }
	bytesValue := func(v string) pbField { return str(4, v) }
	many := func(prefix string) []pbField {
		var out []pbField
		for i := range 10 {
			out = append(out, attr(fmt.Sprintf("x%d", i), s(fmt.Sprintf("%s%d", prefix, i))))
		}
		return out
	}
	layouts := [][]pbField{
		{attr("sbnode", s("n1")), attr("sbseq", s("1"))},
		{attr("sbnode", s("n1")), attr("sbseq", s("2"))},
		{attr("sbnode", s("n2")), attr("sbseq", s("3"))},
		{attr("sbseq", s("4")), attr("sbnode", s("n2"))},
		{attr("sbnode", s("n1")), attr("sbnode", s("n9"))}, // a name twice: the last value wins
		{attr("sbnode", s("n8")), attr("sbnode", s("n9"))},
		{attr("blob", bytesValue("ab")), attr("sbseq", s("5"))},
		{attr("blob", bytesValue("cd")), attr("sbseq", s("5"))},
		many("a"),
		many("b"),
		nil,
		{attr("sbnode", s("n1")), attr("sbseq", s("6")), attr("flag", pbField{num: 1, typ: protowire.VarintType, n: 1})},
		{attr("sbnode", s("n1")), attr("sbseq", s("7")), attr("flag", pbField{num: 1, typ: protowire.VarintType, n: 0})},
		{attr("sbnode", s("n1")), attr("sbseq", s("8")), attr("flag", pbField{num: 1, typ: protowire.VarintType, n: 0})},
	}
	var fields []pbField
	for i, attrs := range layouts {
		event := pbMessage(append([]pbField{str(1, fmt.Sprint("id-", i)), str(2, "/src"), str(3, "1.0"), str(4, "a.b")}, attrs...)...)
		fields = append(fields, pbField{num: 1, typ: protowire.BytesType, bytes: event})
	}
	events, err := wire.DecodeBatch(pbMessage(fields...))
	if err != nil || len(events) != len(layouts) {
		t.Fatalf("DecodeBatch: %d events, %v", len(events), err)
	}
	if got := events[4].Signal.Extensions["sbnode"]; got != "n9" {
		t.Errorf("a repeated name's value is %v, want the last (n9)", got)
	}
	if got := events[5].Signal.Extensions["sbnode"]; got != "n9" {
		t.Errorf("a repeated name's value is %v, want the last (n9)", got)
	}
	checkEventsDecodeAsAlone(t, events)
}

// primerBody is a batch a kept Decoder reads before the body under test:
// the attribute names the tests and the fuzzer use most, with other values.
var primerBody = func() []byte {
	var events []pbField
	for i, source := range []string{"/primer", "/orders"} {
		events = append(events, pbField{num: 1, typ: protowire.BytesType, bytes: pbMessage(
			str(1, fmt.Sprintf("primer-%d", i)), str(2, source), str(3, "1.0"), str(4, "primer.type"),
			attr("datacontenttype", str(3, "text/plain")),
			attr("sbnode", str(3, "primer-node")), attr("sbseq", str(3, fmt.Sprint(7+i))),
			attr("subject", str(3, "primer")), attr("flag", pbField{num: 1, typ: protowire.VarintType, n: 1}))})
	}
	return pbMessage(events...)
}()

func TestPartialReadersAgreeWithDecodeBatch(t *testing.T) {
	signals := make([]bus.Signal, 3)
	for i := range signals {
		signals[i] = mustSignal(t, "order.created", "/orders", map[string]int{"n": i})
	}
	three, err := wire.EncodeBatch(signals, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	one, err := wire.EncodeBatch(signals[:1], "", nil)
	if err != nil {
		t.Fatal(err)
	}
	stamped, err := wire.EncodeBatch(signals, "", func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: "sbnode", Value: "node-a"}, wire.Attr{Name: "sbseq", Value: strconv.Itoa(i)})
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"three events":   three.Data,
		"stamped events": stamped.Data,
		"one event":      one.Data,
		"no events":      nil,
		"invalid extension name": pbMessage(pbField{num: 1, typ: protowire.BytesType, bytes: validEvent()},
			pbField{num: 1, typ: protowire.BytesType, bytes: validEvent(attr("BAD", str(3, "x")))}),
		"bad first event":   pbMessage(msgField(1, str(1, "id-1")), msgField(1), pbField{num: 1, typ: protowire.BytesType, bytes: validEvent()}),
		"bad last event":    pbMessage(pbField{num: 1, typ: protowire.BytesType, bytes: validEvent()}, msgField(1, str(4, "a..b"))),
		"malformed at last": append(append([]byte{}, three.Data...), 0x0a, 0x10),
		"events as varints": pbMessage(pbField{num: 1, typ: protowire.VarintType, n: 1}),
	} {
		t.Run(name, func(t *testing.T) {
			events, err := wire.DecodeBatch(body)
			checkPartialReaders(t, body, events, err)
		})
	}
	if _, _, n, err := wire.BatchStamps(three.Data); err != nil || n != 3 {
		t.Errorf("BatchStamps of three events = %d, %v", n, err)
	}
}

// FuzzDecodeBatch feeds DecodeBatch any body. It must not panic; every
// error must wrap ErrNotCloudEvent with a known reason; a decoded signal
// must encode again, and from then on round-trip unchanged.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range roundTripSignals(f) {
		m, err := wire.EncodeBatch([]bus.Signal{s, s}, "", func(i int, dst []wire.Attr) []wire.Attr {
			return append(dst, wire.Attr{Name: "sbseq", Value: strconv.Itoa(i)})
		})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Data)
	}
	f.Add(pbMessage(pbField{num: 1, typ: protowire.BytesType, bytes: validEvent(attr("time", str(3, "2020-01-01T00:00:00+01:00")))}))
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := wire.DecodeBatch(body)
		checkPartialReaders(t, body, events, err)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		checkEventsDecodeAsAlone(t, events)
		for _, e := range events {
			if e.Err != nil {
				checkDecodeError(t, e.Err)
				continue
			}
			d1 := e.Signal
			m, err := wire.EncodeBatch([]bus.Signal{d1}, "", nil)
			if err != nil {
				t.Fatalf("a decoded signal does not encode: %v\n%+v", err, d1)
			}
			d2 := decodeOne(t, m)
			m, err = wire.EncodeBatch([]bus.Signal{d2}, "", nil)
			if err != nil {
				t.Fatalf("a decoded signal does not encode: %v\n%+v", err, d2)
			}
			d3 := decodeOne(t, m)
			if d := diffTyped(d2, d3); d != "" {
				t.Fatalf("not a fixed point:\n%s", d)
			}
		}
	})
}

func decodeOne(t *testing.T, m *nats.Msg) bus.Signal {
	t.Helper()
	events, err := wire.DecodeAll(m)
	if err != nil || len(events) != 1 || events[0].Err != nil {
		t.Fatalf("a re-encoded signal does not decode: %v, %v", err, firstErr(events))
	}
	return events[0].Signal
}

func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, wire.ErrNotCloudEvent) {
		t.Fatalf("error does not wrap ErrNotCloudEvent: %v", err)
	}
	if r := wire.Reason(err); !knownReasons[r] {
		t.Fatalf("unknown reason %q for %v", r, err)
	}
}

// TestDecodeBatchReadsContextAttributesOfAnyStringKind: a writer may give
// time as a timestamp or as an RFC 3339 string (ce_string or ce_uri_ref),
// and subject as ce_string or ce_uri_ref; dataschema may also come as
// ce_uri, kept as its text.
func TestDecodeBatchReadsContextAttributesOfAnyStringKind(t *testing.T) {
	want := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, fields := range map[string][]pbField{
		"time as ce_string":        {attr("time", str(3, "2020-01-01T00:00:00Z"))},
		"time as ce_uri_ref":       {attr("time", str(6, "2020-01-01T00:00:00Z"))},
		"subject as ce_uri_ref":    {attr("subject", str(6, "orders/1")), attr("time", str(3, "2020-01-01T00:00:00Z"))},
		"dataschema as ce_uri":     {attr("dataschema", str(5, "https://example.com/s")), attr("time", str(3, "2020-01-01T00:00:00Z"))},
		"dataschema as ce_uri_ref": {attr("dataschema", str(6, "/s")), attr("time", str(3, "2020-01-01T00:00:00Z"))},
	} {
		t.Run(name, func(t *testing.T) {
			events, err := wire.DecodeBatch(pbMessage(pbField{num: 1, typ: protowire.BytesType, bytes: validEvent(fields...)}))
			if err != nil || len(events) != 1 || events[0].Err != nil {
				t.Fatalf("DecodeBatch = %v, %v", events, err)
			}
			s := events[0].Signal
			if !s.Time.Equal(want) {
				t.Errorf("time = %v, want %v", s.Time, want)
			}
			if name == "subject as ce_uri_ref" && s.Subject != "orders/1" {
				t.Errorf("subject = %q", s.Subject)
			}
			if strings.HasPrefix(name, "dataschema") && s.DataSchema == "" {
				t.Errorf("dataschema missing: %+v", s)
			}
		})
	}
}

// TestEncodePublishedWritesWhatEncodeBatchWrites: for signals that passed
// Publish's validation, skipping the check changes nothing in what goes
// on the wire, batch of many included; and the check is what it skips: a
// signal the bus would refuse is encoded as it is, for the receiver to
// refuse.
func TestEncodePublishedWritesWhatEncodeBatchWrites(t *testing.T) {
	var signals []bus.Signal
	for _, s := range roundTripSignals(t) {
		s.Type = "one.type" // a batch carries one type
		signals = append(signals, s)
	}
	stamp := func(i int, dst []wire.Attr) []wire.Attr {
		return append(dst, wire.Attr{Name: "sbseq", Value: strconv.Itoa(i)})
	}
	checked, err := wire.EncodeBatch(signals, "", stamp)
	if err != nil {
		t.Fatal(err)
	}
	published, err := wire.EncodePublished(signals, "", stamp)
	if err != nil {
		t.Fatalf("EncodePublished: %v", err)
	}
	if checked.Subject != published.Subject || !reflect.DeepEqual(checked.Header, published.Header) {
		t.Fatalf("subject or headers differ: %v %v, %v %v", checked.Subject, checked.Header, published.Subject, published.Header)
	}
	want, err := wire.DecodeBatch(checked.Data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeBatch(published.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(signals) || len(want) != len(signals) {
		t.Fatalf("decoded %d and %d events of %d", len(got), len(want), len(signals))
	}
	for i := range got {
		if got[i].Err != nil || want[i].Err != nil {
			t.Fatalf("event %d: %v, %v", i, got[i].Err, want[i].Err)
		}
		if d := diffTyped(want[i].Signal, got[i].Signal); d != "" {
			t.Fatalf("event %d: EncodePublished wrote another signal:\n%s", i, d)
		}
	}

	bad := mustSignal(t, "one.type", "/src", nil)
	bad.Extensions = map[string]any{"Upper": "x"}
	if _, err := wire.EncodeBatch([]bus.Signal{bad}, "", nil); !errors.Is(err, bus.ErrInvalidSignal) {
		t.Fatalf("EncodeBatch of an invalid signal: %v, want ErrInvalidSignal", err)
	}
	m, err := wire.EncodePublished([]bus.Signal{bad}, "", nil)
	if err != nil {
		t.Fatalf("EncodePublished checked what it is told is checked: %v", err)
	}
	events, err := wire.AppendBatchUnchecked(nil, m.Data)
	if err != nil || len(events) != 1 || events[0].Err != nil {
		t.Fatalf("AppendBatchUnchecked: %v %v", err, events)
	}
	if err := wire.Check(events[0].Signal); wire.Reason(err) != wire.ReasonBadExtension {
		t.Fatalf("Check = %v, want reason %s", err, wire.ReasonBadExtension)
	}
}

func TestEncodePublishedIntoUsesTheMessage(t *testing.T) {
	var signals []bus.Signal
	for _, s := range roundTripSignals(t) {
		s.Type = "one.type"
		signals = append(signals, s)
	}
	// sameEvents compares what two bodies decode to (extensions are
	// written in map order, so the bytes may differ).
	sameEvents := func(t *testing.T, got []byte) {
		t.Helper()
		events, err := wire.DecodeBatch(got)
		if err != nil || len(events) != len(signals) {
			t.Fatalf("decoded %d events, %v; want %d", len(events), err, len(signals))
		}
		for i, e := range events {
			if e.Err != nil {
				t.Fatalf("event %d: %v", i, e.Err)
			}
			if d := diffTyped(signals[i], e.Signal); d != "" {
				t.Fatalf("event %d differs:\n%s", i, d)
			}
		}
	}
	want, err := wire.EncodePublished(signals, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, want.Data)
	if got, err := wire.EncodePublishedInto(nil, signals, "", nil); err != nil || !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("EncodePublishedInto(nil) = %v, %v; want a new message like EncodePublished's", got, err)
	}
	// A message with room in its body, holding something else, and a
	// header that is not the batch header: the body is written into its
	// array, over what was there; the header is replaced, not changed.
	roomy := bytes.Repeat([]byte{0xee}, 4*len(want.Data))
	foreign := nats.Header{"content-type": {"text/plain"}, "x-other": {"1"}}
	into := &nats.Msg{Subject: "old", Data: roomy, Header: foreign}
	got, err := wire.EncodePublishedInto(into, signals, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != into {
		t.Fatal("EncodePublishedInto returned another message than the one it was given")
	}
	sameEvents(t, got.Data)
	if &got.Data[0] != &roomy[0] {
		t.Error("EncodePublishedInto did not use the body it had room in")
	}
	if !reflect.DeepEqual(got.Header, want.Header) || got.Subject != want.Subject {
		t.Errorf("message %s %v, want %s %v", got.Subject, got.Header, want.Subject, want.Header)
	}
	if len(foreign) != 2 || foreign.Get("content-type") != "text/plain" {
		t.Errorf("the header it replaced was changed: %v", foreign)
	}
	// Used again: the batch header it set is kept, the same map.
	header := got.Header
	if got, err = wire.EncodePublishedInto(got, signals[:1], "", nil); err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(got.Header).Pointer() != reflect.ValueOf(header).Pointer() {
		t.Error("EncodePublishedInto made a new header, though the message had the batch header")
	}
	// A body without room is left alone.
	small := []byte{1, 2, 3}
	got, err = wire.EncodePublishedInto(&nats.Msg{Data: small}, signals, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, got.Data)
	if !bytes.Equal(small, []byte{1, 2, 3}) {
		t.Errorf("EncodePublishedInto wrote into a body without room: %v", small)
	}
}

// TestDecodedDataDoesNotReachIntoTheNextEvent: a decoded event's data is a
// slice of the batch's body, shared with the other events' data (which
// other handlers read). Appending to it, as a handler may to a slice it
// only reads, must copy it, not write over the event that follows.
func TestDecodedDataDoesNotReachIntoTheNextEvent(t *testing.T) {
	var signals []bus.Signal
	for _, size := range []int{5, 200, 100, 300} { // lengths of one and of two bytes
		s := bus.Signal{ID: fmt.Sprintf("id-%d", size), Type: "t", Source: "/s", SpecVersion: bus.SpecVersion,
			DataContentType: "application/octet-stream", Data: bytes.Repeat([]byte{byte(size)}, size)}
		signals = append(signals, s)
	}
	msg, err := wire.EncodeBatch(signals, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, decode := range map[string]func([]byte) ([]wire.Event, error){
		"DecodeBatch":          wire.DecodeBatch,
		"AppendBatchUnchecked": func(b []byte) ([]wire.Event, error) { return new(wire.Decoder).AppendBatchUnchecked(nil, b) },
	} {
		t.Run(name, func(t *testing.T) {
			body := bytes.Clone(msg.Data)
			events, err := decode(body)
			if err != nil || len(events) != len(signals) {
				t.Fatalf("decoded %d events, err %v", len(events), err)
			}
			for i := range events {
				_ = append(events[i].Signal.Data, bytes.Repeat([]byte{0xee}, 400)...)
			}
			for i, e := range events {
				if !bytes.Equal(e.Signal.Data, signals[i].Data) {
					t.Errorf("event %d: data changed by an append to another event's data", i)
				}
			}
			if !bytes.Equal(body, msg.Data) {
				t.Error("the body changed under an append to an event's data")
			}
		})
	}
}
