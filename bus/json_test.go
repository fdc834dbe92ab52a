package bus_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// sigDiff describes how a and b differ, or returns "" when they carry the
// same event: Time compared with Equal (the instant, not the location),
// Data with bytes.Equal (nil and empty alike), Extensions with
// reflect.DeepEqual (nil and empty alike).
func sigDiff(a, b bus.Signal) string {
	var d []string
	str := func(name, x, y string) {
		if x != y {
			d = append(d, fmt.Sprintf("%s: %q != %q", name, x, y))
		}
	}
	str("ID", a.ID, b.ID)
	str("Source", a.Source, b.Source)
	str("Type", a.Type, b.Type)
	str("SpecVersion", a.SpecVersion, b.SpecVersion)
	str("Subject", a.Subject, b.Subject)
	str("DataContentType", a.DataContentType, b.DataContentType)
	str("DataSchema", a.DataSchema, b.DataSchema)
	if !a.Time.Equal(b.Time) {
		d = append(d, fmt.Sprintf("Time: %v != %v", a.Time, b.Time))
	}
	if !bytes.Equal(a.Data, b.Data) {
		d = append(d, fmt.Sprintf("Data: %q != %q", a.Data, b.Data))
	}
	if (len(a.Extensions) != 0 || len(b.Extensions) != 0) && !reflect.DeepEqual(a.Extensions, b.Extensions) {
		d = append(d, fmt.Sprintf("Extensions: %#v != %#v", a.Extensions, b.Extensions))
	}
	return strings.Join(d, "; ")
}

func TestSignalJSONRoundTrip(t *testing.T) {
	at := time.Date(2024, 6, 1, 12, 30, 0, 500_000_000, time.UTC)
	east := time.Date(2024, 6, 1, 14, 30, 0, 123_456_789, time.FixedZone("", 2*3600))
	base := func(f func(*bus.Signal)) bus.Signal {
		s := sigBase()
		f(&s)
		return s
	}
	cases := []struct {
		name string
		in   bus.Signal
		want bus.Signal // the zero Signal: want == in
		// directOnly skips the trip inside an enclosing document,
		// which adds a level of nesting to the data.
		directOnly bool
	}{
		{name: "minimal", in: sigBase()},
		{name: "all attributes", in: base(func(s *bus.Signal) {
			s.Subject = "order/o-1"
			s.Time = at
			s.DataContentType = "application/json"
			s.DataSchema = "https://example.com/schemas/order.json"
			s.Data = []byte(`{"id":"o-1","total":42}`)
		})},
		{name: "time with offset and nanoseconds", in: base(func(s *bus.Signal) { s.Time = east })},
		{name: "JSON data inline", in: base(func(s *bus.Signal) {
			s.DataContentType = "application/json"
			s.Data = []byte(`{"a":[1,2.5,"x",null,true],"b":{}}`)
		})},
		{name: "JSON data without content type", in: base(func(s *bus.Signal) { s.Data = []byte(`[1,2,3]`) })},
		{name: "JSON string data", in: base(func(s *bus.Signal) { s.Data = []byte(`"I'm just a string"`) })},
		{name: "JSON number data", in: base(func(s *bus.Signal) { s.Data = []byte(`1.50`) })},
		{name: "+json content type", in: base(func(s *bus.Signal) {
			s.DataContentType = "application/vnd.order+json; charset=utf-8"
			s.Data = []byte(`{"a":1}`)
		})},
		{name: "JSON null data", in: base(func(s *bus.Signal) {
			s.DataContentType = "application/json"
			s.Data = []byte(`null`)
		})},
		{name: "JSON data with outer whitespace", in: base(func(s *bus.Signal) {
			s.DataContentType = "application/json"
			s.Data = []byte(" {\"a\": 1}\n")
		})},
		{name: "JSON data with inner whitespace", in: base(func(s *bus.Signal) {
			s.Data = []byte("{ \"a\" : [ 1 , 2 ] }")
		})},
		{name: "JSON data nested as deep as a decoder reads inline", in: base(func(s *bus.Signal) {
			s.Data = []byte(strings.Repeat("[", 9999) + strings.Repeat("]", 9999))
		}), directOnly: true},
		{name: "JSON data nested too deep to inline", in: base(func(s *bus.Signal) {
			s.Data = []byte(strings.Repeat(`{"a":[`, 5000) + strings.Repeat("]}", 5000))
		})},
		{name: "JSON data with brackets in strings", in: base(func(s *bus.Signal) {
			s.Data = []byte(`["[[[\"{{", "\\"]`)
		})},
		{name: "binary data", in: base(func(s *bus.Signal) { s.Data = []byte{0x00, 0x01, 0xfe, 0xff} })},
		{name: "binary data with content type", in: base(func(s *bus.Signal) {
			s.DataContentType = "application/octet-stream"
			s.Data = []byte{0xca, 0xfe}
		})},
		{name: "text/plain data", in: base(func(s *bus.Signal) {
			s.DataContentType = "text/plain"
			s.Data = []byte("hello, world")
		})},
		{name: "text/plain data that looks like JSON", in: base(func(s *bus.Signal) {
			s.DataContentType = "text/plain"
			s.Data = []byte(`{"a":1}`)
		})},
		{name: "invalid JSON under a JSON content type", in: base(func(s *bus.Signal) {
			s.DataContentType = "application/json"
			s.Data = []byte(`{"a":`)
		})},
		{name: "empty data", in: base(func(s *bus.Signal) { s.Data = []byte{} })},
		{name: "escapes in strings", in: base(func(s *bus.Signal) {
			s.Source = "/a\"b\\c\n<d>&e\u2028f"
			s.Subject = "日本語 ✓ \x01"
			s.ID = "id with spaces"
		})},
		{name: "specversion filled", in: base(func(s *bus.Signal) { s.SpecVersion = "" }),
			want: sigBase()},
		{
			name: "extensions of every type",
			in: base(func(s *bus.Signal) {
				s.Extensions = map[string]any{
					"str":   "acme",
					"yes":   true,
					"no":    false,
					"int":   -3,
					"i8":    int8(-8),
					"i16":   int16(16),
					"i32":   int32(-1 << 31),
					"i64":   int64(1) << 62,
					"u8":    uint8(255),
					"u16":   uint16(65535),
					"u32":   uint32(1<<32 - 1),
					"bytes": []byte{0, 1, 2, 0xff},
					"at":    east,
					"ref":   &url.URL{Scheme: "https", Host: "example.com", Path: "/x", RawQuery: "y=1"},
				}
			}),
			want: base(func(s *bus.Signal) {
				s.Extensions = map[string]any{
					"str":   "acme",
					"yes":   true,
					"no":    false,
					"int":   int64(-3),
					"i8":    int64(-8),
					"i16":   int64(16),
					"i32":   int64(-1 << 31),
					"i64":   int64(1) << 62,
					"u8":    int64(255),
					"u16":   int64(65535),
					"u32":   int64(1<<32 - 1),
					"bytes": "AAEC/w==",
					"at":    "2024-06-01T14:30:00.123456789+02:00",
					"ref":   "https://example.com/x?y=1",
				}
			}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if reflect.DeepEqual(want, bus.Signal{}) {
				want = tc.in
			}
			b, err := tc.in.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			if !json.Valid(b) {
				t.Fatalf("MarshalJSON wrote invalid JSON: %s", b)
			}
			var got bus.Signal
			if err := got.UnmarshalJSON(b); err != nil {
				t.Fatalf("UnmarshalJSON(%s): %v", b, err)
			}
			if d := sigDiff(got, want); d != "" {
				t.Errorf("round trip through %s: %s", b, d)
			}
			// A second trip changes nothing: the encoding is a fixed point.
			b2, err := got.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON of the decoded signal: %v", err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("second encoding differs:\n first %s\nsecond %s", b, b2)
			}
			if tc.directOnly {
				return
			}
			// Through encoding/json, as a field of a larger document.
			type envelope struct {
				Sig bus.Signal `json:"sig"`
			}
			doc, err := json.Marshal(envelope{Sig: tc.in})
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			var env envelope
			if err := json.Unmarshal(doc, &env); err != nil {
				t.Fatalf("json.Unmarshal(%s): %v", doc, err)
			}
			// encoding/json compacts inline JSON data; all else survives.
			gotStd, wantStd := env.Sig, want
			if json.Valid(want.Data) {
				gotStd.Data, wantStd.Data = compactJSON(t, gotStd.Data), compactJSON(t, wantStd.Data)
			}
			if d := sigDiff(gotStd, wantStd); d != "" {
				t.Errorf("round trip through encoding/json %s: %s", doc, d)
			}
		})
	}
}

func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("compact %q: %v", b, err)
	}
	return buf.Bytes()
}

func TestSignalMarshalJSONShape(t *testing.T) {
	at := time.Date(2024, 6, 1, 12, 30, 0, 500_000_000, time.UTC)
	base := func(f func(*bus.Signal)) bus.Signal {
		s := sigBase()
		f(&s)
		return s
	}
	head := map[string]any{
		"specversion": "1.0",
		"id":          "0190b0b4-1b8e-7cc3-98c4-dc0c0c07398f",
		"source":      "/orders/eu-1",
		"type":        "order.created",
	}
	with := func(kv ...any) map[string]any {
		m := make(map[string]any, len(head)+len(kv)/2)
		for k, v := range head {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name string
		sig  bus.Signal
		want map[string]any
	}{
		{name: "required only; no optional members", sig: sigBase(), want: with()},
		{name: "specversion written when empty", sig: base(func(s *bus.Signal) { s.SpecVersion = "" }), want: with()},
		{name: "optional attributes", sig: base(func(s *bus.Signal) {
			s.Subject = "o-1"
			s.Time = at
			s.DataContentType = "application/json"
			s.DataSchema = "https://example.com/s"
		}), want: with("subject", "o-1", "time", "2024-06-01T12:30:00.5Z",
			"datacontenttype", "application/json", "dataschema", "https://example.com/s")},
		{name: "JSON data inline", sig: base(func(s *bus.Signal) {
			s.DataContentType = "application/json"
			s.Data = []byte(`{"a":1,"b":[true]}`)
		}), want: with("datacontenttype", "application/json", "data", map[string]any{"a": 1.0, "b": []any{true}})},
		{name: "JSON data inline without content type", sig: base(func(s *bus.Signal) {
			s.Data = []byte(`"text"`)
		}), want: with("data", "text")},
		{name: "JSON null data inline", sig: base(func(s *bus.Signal) {
			s.Data = []byte(`null`)
		}), want: with("data", nil)},
		{name: "JSON data with outer whitespace as data_base64", sig: base(func(s *bus.Signal) {
			s.Data = []byte(" {}")
		}), want: with("data_base64", "IHt9")},
		{name: "JSON data nested too deep as data_base64", sig: base(func(s *bus.Signal) {
			s.Data = []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))
		}), want: with("data_base64", base64.StdEncoding.EncodeToString(
			[]byte(strings.Repeat("[", 10000)+strings.Repeat("]", 10000))))},
		{name: "binary data as data_base64", sig: base(func(s *bus.Signal) {
			s.Data = []byte{0xde, 0xad, 0xbe, 0xef}
		}), want: with("data_base64", "3q2+7w==")},
		{name: "text/plain data as data_base64", sig: base(func(s *bus.Signal) {
			s.DataContentType = "text/plain"
			s.Data = []byte("hi")
		}), want: with("datacontenttype", "text/plain", "data_base64", "aGk=")},
		{name: "extensions flattened", sig: base(func(s *bus.Signal) {
			s.Extensions = map[string]any{
				"tenant":  "acme",
				"sampled": true,
				"attempt": 3,
				"blob":    []byte("hi"),
				"seen":    at,
				"ref":     &url.URL{Scheme: "urn", Opaque: "isbn:1"},
			}
		}), want: with("tenant", "acme", "sampled", true, "attempt", 3.0, "blob", "aGk=",
			"seen", "2024-06-01T12:30:00.5Z", "ref", "urn:isbn:1")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.sig.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("encoding/json cannot read %s: %v", b, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MarshalJSON = %s\n got %#v\nwant %#v", b, got, tc.want)
			}
		})
	}
}

func TestSignalMarshalJSONGolden(t *testing.T) {
	// Members in a fixed order (attributes, then extensions sorted by
	// name, then data), so encodings of equal signals are equal bytes.
	s := sigBase()
	s.Subject = "o-1"
	s.Time = time.Date(2024, 6, 1, 12, 30, 0, 500_000_000, time.UTC)
	s.DataContentType = "application/json"
	s.DataSchema = "https://example.com/s"
	s.Extensions = map[string]any{"tenant": "acme", "attempt": 3}
	s.Data = []byte(`{"a":1}`)
	const want = `{"specversion":"1.0","id":"0190b0b4-1b8e-7cc3-98c4-dc0c0c07398f",` +
		`"source":"/orders/eu-1","type":"order.created","subject":"o-1",` +
		`"time":"2024-06-01T12:30:00.5Z","datacontenttype":"application/json",` +
		`"dataschema":"https://example.com/s","attempt":3,"tenant":"acme","data":{"a":1}}`
	for i := 0; i < 5; i++ {
		b, err := s.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Fatalf("MarshalJSON =\n%s\nwant\n%s", b, want)
		}
	}
}

func TestSignalMarshalJSONErrors(t *testing.T) {
	ext := func(name string, v any) bus.Signal {
		s := sigBase()
		s.Extensions = map[string]any{name: v}
		return s
	}
	cases := []struct {
		name  string
		sig   bus.Signal
		field string
	}{
		{name: "upper-case extension name", sig: ext("Tenant", "x"), field: `extension "Tenant"`},
		{name: "reserved extension name", sig: ext("data", "x"), field: `extension "data"`},
		{name: "float extension", sig: ext("ratio", 0.5), field: `extension "ratio"`},
		{name: "map extension", sig: ext("obj", map[string]any{}), field: `extension "obj"`},
		{name: "struct extension", sig: ext("obj", struct{}{}), field: `extension "obj"`},
		{name: "nil extension", sig: ext("none", nil), field: `extension "none"`},
		{name: "nil url extension", sig: ext("ref", (*url.URL)(nil)), field: `extension "ref"`},
		{name: "time after year 9999", sig: func() bus.Signal {
			s := sigBase()
			s.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
			return s
		}(), field: "time"},
		{name: "time before year 0", sig: func() bus.Signal {
			s := sigBase()
			s.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
			return s
		}(), field: "time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.sig.MarshalJSON()
			if err == nil {
				t.Fatalf("MarshalJSON = %s, want an error", b)
			}
			wantSignalError(t, err, bus.ErrInvalidSignal, tc.field)
			if _, err := json.Marshal(tc.sig); !errors.Is(err, bus.ErrInvalidSignal) {
				t.Errorf("json.Marshal: err = %v, want it to wrap ErrInvalidSignal", err)
			}
		})
	}
}

func TestSignalMarshalJSONSubMinuteOffset(t *testing.T) {
	// RFC 3339 offsets have no seconds, but historical zones (Amsterdam
	// before 1937: +00:19:32) do; the instant must survive all the same.
	s := sigBase()
	s.Time = time.Date(1930, 5, 1, 12, 0, 0, 0, time.FixedZone("AMT", 19*60+32))
	b, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got bus.Signal
	if err := got.UnmarshalJSON(b); err != nil {
		t.Fatalf("UnmarshalJSON(%s): %v", b, err)
	}
	if !got.Time.Equal(s.Time) {
		t.Errorf("time %v came back as %v through %s", s.Time, got.Time, b)
	}
}

// jsonSpecExamples are the structured events of the CloudEvents JSON format
// specification (v1.0.2, §3.2 and §4.3; the binary example's placeholder
// replaced by real base64), and events as other SDKs write them.
var jsonSpecExamples = []struct {
	name string
	in   string
	want bus.Signal
}{
	{
		name: "spec binary data",
		in: `{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "id" : "A234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "application/vnd.apache.thrift.binary",
    "data_base64" : "gAEAAQAAAARwaW5nAAAAAAA="
}`,
		want: bus.Signal{
			SpecVersion: "1.0", Type: "com.example.someevent", Source: "/mycontext", ID: "A234-1234-1234",
			Time:            time.Date(2018, 4, 5, 17, 31, 0, 0, time.UTC),
			Extensions:      map[string]any{"comexampleextension1": "value", "comexampleothervalue": int64(5)},
			DataContentType: "application/vnd.apache.thrift.binary",
			Data:            []byte{0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4, 'p', 'i', 'n', 'g', 0, 0, 0, 0, 0},
		},
	},
	{
		name: "spec XML string data and an unset extension",
		in: `{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "id" : "B234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "unsetextension": null,
    "datacontenttype" : "application/xml",
    "data" : "<much wow=\"xml\"/>"
}`,
		want: bus.Signal{
			SpecVersion: "1.0", Type: "com.example.someevent", Source: "/mycontext", ID: "B234-1234-1234",
			Time:            time.Date(2018, 4, 5, 17, 31, 0, 0, time.UTC),
			Extensions:      map[string]any{"comexampleextension1": "value", "comexampleothervalue": int64(5)},
			DataContentType: "application/xml",
			Data:            []byte(`<much wow="xml"/>`),
		},
	},
	{
		name: "spec JSON object data and a null subject",
		in: `{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "subject": null,
    "id" : "C234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "application/json",
    "data" : {
        "appinfoA" : "abc",
        "appinfoB" : 123,
        "appinfoC" : true
    }
}`,
		want: bus.Signal{
			SpecVersion: "1.0", Type: "com.example.someevent", Source: "/mycontext", ID: "C234-1234-1234",
			Time:            time.Date(2018, 4, 5, 17, 31, 0, 0, time.UTC),
			Extensions:      map[string]any{"comexampleextension1": "value", "comexampleothervalue": int64(5)},
			DataContentType: "application/json",
			Data: []byte(`{
        "appinfoA" : "abc",
        "appinfoB" : 123,
        "appinfoC" : true
    }`),
		},
	},
	{
		name: "spec JSON string data without content type",
		in: `{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "subject": null,
    "id" : "D234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "data" : "I'm just a string"
}`,
		want: bus.Signal{
			SpecVersion: "1.0", Type: "com.example.someevent", Source: "/mycontext", ID: "D234-1234-1234",
			Time:       time.Date(2018, 4, 5, 17, 31, 0, 0, time.UTC),
			Extensions: map[string]any{"comexampleextension1": "value", "comexampleothervalue": int64(5)},
			Data:       []byte(`"I'm just a string"`),
		},
	},
	{
		name: "spec explicit null JSON payload",
		in:   `{"specversion":"1.0","type":"com.example.someevent","source":"/mycontext","id":"E1","datacontenttype":"application/json","data":null}`,
		want: bus.Signal{
			SpecVersion: "1.0", Type: "com.example.someevent", Source: "/mycontext", ID: "E1",
			DataContentType: "application/json", Data: []byte("null"),
		},
	},
	{
		name: "null optional attributes",
		in:   `{"specversion":"1.0","type":"t","source":"/s","id":"F1","subject":null,"time":null,"datacontenttype":null,"dataschema":null,"data_base64":null}`,
		want: bus.Signal{SpecVersion: "1.0", Type: "t", Source: "/s", ID: "F1"},
	},
	{
		name: "as the CloudEvents Go SDK writes it",
		in: `{"specversion":"1.0","id":"7d0c6a2e-1b3f-4e1a-9a51-3f1b2c4d5e6f","source":"https://example.com/orders",` +
			`"type":"com.example.order.created","subject":"o-1","datacontenttype":"application/json",` +
			`"dataschema":"https://example.com/schemas/order.json","time":"2020-03-21T12:34:56.789012345+01:00",` +
			`"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","partitionkey":"o-1",` +
			`"data":{"id":"o-1","total":42}}`,
		want: bus.Signal{
			SpecVersion: "1.0", ID: "7d0c6a2e-1b3f-4e1a-9a51-3f1b2c4d5e6f", Source: "https://example.com/orders",
			Type: "com.example.order.created", Subject: "o-1", DataContentType: "application/json",
			DataSchema: "https://example.com/schemas/order.json",
			Time:       time.Date(2020, 3, 21, 11, 34, 56, 789012345, time.UTC),
			Extensions: map[string]any{
				"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				"partitionkey": "o-1",
			},
			Data: []byte(`{"id":"o-1","total":42}`),
		},
	},
	{
		name: "negative and large integer extensions",
		in:   `{"specversion":"1.0","type":"t","source":"/s","id":"G1","neg":-2147483648,"big":9223372036854775807,"zero":-0}`,
		want: bus.Signal{
			SpecVersion: "1.0", Type: "t", Source: "/s", ID: "G1",
			Extensions: map[string]any{"neg": int64(-2147483648), "big": int64(9223372036854775807), "zero": int64(0)},
		},
	},
}

func TestSignalUnmarshalJSONSpecExamples(t *testing.T) {
	for _, tc := range jsonSpecExamples {
		t.Run(tc.name, func(t *testing.T) {
			var got bus.Signal
			if err := got.UnmarshalJSON([]byte(tc.in)); err != nil {
				t.Fatalf("UnmarshalJSON: %v", err)
			}
			if d := sigDiff(got, tc.want); d != "" {
				t.Errorf("UnmarshalJSON: %s", d)
			}
			var std bus.Signal
			if err := json.Unmarshal([]byte(tc.in), &std); err != nil {
				t.Fatalf("json.Unmarshal: %v", err)
			}
			if d := sigDiff(std, tc.want); d != "" {
				t.Errorf("json.Unmarshal: %s", d)
			}
			// A spec event survives a trip through MarshalJSON.
			b, err := got.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			var again bus.Signal
			if err := again.UnmarshalJSON(b); err != nil {
				t.Fatalf("UnmarshalJSON(%s): %v", b, err)
			}
			if d := sigDiff(again, tc.want); d != "" {
				t.Errorf("after MarshalJSON %s: %s", b, d)
			}
		})
	}
}

func TestSignalUnmarshalJSONBatch(t *testing.T) {
	// The JSON batch format (spec §4.3) is an array of structured events.
	const batch = `[
  {
      "specversion" : "1.0",
      "type" : "com.example.someevent",
      "source" : "/mycontext/4",
      "id" : "B234-1234-1234",
      "time" : "2018-04-05T17:31:00Z",
      "comexampleextension1" : "value",
      "comexampleothervalue" : 5,
      "datacontenttype" : "application/vnd.apache.thrift.binary",
      "data_base64" : "AAEC"
  },
  {
      "specversion" : "1.0",
      "type" : "com.example.someotherevent",
      "source" : "/mycontext/9",
      "id" : "C234-1234-1234",
      "time" : "2018-04-05T17:31:05Z",
      "comexampleextension1" : "value",
      "comexampleothervalue" : 5,
      "datacontenttype" : "application/json",
      "data" : {
          "appinfoA" : "abc",
          "appinfoB" : 123,
          "appinfoC" : true
      }
  }
]`
	var sigs []bus.Signal
	if err := json.Unmarshal([]byte(batch), &sigs); err != nil {
		t.Fatalf("json.Unmarshal: %v", err)
	}
	if len(sigs) != 2 {
		t.Fatalf("decoded %d signals, want 2", len(sigs))
	}
	if !bytes.Equal(sigs[0].Data, []byte{0, 1, 2}) || sigs[1].Type != "com.example.someotherevent" {
		t.Errorf("decoded %+v", sigs)
	}
	var v map[string]any
	if err := sigs[1].DecodeData(&v); err != nil || v["appinfoA"] != "abc" {
		t.Errorf("DecodeData = %v, %v", v, err)
	}
	if _, err := json.Marshal(sigs); err != nil {
		t.Errorf("json.Marshal of the batch: %v", err)
	}
}

// jsonDecodeErrors are inputs UnmarshalJSON must reject, each with the text
// the error must contain (the attribute's name).
var jsonDecodeErrors = []struct {
	name  string
	in    string
	field string
}{
	{name: "empty input", in: ``, field: "not a JSON object"},
	{name: "null", in: `null`, field: "not a JSON object"},
	{name: "array", in: `[]`, field: "not a JSON object"},
	{name: "string", in: `"event"`, field: "not a JSON object"},
	{name: "number", in: `42`, field: "not a JSON object"},
	{name: "truncated", in: `{"specversion":"1.0"`, field: "not a JSON object"},
	{name: "trailing object", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t"}{"id":"2"}`, field: "after the JSON object"},
	{name: "trailing garbage", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t"} x`, field: "after the JSON object"},
	{name: "empty object", in: `{}`, field: "specversion is missing"},
	{name: "missing specversion", in: `{"id":"1","source":"/s","type":"t"}`, field: "specversion is missing"},
	{name: "empty specversion", in: `{"specversion":"","id":"1","source":"/s","type":"t"}`, field: "specversion is empty"},
	{name: "null specversion", in: `{"specversion":null,"id":"1","source":"/s","type":"t"}`, field: "specversion"},
	{name: "specversion 0.3", in: `{"specversion":"0.3","id":"1","source":"/s","type":"t"}`, field: "specversion"},
	{name: "specversion number", in: `{"specversion":1.0,"id":"1","source":"/s","type":"t"}`, field: "specversion is not a string"},
	{name: "missing id", in: `{"specversion":"1.0","source":"/s","type":"t"}`, field: "id is missing"},
	{name: "empty id", in: `{"specversion":"1.0","id":"","source":"/s","type":"t"}`, field: "id is empty"},
	{name: "null id", in: `{"specversion":"1.0","id":null,"source":"/s","type":"t"}`, field: "id"},
	{name: "numeric id", in: `{"specversion":"1.0","id":42,"source":"/s","type":"t"}`, field: "id is not a string"},
	{name: "missing source", in: `{"specversion":"1.0","id":"1","type":"t"}`, field: "source is missing"},
	{name: "empty source", in: `{"specversion":"1.0","id":"1","source":"","type":"t"}`, field: "source is empty"},
	{name: "array source", in: `{"specversion":"1.0","id":"1","source":["/s"],"type":"t"}`, field: "source is not a string"},
	{name: "missing type", in: `{"specversion":"1.0","id":"1","source":"/s"}`, field: "type is missing"},
	{name: "empty type", in: `{"specversion":"1.0","id":"1","source":"/s","type":""}`, field: "type is empty"},
	{name: "boolean type", in: `{"specversion":"1.0","id":"1","source":"/s","type":true}`, field: "type is not a string"},
	{name: "numeric subject", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":5}`, field: "subject is not a string"},
	{name: "object datacontenttype", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":{}}`, field: "datacontenttype is not a string"},
	{name: "numeric dataschema", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","dataschema":1}`, field: "dataschema is not a string"},
	{name: "numeric time", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":1712345678}`, field: "time is not a string"},
	{name: "bad time", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}`, field: "time"},
	{name: "time without zone", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2018-04-05T17:31:00"}`, field: "time"},
	{name: "time with a space", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2018-04-05 17:31:00Z"}`, field: "time"},
	{name: "time out of range", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2018-13-05T17:31:00Z"}`, field: "time"},
	{name: "data and data_base64", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{},"data_base64":"AA=="}`, field: "data and data_base64"},
	{name: "null data and data_base64", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":null,"data_base64":"AA=="}`, field: "data and data_base64"},
	{name: "bad base64", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!!"}`, field: "data_base64 is not valid base64"},
	{name: "truncated base64", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAA"}`, field: "data_base64 is not valid base64"},
	{name: "numeric data_base64", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":12}`, field: "data_base64 is not a string"},
	{name: "object data under text/plain", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":{"a":1}}`, field: "data is not a string"},
	{name: "upper-case extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","Tenant":"x"}`, field: `extension "Tenant"`},
	{name: "dashed extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","trace-id":"x"}`, field: `extension "trace-id"`},
	{name: "underscored extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","trace_id":"x"}`, field: `extension "trace_id"`},
	{name: "upper-case attribute", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ID":"x"}`, field: `extension "ID"`},
	{name: "empty extension name", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","":"x"}`, field: "extension name is empty"},
	{name: "object extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":{"a":1}}`, field: `extension "ext"`},
	{name: "array extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":[1]}`, field: `extension "ext"`},
	{name: "float extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":1.5}`, field: `extension "ext"`},
	{name: "exponent extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":1e3}`, field: `extension "ext"`},
	{name: "integer extension with a fraction", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":5.0}`, field: `extension "ext"`},
	{name: "integer extension over int64", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":9223372036854775808}`, field: `extension "ext"`},
	{name: "huge number extension", in: `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":1e400}`, field: `extension "ext"`},
}

func TestSignalUnmarshalJSONErrors(t *testing.T) {
	for _, tc := range jsonDecodeErrors {
		t.Run(tc.name, func(t *testing.T) {
			prior := sigBase()
			got := prior
			err := got.UnmarshalJSON([]byte(tc.in))
			wantSignalError(t, err, bus.ErrInvalidSignal, tc.field)
			if d := sigDiff(got, prior); d != "" {
				t.Errorf("a failed UnmarshalJSON changed the signal: %s", d)
			}
		})
	}
}

func TestSignalUnmarshalJSONNormalises(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want bus.Signal
	}{
		{
			name: "whitespace around the object and its members",
			in:   " \n\t{ \"specversion\" : \"1.0\" , \"id\" : \"1\" , \"source\" : \"/s\" , \"type\" : \"t\" , \"data\" :  [ 1 ] } \n",
			want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", Data: []byte("[ 1 ]")},
		},
		{
			name: "last duplicate member wins",
			in:   `{"specversion":"1.0","id":"1","id":"2","source":"/s","type":"t"}`,
			want: bus.Signal{SpecVersion: "1.0", ID: "2", Source: "/s", Type: "t"},
		},
		{
			name: "escaped member names and values",
			in:   `{"spec\u0076ersion":"1.0","id":"\u00e9","source":"/s","type":"t","subject":"a\nb"}`,
			want: bus.Signal{SpecVersion: "1.0", ID: "é", Source: "/s", Type: "t", Subject: "a\nb"},
		},
		{
			name: "bus type grammar is not applied",
			in:   `{"specversion":"1.0","id":"1","source":"/s","type":"com example/évent"}`,
			want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "com example/évent"},
		},
		{
			name: "base64 empty data",
			in:   `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":""}`,
			want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", Data: []byte{}},
		},
		{
			name: "inline string under text/plain",
			in:   `{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"a\u0000b"}`,
			want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", DataContentType: "text/plain", Data: []byte("a\x00b")},
		},
		{
			name: "null data under text/plain is absent",
			in:   `{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":null}`,
			want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", DataContentType: "text/plain"},
		},
		{
			name: "boolean extension",
			in:   `{"specversion":"1.0","id":"1","source":"/s","type":"t","sampled":false}`,
			want: bus.Signal{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", Extensions: map[string]any{"sampled": false}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got bus.Signal
			if err := got.UnmarshalJSON([]byte(tc.in)); err != nil {
				t.Fatalf("UnmarshalJSON: %v", err)
			}
			if d := sigDiff(got, tc.want); d != "" {
				t.Errorf("UnmarshalJSON: %s", d)
			}
		})
	}
}

// TestMarshalJSONTimeExtensions: a time extension gets the same care as the
// time attribute — whole-minute offsets, years RFC 3339 can write.
func TestMarshalJSONTimeExtensions(t *testing.T) {
	odd := time.FixedZone("LMT", 19*60+32)
	at := time.Date(1930, 5, 1, 12, 0, 0, 0, odd)
	s := bus.Signal{ID: "1", Source: "/s", Type: "t", Extensions: map[string]any{"when": at}}
	b, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back bus.Signal
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	got, err := time.Parse(time.RFC3339Nano, back.Extensions["when"].(string))
	if err != nil || !got.Equal(at) {
		t.Errorf("time extension came back as %v (%v), want the instant %v", got, err, at)
	}
	s.Extensions["when"] = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.MarshalJSON(); !errors.Is(err, bus.ErrInvalidSignal) || !strings.Contains(err.Error(), `extension "when"`) {
		t.Errorf("MarshalJSON of a year-10000 extension = %v, want an error naming it", err)
	}
}
