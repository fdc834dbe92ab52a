package wire_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

const (
	traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceState  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

func mustSignal(t testing.TB, typ, source string, data any, opts ...bus.SignalOption) bus.Signal {
	t.Helper()
	s, err := bus.NewSignal(typ, source, data, opts...)
	if err != nil {
		t.Fatalf("NewSignal: %v", err)
	}
	return s
}

// roundTripSignals are representative signals, each of which must come
// back from Encode → Decode equal, up to extension types.
func roundTripSignals(t testing.TB) map[string]bus.Signal {
	t.Helper()
	u, _ := url.Parse("https://example.com/a b?q=é#frag")
	amsterdam1900 := time.Date(1900, 1, 1, 12, 0, 0, 0, time.FixedZone("LMT", 1172)) // +00:19:32
	return map[string]bus.Signal{
		"json data": mustSignal(t, "order.created", "/orders", map[string]any{"id": 42, "items": []string{"a", "b"}}),
		"binary data": mustSignal(t, "blob.stored", "/blobs", []byte{0, 1, 2, 0xfe, 0xff, '\r', '\n'},
			bus.WithDataContentType("application/octet-stream")),
		"no data":    mustSignal(t, "ping", "/p", nil),
		"empty data": {ID: "e1", Source: "/e", Type: "empty", SpecVersion: "1.0", Data: []byte{}},
		"optional attributes": mustSignal(t, "order.shipped", "urn:shop:orders", nil,
			bus.WithSubject("order-42"),
			bus.WithTime(time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.FixedZone("", 5*3600+30*60))),
			bus.WithDataSchema("https://schemas.example.com/order/v1.json")),
		"every extension type": mustSignal(t, "ext.all", "/ext", nil,
			bus.WithExtension("str", "text"),
			bus.WithExtension("emptystr", ""),
			bus.WithExtension("booltrue", true),
			bus.WithExtension("boolfalse", false),
			bus.WithExtension("int", -7),
			bus.WithExtension("int8", int8(-128)),
			bus.WithExtension("int16", int16(32767)),
			bus.WithExtension("int32", int32(-2147483648)),
			bus.WithExtension("int64", int64(-1)<<31),
			bus.WithExtension("uint8", uint8(255)),
			bus.WithExtension("uint16", uint16(65535)),
			bus.WithExtension("uint32", uint32(1)<<31-1),
			bus.WithExtension("bytes", []byte("\x00\xffbinary")),
			bus.WithExtension("when", time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)),
			bus.WithExtension("uri", u)),
		"characters to percent-encode": mustSignal(t, "unicode.test", `/src with space/100%/"quoted"/é/日本/😀`, nil,
			bus.WithID(`id with space, % and "quotes" – é`),
			bus.WithSubject("tab\tnul\x00us\x1fdel\x7fc1\u0085nbsp\u00a0end "),
			bus.WithDataContentType(`text/plain; charset="utf-8"`),
			bus.WithDataSchema("https://example.com/schémas/a b"),
			bus.WithExtension("note", " leading and trailing space "),
			bus.WithExtension("euro", "Euro € 😀"),
			bus.WithExtension("percent", "%41%zz%"),
			bus.WithExtension("quoted", `"whole value in quotes"`),
			bus.WithExtension("ctl", "\r\n\x00\x7f")),
		"trace context": mustSignal(t, "traced", "/t", []byte("x"),
			bus.WithExtension("traceparent", traceParent),
			bus.WithExtension("tracestate", "a=1, b=2")),
		"trace context not plain ASCII": mustSignal(t, "traced", "/t", nil,
			bus.WithExtension("traceparent", " café "),
			bus.WithExtension("tracestate", "k=v\n")),
		"media type with parameters": mustSignal(t, "ct", "/ct", []byte("x"),
			bus.WithDataContentType(`multipart/mixed; boundary="a b%c"; x=1`)),
		"time in a sub-minute zone": mustSignal(t, "old", "/old", nil, bus.WithTime(amsterdam1900)),
		"no time, no specversion":   {ID: "bare", Source: "/b", Type: "bare"},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, s := range roundTripSignals(t) {
		t.Run(name, func(t *testing.T) {
			msg, err := wire.Encode(s, wire.DefaultPrefix)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if want := "signals." + s.Type; msg.Subject != want {
				t.Errorf("subject = %q, want %q", msg.Subject, want)
			}
			checkHeaderKeys(t, msg.Header)
			got, err := wire.Decode(msg)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := diffSignals(normalized(s), got); d != "" {
				t.Errorf("round trip differs:\n%s", d)
			}
		})
	}
}

// checkHeaderKeys checks that every key Encode wrote is lower-case, but for
// Nats-Msg-Id, and that every value is printable ASCII without '"'.
func checkHeaderKeys(t *testing.T, h nats.Header) {
	t.Helper()
	for k, vs := range h {
		if k != nats.MsgIdHdr && k != strings.ToLower(k) {
			t.Errorf("header key %q is not lower-case", k)
		}
		if len(vs) != 1 {
			t.Errorf("header %q has %d values, want 1", k, len(vs))
		}
		for _, v := range vs {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < ' ' || c > '~' || (strings.HasPrefix(k, "ce-") && (c == ' ' || c == '"')) {
					t.Errorf("header %q value %q has %q at offset %d", k, v, c, i)
				}
			}
		}
	}
}

func TestEncodeHeaders(t *testing.T) {
	s := bus.Signal{
		ID:              "1234-1234-1234",
		Source:          "/mycontext/subcontext",
		Type:            "com.example.someevent",
		Subject:         "Euro € 😀",
		Time:            time.Date(2018, 4, 5, 3, 56, 24, 0, time.UTC),
		DataContentType: "application/json",
		DataSchema:      "https://example.com/schema",
		Data:            []byte(`{"a":1}`),
		Extensions: map[string]any{
			"traceparent": traceParent,
			"tracestate":  traceState,
			"seq":         int64(17),
			"flag":        true,
		},
	}
	msg, err := wire.Encode(s, "custom")
	if err != nil {
		t.Fatal(err)
	}
	want := nats.Header{
		"ce-specversion": {"1.0"},
		"ce-id":          {"1234-1234-1234"},
		"ce-source":      {"/mycontext/subcontext"},
		"ce-type":        {"com.example.someevent"},
		"ce-subject":     {"Euro%20%E2%82%AC%20%F0%9F%98%80"}, // the binding spec's own example
		"ce-time":        {"2018-04-05T03:56:24Z"},
		"ce-dataschema":  {"https://example.com/schema"},
		"content-type":   {"application/json"},
		"ce-seq":         {"17"},
		"ce-flag":        {"true"},
		"traceparent":    {traceParent},
		"tracestate":     {traceState},
		"ce-traceparent": {traceParent},
		"ce-tracestate":  {traceState},
		"Nats-Msg-Id":    {"1234-1234-1234"},
	}
	if !reflect.DeepEqual(msg.Header, want) {
		t.Errorf("headers:\n got %v\nwant %v", msg.Header, want)
	}
	if msg.Subject != "custom.com.example.someevent" {
		t.Errorf("subject = %q", msg.Subject)
	}
	if string(msg.Data) != `{"a":1}` {
		t.Errorf("data = %q", msg.Data)
	}
}

func TestEncodeRejects(t *testing.T) {
	valid := bus.Signal{ID: "1", Source: "/s", Type: "t"}
	cases := []struct {
		name   string
		modify func(*bus.Signal)
		want   string // in the error message
	}{
		{"no id", func(s *bus.Signal) { s.ID = "" }, "id"},
		{"no source", func(s *bus.Signal) { s.Source = "" }, "source"},
		{"bad type", func(s *bus.Signal) { s.Type = "a..b" }, "type"},
		{"specversion 0.3", func(s *bus.Signal) { s.SpecVersion = "0.3" }, "specversion"},
		{"bad extension name", func(s *bus.Signal) { s.Extensions = map[string]any{"Bad": "x"} }, "Bad"},
		{"bad extension value", func(s *bus.Signal) { s.Extensions = map[string]any{"f": 1.5} }, "float64"},
		{"nil url", func(s *bus.Signal) { s.Extensions = map[string]any{"u": (*url.URL)(nil)} }, "url"},
		{"invalid UTF-8 source", func(s *bus.Signal) { s.Source = "/\xff" }, "source"},
		{"invalid UTF-8 extension", func(s *bus.Signal) { s.Extensions = map[string]any{"x": "\xc0\xa0"} }, `"x"`},
		{"year 10000", func(s *bus.Signal) { s.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "time"},
		{"extension year -1", func(s *bus.Signal) {
			s.Extensions = map[string]any{"when": time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}
		}, "when"},
		// The content-type header carries the datacontenttype alone, and
		// only a value it can carry.
		{"datacontenttype not ASCII", func(s *bus.Signal) { s.DataContentType = `text/plain; name="ü"` }, "datacontenttype"},
		{"datacontenttype with a newline", func(s *bus.Signal) { s.DataContentType = "text/plain\nx: y" }, "datacontenttype"},
		{"datacontenttype with a trailing space", func(s *bus.Signal) { s.DataContentType = "text/plain " }, "datacontenttype"},
		{"datacontenttype a CloudEvents format", func(s *bus.Signal) {
			s.DataContentType = "Application/CloudEvents+JSON; charset=utf-8"
		}, "structured"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := valid
			tc.modify(&s)
			_, err := wire.Encode(s, "")
			if !errors.Is(err, bus.ErrInvalidSignal) {
				t.Fatalf("Encode error = %v, want one wrapping bus.ErrInvalidSignal", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestEncodeIgnoresDataLimit(t *testing.T) {
	s := bus.Signal{ID: "1", Source: "/s", Type: "big", Data: make([]byte, bus.DefaultMaxDataSize+1)}
	msg, err := wire.Encode(s, "")
	if err != nil {
		t.Fatalf("Encode: %v (the node, not the codec, applies the data limit)", err)
	}
	got, err := wire.Decode(msg)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(got.Data) != len(s.Data) {
		t.Errorf("data is %d bytes, want %d", len(got.Data), len(s.Data))
	}
}

// interopCases are messages as other clients send them, and the signal
// each must decode to.
var interopCases = []struct {
	raw  rawMsg
	want bus.Signal
}{
	{
		// nats pub -H 'Ce-Id:…' …: any case, values as typed, OWS around.
		raw: rawMsg{
			name: "nats pub, mixed-case headers",
			headers: "Ce-Specversion: 1.0\nCe-Id:  abc-1  \nCE-TYPE: order.created\nce-Source: /cli\n" +
				"Ce-Subject: \"hello world\"\nCE-TIME: 2024-01-02T03:04:05.5+01:00\nContent-Type: application/json\n" +
				"Ce-MyExt: caf%c3%a9\nTraceparent: " + traceParent,
			body: `{"n":1}`,
		},
		want: bus.Signal{
			SpecVersion: "1.0", ID: "abc-1", Type: "order.created", Source: "/cli", Subject: "hello world",
			Time:            time.Date(2024, 1, 2, 2, 4, 5, 500000000, time.UTC),
			DataContentType: "application/json", Data: []byte(`{"n":1}`),
			Extensions: map[string]any{"myext": "café", "traceparent": traceParent},
		},
	},
	{
		// The binding spec's binary-mode example (§3.1.4).
		raw: rawMsg{
			name: "binding spec binary example",
			headers: "ce-specversion: 1.0\nce-type: com.example.someevent\nce-time: 2018-04-05T03:56:24Z\n" +
				"ce-id: 1234-1234-1234\nce-source: /mycontext/subcontext\nce-datacontenttype: application/json",
			body: `{"x":"y"}`,
		},
		want: bus.Signal{
			SpecVersion: "1.0", ID: "1234-1234-1234", Type: "com.example.someevent", Source: "/mycontext/subcontext",
			Time: time.Date(2018, 4, 5, 3, 56, 24, 0, time.UTC), DataContentType: "application/json", Data: []byte(`{"x":"y"}`),
		},
	},
	{
		raw: rawMsg{
			name:    "structured mode, JSON format spec example",
			headers: "Content-Type: Application/CloudEvents+JSON; charset=UTF-8",
			body:    specJSONExample,
		},
		want: bus.Signal{
			SpecVersion: "1.0", ID: "A234-1234-1234", Type: "com.github.pull_request.opened",
			Source: "https://github.com/cloudevents/spec/pull", Subject: "123",
			Time:            time.Date(2018, 4, 5, 17, 31, 0, 0, time.UTC),
			DataContentType: "text/xml", Data: []byte(`<much wow="xml"/>`),
			Extensions: map[string]any{"comexampleextension1": "value", "comexampleothervalue": int64(5)},
		},
	},
	{
		// The W3C header of the hop wins over the event's own member.
		raw: rawMsg{
			name:    "structured mode with a traceparent header",
			headers: "content-type: application/cloudevents+json\ntraceparent: " + traceParent + "\ntracestate: " + traceState,
			body:    `{"specversion":"1.0","id":"s1","source":"/s","type":"t","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"}`,
		},
		want: bus.Signal{
			SpecVersion: "1.0", ID: "s1", Source: "/s", Type: "t",
			Extensions: map[string]any{"traceparent": traceParent, "tracestate": traceState},
		},
	},
	{
		// CloudEvents Go SDK, protocol/nats_jetstream/v3 (write_message.go):
		// binary mode through nats.Header.Set with the "ce-" names of its
		// spec package, values by fmt.Sprint (no percent-encoding), times as
		// RFC 3339 with nanoseconds, datacontenttype as ce-datacontenttype and
		// no content-type; its tracing extension as ce-traceparent.
		raw: rawMsg{
			name: "CloudEvents Go SDK, JetStream binding (binary)",
			headers: "ce-specversion: 1.0\nce-id: 5f1c0d0e-sdk\nce-source: /sdk/sender\nce-type: com.example.sdk.sent\n" +
				"ce-subject: orders/42\nce-time: 2024-05-06T07:08:09.123456789Z\nce-datacontenttype: application/json\n" +
				"ce-dataschema: https://example.com/s.json\nce-myint: 42\nce-mybool: true\n" +
				"ce-traceparent: 00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01",
			body: `{"n":1}`,
		},
		want: bus.Signal{
			SpecVersion: "1.0", ID: "5f1c0d0e-sdk", Source: "/sdk/sender", Type: "com.example.sdk.sent",
			Subject: "orders/42", Time: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
			DataContentType: "application/json", DataSchema: "https://example.com/s.json", Data: []byte(`{"n":1}`),
			Extensions: map[string]any{"myint": "42", "mybool": "true",
				"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"},
		},
	},
	{
		// CloudEvents Go SDK, protocol/nats/v2 (sender.go): Conn.Publish of
		// the structured JSON event, no headers at all.
		raw:  rawMsg{name: "CloudEvents Go SDK, core NATS binding (headerless structured)", body: sdkJSON},
		want: sdkWant,
	},
	{
		raw: rawMsg{
			name:    "ce- header and plain trace headers both set",
			headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-traceparent: 00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01\ntraceparent: " + traceParent,
		},
		want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t",
			Extensions: map[string]any{"traceparent": traceParent}},
	},
	{
		// A node before content-type alone: both headers, the ce- one
		// percent-encoded, the same value.
		raw: rawMsg{
			name: "older node, ce-datacontenttype and content-type agreeing",
			headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\n" +
				"ce-datacontenttype: text/plain;%20charset=%22utf-8%22\ncontent-type: text/plain; charset=\"utf-8\"",
			body: "hi",
		},
		want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t",
			DataContentType: `text/plain; charset="utf-8"`, Data: []byte("hi")},
	},
	{
		// A node before content-type alone, for a value content-type
		// could not carry: ce-datacontenttype alone.
		raw: rawMsg{
			name:    "older node, ce-datacontenttype alone",
			headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nCe-DataContentType: text/plain;%20name=%22%C3%BC%22",
			body:    "x",
		},
		want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t",
			DataContentType: `text/plain; name="ü"`, Data: []byte("x")},
	},
	{
		raw: rawMsg{
			name:    "content-type without ce-datacontenttype, and duplicate equal values",
			headers: "ce-specversion: 1.0\nce-id: 1\nCe-Id: %31\nce-source: /s\nce-type: t\nContent-Type: text/plain; charset=\"utf-8\"",
			body:    "hi",
		},
		want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t",
			DataContentType: `text/plain; charset="utf-8"`, Data: []byte("hi")},
	},
}

var sdkWant = bus.Signal{
	SpecVersion: "1.0", ID: "sdk-1", Source: "/sdk/sender", Type: "com.example.sdk.sent",
	DataContentType: "application/json", Time: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
	Data: []byte(`{"n":1}`), Extensions: map[string]any{"myext": "v1"},
}

func TestDecodeInterop(t *testing.T) {
	for _, tc := range interopCases {
		t.Run(tc.raw.name, func(t *testing.T) {
			got, err := wire.Decode(tc.raw.msg())
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := diffSignals(tc.want, got); d != "" {
				t.Errorf("decoded signal differs:\n%s", d)
			}
		})
	}
}

// rejectCases are messages Decode must refuse, with the reason and a word
// the message must contain.
var rejectCases = []struct {
	raw     rawMsg
	reason  string
	mention string
	invalid bool // also wraps bus.ErrInvalidSignal
}{
	{rawMsg{name: "no headers, text body", body: "hello"}, "not_cloudevent", "no ce- headers", false},
	{rawMsg{name: "no headers, no body"}, "not_cloudevent", "no ce- headers", false},
	{rawMsg{name: "no headers, JSON without specversion", body: `{"id":"1","type":"t"}`}, "not_cloudevent", "no ce- headers", false},
	{rawMsg{name: "only unrelated headers", headers: "Nats-Msg-Id: 1\ntraceparent: " + traceParent, body: "x"}, "not_cloudevent", "no ce- headers", false},
	{rawMsg{name: "plain JSON content type", headers: "content-type: application/json", body: sdkJSON}, "not_cloudevent", "no ce- headers", false},
	{rawMsg{name: "missing ce-specversion", headers: "ce-id: 1\nce-source: /s\nce-type: t"}, "missing_specversion", "ce-specversion", true},
	{rawMsg{name: "missing ce-id", headers: "ce-specversion: 1.0\nce-source: /s\nce-type: t"}, "missing_id", "ce-id is missing", true},
	{rawMsg{name: "empty ce-id", headers: "ce-specversion: 1.0\nce-id:\nce-source: /s\nce-type: t"}, "missing_id", "ce-id is empty", true},
	{rawMsg{name: "missing ce-source", headers: "ce-specversion: 1.0\nce-id: 1\nce-type: t"}, "missing_source", "ce-source", true},
	{rawMsg{name: "missing ce-type", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s"}, "missing_type", "ce-type", true},
	{rawMsg{name: "specversion 0.3", headers: "ce-specversion: 0.3\nce-id: 1\nce-source: /s\nce-type: t"}, "bad_specversion", `"0.3"`, true},
	{rawMsg{name: "bad ce-time", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-time: yesterday"}, "bad_time", "ce-time", true},
	{rawMsg{name: "ce-time without zone", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-time: 2018-04-05T03:56:24"}, "bad_time", "ce-time", true},
	{rawMsg{name: "type outside the grammar", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: order..created"}, "bad_type", "type", true},
	{rawMsg{name: "type with a space", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: order%20created"}, "bad_type", "type", true},
	{rawMsg{name: "extension name with underscore", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-my_ext: v"}, "bad_extension", "my_ext", true},
	{rawMsg{name: "empty extension name", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-: v"}, "bad_extension", "extension", true},
	{rawMsg{name: "reserved extension name", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-data: v"}, "bad_extension", "data", true},
	{rawMsg{name: "percent not followed by hex", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /a%G1\nce-type: t"}, "bad_encoding", "ce-source", true},
	{rawMsg{name: "truncated percent escape", headers: "ce-specversion: 1.0\nce-id: 1%4\nce-source: /s\nce-type: t"}, "bad_encoding", "ce-id", true},
	{rawMsg{name: "trailing percent", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-subject: 100%"}, "bad_encoding", "ce-subject", true},
	{rawMsg{name: "overlong UTF-8", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /%C0%A0\nce-type: t"}, "bad_encoding", "UTF-8", true},
	{rawMsg{name: "encoded surrogate", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /%ED%A0%80\nce-type: t"}, "bad_encoding", "UTF-8", true},
	{rawMsg{name: "raw invalid UTF-8", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /\xff\nce-type: t"}, "bad_encoding", "ce-source", true},
	{rawMsg{name: "unterminated quoted string", headers: "ce-specversion: 1.0\nce-id: \"1\nce-source: /s\nce-type: t"}, "bad_encoding", "quoted", true},
	{rawMsg{name: "text after a quoted string", headers: "ce-specversion: 1.0\nce-id: \"1\"2\nce-source: /s\nce-type: t"}, "bad_encoding", "after the quoted", true},
	{rawMsg{name: "conflicting ce-id", headers: "ce-specversion: 1.0\nce-id: 1\nCe-Id: 2\nce-source: /s\nce-type: t"}, "duplicate_header", "ce-id", true},
	{rawMsg{name: "conflicting extension", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-x: 1\nce-x: 2"}, "duplicate_header", "ce-x", true},
	{rawMsg{name: "conflicting content-type", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\ncontent-type: a/b\nContent-Type: c/d"}, "duplicate_header", "content-type", true},
	{rawMsg{name: "ce-datacontenttype conflicting with content-type", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-datacontenttype: text/plain\ncontent-type: application/json"}, "duplicate_header", "ce-datacontenttype", true},
	{rawMsg{name: "ce-datacontenttype badly encoded", headers: "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\nce-datacontenttype: text/%zz\ncontent-type: text/plain"}, "bad_encoding", "ce-datacontenttype", true},
	{rawMsg{name: "structured body not JSON", headers: "content-type: application/cloudevents+json", body: "not json"}, "bad_structured", "JSON", true},
	{rawMsg{name: "structured body empty", headers: "content-type: application/cloudevents+json"}, "bad_structured", "JSON", true},
	{rawMsg{name: "structured specversion 0.3", headers: "content-type: application/cloudevents+json",
		body: `{"specversion":"0.3","id":"1","source":"/s","type":"t"}`}, "bad_structured", "specversion", true},
	{rawMsg{name: "structured missing id", headers: "content-type: application/cloudevents+json",
		body: `{"specversion":"1.0","source":"/s","type":"t"}`}, "bad_structured", "id", true},
	{rawMsg{name: "structured type outside the grammar", headers: "content-type: application/cloudevents+json",
		body: `{"specversion":"1.0","id":"1","source":"/s","type":"a b"}`}, "bad_type", "type", true},
	{rawMsg{name: "headerless JSON, specversion 0.3", body: `{"specversion":"0.3","id":"1","source":"/s","type":"t"}`}, "bad_structured", "specversion", true},
	{rawMsg{name: "structured avro", headers: "content-type: application/cloudevents+avro", body: "x"}, "unsupported_format", "JSON event format", false},
	{rawMsg{name: "batch mode", headers: "content-type: application/cloudevents-batch+json", body: "[]"}, "unsupported_format", "batch", false},
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range rejectCases {
		t.Run(tc.raw.name, func(t *testing.T) {
			s, err := wire.Decode(tc.raw.msg())
			if err == nil {
				t.Fatalf("Decode = %+v, want an error", s)
			}
			if !errors.Is(err, wire.ErrNotCloudEvent) {
				t.Errorf("error %q does not wrap ErrNotCloudEvent", err)
			}
			if got := errors.Is(err, bus.ErrInvalidSignal); got != tc.invalid {
				t.Errorf("errors.Is(%q, bus.ErrInvalidSignal) = %v, want %v", err, got, tc.invalid)
			}
			if got := wire.Reason(err); got != tc.reason {
				t.Errorf("Reason(%q) = %q, want %q", err, got, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestDecodeNil(t *testing.T) {
	_, err := wire.Decode(nil)
	if !errors.Is(err, wire.ErrNotCloudEvent) || wire.Reason(err) != wire.ReasonNotCloudEvent {
		t.Errorf("Decode(nil) error = %v (reason %q)", err, wire.Reason(err))
	}
	_, err = wire.Decode(&nats.Msg{Header: nats.Header{"ce-id": nil, "ce-source": {}}})
	if wire.Reason(err) != wire.ReasonNotCloudEvent {
		t.Errorf("headers without values: error = %v", err)
	}
}

func TestReason(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("boom"), "other"},
		{wire.ErrNotCloudEvent, "not_cloudevent"},
		{bus.ErrInvalidSignal, "invalid_signal"},
	}
	for _, tc := range cases {
		if got := wire.Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	_, err := wire.Encode(bus.Signal{Source: "/s", Type: "t"}, "")
	if got := wire.Reason(err); got != "invalid_signal" {
		t.Errorf("Reason(Encode error %v) = %q", err, got)
	}
}

func TestSubject(t *testing.T) {
	cases := []struct{ prefix, typ, want string }{
		{"signals", "order.created", "signals.order.created"},
		{"", "order.created", "signals.order.created"},
		{"tenant.a", "x", "tenant.a.x"},
	}
	for _, tc := range cases {
		if got := wire.Subject(tc.prefix, tc.typ); got != tc.want {
			t.Errorf("Subject(%q, %q) = %q, want %q", tc.prefix, tc.typ, got, tc.want)
		}
	}
}

func TestTraceCarrier(t *testing.T) {
	prop := propagation.TraceContext{}
	// Extract from a header a client sent in canonical case.
	h := nats.Header{"Traceparent": {traceParent}, "Tracestate": {traceState}}
	ctx := prop.Extract(t.Context(), wire.TraceCarrier(h))
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("extracted span context %v", sc)
	}
	// Inject into it: lower-case keys, and the canonical-case ones gone.
	prop.Inject(ctx, wire.TraceCarrier(h))
	want := nats.Header{"traceparent": {traceParent}, "tracestate": {traceState}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("after Inject: %v, want %v", h, want)
	}
	keys := wire.TraceCarrier(nats.Header{"A": {"1"}, "a": {"2"}, "traceparent": {"x"}}).Keys()
	sort.Strings(keys)
	if !reflect.DeepEqual(keys, []string{"a", "traceparent"}) {
		t.Errorf("Keys = %v", keys)
	}
	if got := wire.TraceCarrier(nil).Get("traceparent"); got != "" {
		t.Errorf("Get on nil header = %q", got)
	}

	// Injected into an encoded message, the context is what Decode
	// gives as the traceparent extension.
	msg, err := wire.Encode(bus.Signal{ID: "1", Source: "/s", Type: "t"}, "")
	if err != nil {
		t.Fatal(err)
	}
	prop.Inject(ctx, wire.TraceCarrier(msg.Header))
	s, err := wire.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Extensions["traceparent"] != traceParent || s.Extensions["tracestate"] != traceState {
		t.Errorf("decoded extensions %v", s.Extensions)
	}
}

// TestDecodeStructuredMatchesMarshalJSON checks that a signal sent in
// structured mode by the bus's own JSON encoder decodes as in binary mode.
func TestDecodeStructuredMatchesMarshalJSON(t *testing.T) {
	for name, s := range roundTripSignals(t) {
		t.Run(name, func(t *testing.T) {
			body, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			msg := &nats.Msg{Subject: "signals.x", Header: nats.Header{"content-type": {"application/cloudevents+json"}}, Data: body}
			fromJSON, err := wire.Decode(msg)
			if err != nil {
				t.Fatalf("Decode structured: %v", err)
			}
			bin, err := wire.Encode(s, "")
			if err != nil {
				t.Fatal(err)
			}
			fromBinary, err := wire.Decode(bin)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffSignals(normalized(fromJSON), fromBinary); d != "" {
				t.Errorf("structured and binary decodes differ:\n%s", d)
			}
		})
	}
}

func TestBinaryAttributeReadsOneHeader(t *testing.T) {
	s := mustSignal(t, "order.created", "/orders", nil, bus.WithExtension("note", "50% off, café"))
	m, err := wire.Encode(s, "")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := wire.BinaryAttribute(m, "note"); !ok || v != "50% off, café" {
		t.Errorf("BinaryAttribute(note) = %q, %v; want the value Encode wrote", v, ok)
	}
	if v, ok := wire.BinaryAttribute(m, "absent"); ok {
		t.Errorf("BinaryAttribute(absent) = %q, true; want not found", v)
	}
	m.Header.Set("Ce-Broken", "%zz")
	if v, ok := wire.BinaryAttribute(m, "broken"); ok {
		t.Errorf("BinaryAttribute of a badly percent-encoded header = %q, true; want not ok", v)
	}
	ct := mustSignal(t, "order.created", "/orders", map[string]int{"n": 1})
	if m, err = wire.Encode(ct, ""); err != nil {
		t.Fatal(err)
	}
	if v, ok := wire.BinaryAttribute(m, "datacontenttype"); !ok || v != "application/json" {
		t.Errorf("BinaryAttribute(datacontenttype) = %q, %v; want the content-type header", v, ok)
	}
	if _, ok := wire.BinaryAttribute(nil, "note"); ok {
		t.Error("BinaryAttribute(nil) found a value")
	}
}
