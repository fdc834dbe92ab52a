package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// uuidV7Re matches a canonical lower-case UUID whose version nibble is 7 and
// whose variant bits are 10 (RFC 9562 §4.1, §4.2).
var uuidV7Re = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// wantSignalError fails t unless err wraps bus.ErrInvalidSignal (or want, if
// not nil) and its message names field.
func wantSignalError(t *testing.T, err error, want error, field string) {
	t.Helper()
	if want == nil {
		want = bus.ErrInvalidSignal
	}
	if err == nil {
		t.Fatalf("err = nil, want an error wrapping %v naming %q", want, field)
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want it to wrap %v", err, want)
	}
	if !strings.Contains(err.Error(), field) {
		t.Fatalf("err = %q, want it to name %q", err, field)
	}
}

// sigBase is a valid signal the Validate rows start from.
func sigBase() bus.Signal {
	return bus.Signal{
		ID:          "0190b0b4-1b8e-7cc3-98c4-dc0c0c07398f",
		Source:      "/orders/eu-1",
		Type:        "order.created",
		SpecVersion: bus.SpecVersion,
	}
}

type sigOrder struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func TestNewSignal(t *testing.T) {
	at := time.Date(2024, 6, 1, 12, 30, 0, 123456789, time.UTC)
	raw := []byte{0x00, 0xff, 'x'}
	cases := []struct {
		name string
		data any
		opts []bus.SignalOption
		// want holds the fields NewSignal must set; ID and Time are
		// checked only when set here.
		want bus.Signal
	}{
		{
			name: "bytes kept as is without content type",
			data: raw,
			want: bus.Signal{Data: raw},
		},
		{
			name: "empty bytes",
			data: []byte{},
			want: bus.Signal{Data: []byte{}},
		},
		{
			name: "struct JSON-encoded",
			data: sigOrder{ID: "o-1", Total: 42},
			want: bus.Signal{Data: []byte(`{"id":"o-1","total":42}`), DataContentType: "application/json"},
		},
		{
			name: "map JSON-encoded",
			data: map[string]int{"a": 1},
			want: bus.Signal{Data: []byte(`{"a":1}`), DataContentType: "application/json"},
		},
		{
			name: "string JSON-encoded",
			data: "hello",
			want: bus.Signal{Data: []byte(`"hello"`), DataContentType: "application/json"},
		},
		{
			name: "json.RawMessage kept as JSON",
			data: json.RawMessage(`[1,2]`),
			want: bus.Signal{Data: []byte(`[1,2]`), DataContentType: "application/json"},
		},
		{
			name: "nil data",
			data: nil,
			want: bus.Signal{},
		},
		{
			name: "subject",
			opts: []bus.SignalOption{bus.WithSubject("order/o-1")},
			want: bus.Signal{Subject: "order/o-1"},
		},
		{
			name: "content type overrides derived one",
			data: []byte("plain words"),
			opts: []bus.SignalOption{bus.WithDataContentType("text/plain; charset=utf-8")},
			want: bus.Signal{Data: []byte("plain words"), DataContentType: "text/plain; charset=utf-8"},
		},
		{
			name: "content type overrides application/json",
			data: sigOrder{ID: "o-2"},
			opts: []bus.SignalOption{bus.WithDataContentType("application/vnd.order+json")},
			want: bus.Signal{Data: []byte(`{"id":"o-2","total":0}`), DataContentType: "application/vnd.order+json"},
		},
		{
			name: "data schema",
			opts: []bus.SignalOption{bus.WithDataSchema("https://example.com/schemas/order.json")},
			want: bus.Signal{DataSchema: "https://example.com/schemas/order.json"},
		},
		{
			name: "id",
			opts: []bus.SignalOption{bus.WithID("upstream-42")},
			want: bus.Signal{ID: "upstream-42"},
		},
		{
			name: "time",
			opts: []bus.SignalOption{bus.WithTime(at)},
			want: bus.Signal{Time: at},
		},
		{
			name: "extensions of every kind",
			opts: []bus.SignalOption{
				bus.WithExtension("tenant", "acme"),
				bus.WithExtension("sampled", true),
				bus.WithExtension("attempt", 3),
				bus.WithExtension("small", int8(-1)),
				bus.WithExtension("wide", int64(1)<<30),
				bus.WithExtension("octet", uint8(255)),
				bus.WithExtension("blob", []byte{1, 2}),
				bus.WithExtension("seen", at),
				bus.WithExtension("ref", &url.URL{Scheme: "https", Host: "example.com"}),
			},
			want: bus.Signal{Extensions: map[string]any{
				"tenant": "acme", "sampled": true, "attempt": 3, "small": int8(-1),
				"wide": int64(1) << 30, "octet": uint8(255), "blob": []byte{1, 2}, "seen": at,
				"ref": &url.URL{Scheme: "https", Host: "example.com"},
			}},
		},
		{
			name: "later extension of the same name wins",
			opts: []bus.SignalOption{bus.WithExtension("tenant", "a"), bus.WithExtension("tenant", "b")},
			want: bus.Signal{Extensions: map[string]any{"tenant": "b"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			s, err := bus.NewSignal("order.created", "/orders", tc.data, tc.opts...)
			if err != nil {
				t.Fatalf("NewSignal: %v", err)
			}
			if s.Type != "order.created" || s.Source != "/orders" {
				t.Errorf("type, source = %q, %q; want order.created, /orders", s.Type, s.Source)
			}
			if s.SpecVersion != "1.0" {
				t.Errorf("SpecVersion = %q, want 1.0", s.SpecVersion)
			}
			if tc.want.ID != "" {
				if s.ID != tc.want.ID {
					t.Errorf("ID = %q, want %q", s.ID, tc.want.ID)
				}
			} else if !uuidV7Re.MatchString(s.ID) {
				t.Errorf("ID = %q, want a canonical UUIDv7", s.ID)
			}
			if !tc.want.Time.IsZero() {
				if !s.Time.Equal(tc.want.Time) {
					t.Errorf("Time = %v, want %v", s.Time, tc.want.Time)
				}
			} else if s.Time.Before(before) || s.Time.After(time.Now()) {
				t.Errorf("Time = %v, want between %v and now", s.Time, before)
			}
			if !bytes.Equal(s.Data, tc.want.Data) || (s.Data == nil) != (tc.want.Data == nil) {
				t.Errorf("Data = %q (nil %t), want %q (nil %t)", s.Data, s.Data == nil, tc.want.Data, tc.want.Data == nil)
			}
			if s.DataContentType != tc.want.DataContentType {
				t.Errorf("DataContentType = %q, want %q", s.DataContentType, tc.want.DataContentType)
			}
			if s.Subject != tc.want.Subject {
				t.Errorf("Subject = %q, want %q", s.Subject, tc.want.Subject)
			}
			if s.DataSchema != tc.want.DataSchema {
				t.Errorf("DataSchema = %q, want %q", s.DataSchema, tc.want.DataSchema)
			}
			if !reflect.DeepEqual(s.Extensions, tc.want.Extensions) {
				t.Errorf("Extensions = %#v, want %#v", s.Extensions, tc.want.Extensions)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Validate of NewSignal's result: %v", err)
			}
		})
	}
}

func TestNewSignalIDs(t *testing.T) {
	a, err := bus.NewSignal("a", "/s", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.NewSignal("a", "/s", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		if !uuidV7Re.MatchString(id) {
			t.Errorf("ID %q is not a canonical UUIDv7 (version 7, variant 10)", id)
		}
	}
	if a.ID >= b.ID {
		t.Errorf("IDs %q then %q do not increase", a.ID, b.ID)
	}
	if a.Time.IsZero() || a.Time.After(b.Time) {
		t.Errorf("Times %v then %v", a.Time, b.Time)
	}
}

func TestNewSignalErrors(t *testing.T) {
	cases := []struct {
		name  string
		typ   string
		src   string
		data  any
		opts  []bus.SignalOption
		want  error
		field string
	}{
		{name: "empty type", typ: "", src: "/s", want: bus.ErrInvalidSignal, field: "type"},
		{name: "bad type", typ: "order..created", src: "/s", want: bus.ErrInvalidSignal, field: "type"},
		{name: "empty source", typ: "a", src: "", want: bus.ErrInvalidSignal, field: "source"},
		{name: "data not JSON-encodable", typ: "a", src: "/s", data: make(chan int), want: bus.ErrInvalidSignal, field: "data"},
		{name: "data func", typ: "a", src: "/s", data: func() {}, want: bus.ErrInvalidSignal, field: "data"},
		{
			name: "extension name upper-case", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithExtension("Tenant", "x")}, want: bus.ErrInvalidSignal, field: `extension "Tenant"`,
		},
		{
			name: "extension value float", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithExtension("ratio", 0.5)}, want: bus.ErrInvalidSignal, field: `extension "ratio"`,
		},
		{
			name: "reserved extension", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithExtension("source", "x")}, want: bus.ErrInvalidSignal, field: `extension "source"`,
		},
		{
			name: "nil url extension", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithExtension("ref", (*url.URL)(nil))}, want: bus.ErrInvalidSignal, field: `extension "ref"`,
		},
		{
			name: "integer extension over 32 bits", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithExtension("big", int64(1)<<31)}, want: bus.ErrInvalidSignal, field: `extension "big"`,
		},
		{
			name: "uint32 extension over int32", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithExtension("big", uint32(1)<<31)}, want: bus.ErrInvalidSignal, field: `extension "big"`,
		},
		{
			name: "extension not UTF-8", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithExtension("bad", "\xff")}, want: bus.ErrInvalidSignal, field: `extension "bad"`,
		},
		{
			name: "source not UTF-8", typ: "a", src: "/\xff",
			want: bus.ErrInvalidSignal, field: "source",
		},
		{
			name: "id not UTF-8", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithID("id-\xfe")}, want: bus.ErrInvalidSignal, field: "id",
		},
		{
			name: "data schema not a URI", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithDataSchema("http://[::1")}, want: bus.ErrInvalidOption, field: "dataschema",
		},
		{
			name: "data schema bad escape", typ: "a", src: "/s",
			opts: []bus.SignalOption{bus.WithDataSchema("%zz")}, want: bus.ErrInvalidOption, field: "dataschema",
		},
		{
			name: "data over the limit", typ: "a", src: "/s", data: make([]byte, bus.DefaultMaxDataSize+1),
			want: bus.ErrInvalidSignal, field: "data",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := bus.NewSignal(tc.typ, tc.src, tc.data, tc.opts...)
			wantSignalError(t, err, tc.want, tc.field)
			if !reflect.DeepEqual(s, bus.Signal{}) {
				t.Errorf("NewSignal returned %+v with the error, want the zero Signal", s)
			}
		})
	}
}

func TestSignalValidate(t *testing.T) {
	with := func(f func(*bus.Signal)) bus.Signal {
		s := sigBase()
		f(&s)
		return s
	}
	ext := func(name string, v any) bus.Signal {
		return with(func(s *bus.Signal) { s.Extensions = map[string]any{name: v} })
	}
	typ := func(typ string) bus.Signal { return with(func(s *bus.Signal) { s.Type = typ }) }
	cases := []struct {
		name  string
		sig   bus.Signal
		field string // "" for a valid signal
	}{
		// Valid.
		{name: "base", sig: sigBase()},
		{name: "single segment type", sig: typ("created")},
		{name: "hyphen and underscore segments", sig: typ("my-app.order_created.v2")},
		{name: "segments of one byte", sig: typ("a.b.c.-._")},
		{name: "mixed case and digits", sig: typ("Order.Created.V1.0")},
		{name: "empty id, time and specversion", sig: bus.Signal{Type: "a", Source: "/s"}},
		{name: "data exactly at the limit", sig: with(func(s *bus.Signal) { s.Data = make([]byte, bus.DefaultMaxDataSize) })},
		{name: "all optional attributes", sig: with(func(s *bus.Signal) {
			s.Subject = "x"
			s.DataContentType = "application/json"
			s.DataSchema = "https://example.com/s"
			s.Time = time.Now()
			s.Data = []byte(`{}`)
		})},
		{name: "extension string", sig: ext("tenant", "acme")},
		{name: "extension digits in name", sig: ext("x9", "v")},
		{name: "extension bool", sig: ext("sampled", false)},
		{name: "extension int", sig: ext("n", -7)},
		{name: "extension int8", sig: ext("n", int8(1))},
		{name: "extension int16", sig: ext("n", int16(1))},
		{name: "extension int32", sig: ext("n", int32(1))},
		{name: "extension int64", sig: ext("n", int64(1))},
		{name: "extension uint8", sig: ext("n", uint8(1))},
		{name: "extension uint16", sig: ext("n", uint16(1))},
		{name: "extension uint32", sig: ext("n", uint32(1))},
		{name: "extension bytes", sig: ext("b", []byte("x"))},
		{name: "extension time", sig: ext("at", time.Now())},
		{name: "extension time year 0 and 9999", sig: with(func(s *bus.Signal) {
			s.Time = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
			s.Extensions = map[string]any{"at": time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}
		})},
		{name: "extension url", sig: ext("ref", &url.URL{Scheme: "urn", Opaque: "x"})},
		{name: "long extension name", sig: ext(strings.Repeat("a", 40), "v")},

		// Required attributes.
		{name: "empty type", sig: typ(""), field: "type"},
		{name: "empty source", sig: with(func(s *bus.Signal) { s.Source = "" }), field: "source"},

		// Type grammar.
		{name: "type empty segment", sig: typ("a..b"), field: "type"},
		{name: "type leading dot", sig: typ(".a"), field: "type"},
		{name: "type trailing dot", sig: typ("a."), field: "type"},
		{name: "type only a dot", sig: typ("."), field: "type"},
		{name: "type space", sig: typ("order created"), field: "type"},
		{name: "type tab", sig: typ("order\tcreated"), field: "type"},
		{name: "type star", sig: typ("order.*"), field: "type"},
		{name: "type double star", sig: typ("order.**"), field: "type"},
		{name: "type greater-than", sig: typ("order.>"), field: "type"},
		{name: "type slash", sig: typ("order/created"), field: "type"},
		{name: "type unicode", sig: typ("ordre.créé"), field: "type"},
		{name: "type NUL", sig: typ("a\x00"), field: "type"},

		// Extensions.
		{name: "extension upper-case", sig: ext("Tenant", "x"), field: `extension "Tenant"`},
		{name: "extension dash", sig: ext("trace-id", "x"), field: `extension "trace-id"`},
		{name: "extension underscore", sig: ext("trace_id", "x"), field: `extension "trace_id"`},
		{name: "extension unicode", sig: ext("é", "x"), field: "extension"},
		{name: "extension empty name", sig: ext("", "x"), field: "extension name"},
		{name: "extension reserved id", sig: ext("id", "x"), field: `extension "id"`},
		{name: "extension reserved data", sig: ext("data", "x"), field: `extension "data"`},
		{name: "extension reserved specversion", sig: ext("specversion", "x"), field: `extension "specversion"`},
		{name: "extension reserved time", sig: ext("time", "x"), field: `extension "time"`},
		{name: "extension float64", sig: ext("ratio", 0.5), field: `extension "ratio"`},
		{name: "extension float32", sig: ext("ratio", float32(0.5)), field: `extension "ratio"`},
		{name: "extension struct", sig: ext("obj", struct{ A int }{1}), field: `extension "obj"`},
		{name: "extension map", sig: ext("obj", map[string]any{"a": 1}), field: `extension "obj"`},
		{name: "extension slice", sig: ext("list", []string{"a"}), field: `extension "list"`},
		{name: "extension nil", sig: ext("none", nil), field: `extension "none"`},
		{name: "extension url value", sig: ext("ref", url.URL{Host: "x"}), field: `extension "ref"`},
		{name: "extension nil url", sig: ext("ref", (*url.URL)(nil)), field: `extension "ref"`},

		// Times RFC 3339 cannot write.
		{name: "time year 10000", sig: with(func(s *bus.Signal) { s.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), field: "time"},
		{name: "time year -1", sig: with(func(s *bus.Signal) { s.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }), field: "time"},
		{name: "extension time year 10000", sig: ext("at", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)), field: `extension "at"`},
		// The year is the one RFC 3339 writes: in the time's own zone.
		{name: "time year 9999 in UTC, 10000 in its zone", sig: with(func(s *bus.Signal) {
			s.Time = time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC).In(time.FixedZone("ahead", 14*3600))
		}), field: "time"},
		{name: "time year 0 in UTC, -1 in its zone", sig: with(func(s *bus.Signal) {
			s.Time = time.Date(0, 1, 1, 1, 0, 0, 0, time.UTC).In(time.FixedZone("behind", -12*3600))
		}), field: "time"},
		{name: "time year 9999 in UTC, 10000 in a zone five days ahead", sig: with(func(s *bus.Signal) {
			s.Time = time.Date(9999, 12, 28, 23, 0, 0, 0, time.UTC).In(time.FixedZone("far", 120*3600))
		}), field: "time"},
		{name: "time year 0 in UTC, -1 in a zone five days behind", sig: with(func(s *bus.Signal) {
			s.Time = time.Date(0, 1, 3, 12, 0, 0, 0, time.UTC).In(time.FixedZone("far", -120*3600))
		}), field: "time"},
		{name: "extension time year 10000 in a zone five days ahead", sig: ext("at",
			time.Date(9999, 12, 28, 23, 0, 0, 0, time.UTC).In(time.FixedZone("far", 120*3600))), field: `extension "at"`},
		{name: "time year 10000 in UTC, 9999 in its zone", sig: with(func(s *bus.Signal) {
			s.Time = time.Date(10000, 1, 1, 1, 0, 0, 0, time.UTC).In(time.FixedZone("behind", -12*3600))
		})},

		// Strings JSON and the NATS binding would alter.
		{name: "id not UTF-8", sig: with(func(s *bus.Signal) { s.ID = "\xff" }), field: "id"},
		{name: "source not UTF-8", sig: with(func(s *bus.Signal) { s.Source = "/\xff" }), field: "source"},
		{name: "subject not UTF-8", sig: with(func(s *bus.Signal) { s.Subject = "\xfe" }), field: "subject"},
		{name: "datacontenttype not UTF-8", sig: with(func(s *bus.Signal) { s.DataContentType = "text/\xff" }), field: "datacontenttype"},
		{name: "dataschema not UTF-8", sig: with(func(s *bus.Signal) { s.DataSchema = "\xff" }), field: "dataschema"},
		// Past the first eight bytes, which are checked eight at a time.
		{name: "source not UTF-8 after eight bytes", sig: with(func(s *bus.Signal) { s.Source = "/abcdefgh\xff" }), field: "source"},
		{name: "id not UTF-8 in the second word", sig: with(func(s *bus.Signal) { s.ID = "abcdefgh\xffxxxxxxx" }), field: "id"},
		{name: "subject with UTF-8 after eight bytes", sig: with(func(s *bus.Signal) { s.Subject = "abcdefgh-créé-ünïcode" })},
		{name: "extension value not UTF-8 after eight bytes", sig: ext("tenant", "abcdefghij\xc3"), field: `extension "tenant"`},

		// Spec version and data.
		{name: "specversion 0.3", sig: with(func(s *bus.Signal) { s.SpecVersion = "0.3" }), field: "specversion"},
		{name: "specversion 1.0.2", sig: with(func(s *bus.Signal) { s.SpecVersion = "1.0.2" }), field: "specversion"},
		{name: "specversion 1", sig: with(func(s *bus.Signal) { s.SpecVersion = "1" }), field: "specversion"},
		{name: "data one byte over the limit", sig: with(func(s *bus.Signal) {
			s.Data = make([]byte, bus.DefaultMaxDataSize+1)
		}), field: "data"},
	}
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sig.Validate()
			// Within a batch, attributes equal to the previous signal's
			// are not checked again: the verdict must not change.
			// sigBase differs from each case in one attribute at most.
			batchErr := b.Publish(context.Background(), sigBase(), tc.sig)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if batchErr != nil {
					t.Fatalf("Publish after a valid signal: %v", batchErr)
				}
				return
			}
			wantSignalError(t, err, bus.ErrInvalidSignal, tc.field)
			wantSignalError(t, batchErr, bus.ErrInvalidSignal, "signal 1 of 2")
			wantSignalError(t, batchErr, bus.ErrInvalidSignal, tc.field)
		})
	}
}

func TestSignalValidateReportsTheFirstFault(t *testing.T) {
	// A signal with several faults is refused for the first in the
	// order type, source, id, source's bytes, subject, content type,
	// schema, spec version, data, time, extensions.
	for _, tc := range []struct {
		sig   bus.Signal
		field string
	}{
		{bus.Signal{Type: "bad..type", ID: "x"}, "type"},
		{bus.Signal{Type: "a.b", Source: "/\xff", ID: "\xff"}, "id"},
		{bus.Signal{Type: "a.b", Source: "/\xff", Subject: "\xff"}, "source"},
		{bus.Signal{Type: "a.b", Source: "/s", Subject: "\xff", DataContentType: "\xff"}, "subject"},
		{bus.Signal{Type: "a.b", Source: "/s", SpecVersion: "0.3", Data: make([]byte, bus.DefaultMaxDataSize+1)}, "specversion"},
	} {
		err := tc.sig.Validate()
		wantSignalError(t, err, bus.ErrInvalidSignal, tc.field)
		if msg := err.Error(); !strings.Contains(msg, ": "+tc.field+" ") {
			t.Errorf("Validate(%+v) = %v, want the %s named first", tc.sig, err, tc.field)
		}
	}
}

func TestSignalValidateTypeOffset(t *testing.T) {
	// The error says where in the type the problem is, as pattern errors do.
	s := sigBase()
	s.Type = "order.cre ated"
	wantSignalError(t, s.Validate(), bus.ErrInvalidSignal, "offset 9")
	s.Type = "order..created"
	wantSignalError(t, s.Validate(), bus.ErrInvalidSignal, "offset 6")
}

func TestSignalClone(t *testing.T) {
	s := sigBase()
	s.Data = []byte("abc")
	s.Extensions = map[string]any{"tenant": "acme"}
	c := s.Clone()
	c.Data[0] = 'X'
	c.Extensions["tenant"] = "other"
	c.Extensions["extra"] = true
	if string(s.Data) != "abc" {
		t.Errorf("Clone shares Data: original now %q", s.Data)
	}
	if len(s.Extensions) != 1 || s.Extensions["tenant"] != "acme" {
		t.Errorf("Clone shares Extensions: original now %v", s.Extensions)
	}
	if z := (bus.Signal{}).Clone(); z.Data != nil || z.Extensions != nil {
		t.Errorf("Clone of the zero Signal = %+v, want nil Data and Extensions", z)
	}
}

func TestSignalDecodeData(t *testing.T) {
	s, err := bus.NewSignal("order.created", "/orders", sigOrder{ID: "o-1", Total: 9})
	if err != nil {
		t.Fatal(err)
	}
	var got sigOrder
	if err := s.DecodeData(&got); err != nil {
		t.Fatalf("DecodeData: %v", err)
	}
	if got != (sigOrder{ID: "o-1", Total: 9}) {
		t.Errorf("DecodeData = %+v", got)
	}
	s.Data = []byte("not json")
	if err := s.DecodeData(&got); err == nil || !strings.Contains(err.Error(), s.ID) {
		t.Errorf("DecodeData of bad JSON: err = %v, want one naming the signal id", err)
	}
}
