package wire_test

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

var knownReasons = map[string]bool{
	wire.ReasonNotCloudEvent: true, wire.ReasonUnsupportedFormat: true, wire.ReasonMissingSpecVersion: true,
	wire.ReasonBadSpecVersion: true, wire.ReasonMissingID: true, wire.ReasonMissingSource: true,
	wire.ReasonMissingType: true, wire.ReasonBadType: true, wire.ReasonBadTime: true,
	wire.ReasonBadExtension: true, wire.ReasonBadEncoding: true, wire.ReasonDuplicateHeader: true,
	wire.ReasonBadStructured: true, wire.ReasonInvalidSignal: true,
}

// headerBlock renders a header map in parseHeaderBlock's form, keys sorted.
func headerBlock(h map[string][]string) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return b.String()
}

// FuzzDecode feeds Decode a subject, a header block ("key: value" lines, see
// parseHeaderBlock) and a body. Decode must not panic; its errors must wrap
// ErrNotCloudEvent and have a known reason; a decoded signal must encode,
// decode back equal (extensions as canonical strings), and be a fixed point
// of Decode(Encode(·)) from then on. The one signal Decode may return and
// Encode must refuse is one whose datacontenttype a content-type header
// cannot carry (a structured event, or a raw non-ASCII content-type).
func FuzzDecode(f *testing.F) {
	for _, tc := range interopCases {
		f.Add("signals.x", tc.raw.headers, []byte(tc.raw.body))
	}
	for _, tc := range rejectCases {
		f.Add("signals.x", tc.raw.headers, []byte(tc.raw.body))
	}
	for _, s := range roundTripSignals(f) {
		m, err := wire.Encode(s, "")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Subject, headerBlock(m.Header), m.Data)
	}
	f.Fuzz(func(t *testing.T, subject, headers string, body []byte) {
		m := rawMsg{headers: headers, body: string(body)}.msg()
		m.Subject = subject
		d1, err := wire.Decode(m)
		if err != nil {
			if !errors.Is(err, wire.ErrNotCloudEvent) {
				t.Fatalf("Decode error %q does not wrap ErrNotCloudEvent", err)
			}
			if r := wire.Reason(err); !knownReasons[r] {
				t.Fatalf("Reason(%q) = %q, not a known reason", err, r)
			}
			return
		}
		v := d1
		v.Data = nil // Decode leaves the data limit to the node
		if err := v.Validate(); err != nil {
			t.Fatalf("Decode returned a signal that fails Validate: %v", err)
		}
		if !contentTypeSendable(d1.DataContentType) {
			_, err := wire.Encode(d1, "")
			if !errors.Is(err, bus.ErrInvalidSignal) || !strings.Contains(err.Error(), "datacontenttype") {
				t.Fatalf("Encode of datacontenttype %q: error %v, want one naming datacontenttype", d1.DataContentType, err)
			}
			return
		}
		d2 := reencode(t, d1)
		if d := diffSignals(normalized(d1), d2); d != "" {
			t.Fatalf("Decode(Encode(d)) differs from d:\n%s\nd = %#v", d, d1)
		}
		d3 := reencode(t, d2)
		if d := diffSignals(d2, d3); d != "" {
			t.Fatalf("not a fixed point:\n%s", d)
		}
	})
}

// contentTypeSendable is the test's own oracle for a datacontenttype the
// content-type header can carry: printable ASCII, no space at either end,
// not a CloudEvents media type.
func contentTypeSendable(ct string) bool {
	for i := 0; i < len(ct); i++ {
		if ct[i] < ' ' || ct[i] > '~' {
			return false
		}
	}
	if strings.HasPrefix(ct, " ") || strings.HasSuffix(ct, " ") {
		return false
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt != "application/cloudevents" && !strings.HasPrefix(mt, "application/cloudevents+") &&
		!strings.HasPrefix(mt, "application/cloudevents-batch")
}

func reencode(t *testing.T, s bus.Signal) bus.Signal {
	t.Helper()
	m, err := wire.Encode(s, "")
	if err != nil {
		t.Fatalf("Encode(%#v): %v", s, err)
	}
	got, err := wire.Decode(m)
	if err != nil {
		t.Fatalf("Decode(Encode(%#v)): %v\nheaders %v", s, err, m.Header)
	}
	return got
}
