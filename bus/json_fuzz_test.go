package bus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/signalbus/signalbus/bus"
)

// FuzzUnmarshalJSON checks UnmarshalJSON against a round trip: whatever it
// accepts is a CloudEvent that MarshalJSON can write and that decodes back
// to the same signal, so one decode is enough to reach a fixed point. It must
// never panic, and encoding/json must agree with it on what it accepts.
func FuzzUnmarshalJSON(f *testing.F) {
	for _, tc := range jsonSpecExamples {
		f.Add([]byte(tc.in))
	}
	for _, tc := range jsonDecodeErrors {
		f.Add([]byte(tc.in))
	}
	for _, s := range fuzzSeedSignals() {
		b, err := s.MarshalJSON()
		if err != nil {
			f.Fatalf("seed %+v: %v", s, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var x bus.Signal
		err := x.UnmarshalJSON(in)

		// encoding/json validates the whole input before it calls
		// UnmarshalJSON; both must accept the same documents.
		var std bus.Signal
		stdErr := json.Unmarshal(in, &std)
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("UnmarshalJSON err = %v but json.Unmarshal err = %v for %q", err, stdErr, in)
		}
		if err != nil {
			if !errors.Is(err, bus.ErrInvalidSignal) {
				t.Fatalf("UnmarshalJSON(%q) = %v, want an error wrapping ErrInvalidSignal", in, err)
			}
			return
		}
		if d := sigDiff(x, std); d != "" {
			t.Fatalf("UnmarshalJSON and json.Unmarshal disagree on %q: %s", in, d)
		}
		if x.SpecVersion != bus.SpecVersion || x.ID == "" || x.Source == "" || x.Type == "" {
			t.Fatalf("UnmarshalJSON(%q) accepted %+v without its required attributes", in, x)
		}

		out, err := x.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of %+v (decoded from %q): %v", x, in, err)
		}
		if !json.Valid(out) {
			t.Fatalf("MarshalJSON wrote invalid JSON %q", out)
		}
		var y bus.Signal
		if err := y.UnmarshalJSON(out); err != nil {
			t.Fatalf("UnmarshalJSON of our own encoding %q (from %q): %v", out, in, err)
		}
		if d := sigDiff(x, y); d != "" {
			t.Fatalf("round trip of %q through %q: %s", in, out, d)
		}
		again, err := y.MarshalJSON()
		if err != nil {
			t.Fatalf("second MarshalJSON: %v", err)
		}
		if !bytes.Equal(out, again) {
			t.Fatalf("encoding is not a fixed point:\n first %q\nsecond %q", out, again)
		}

		// Through encoding/json, which compacts and HTML-escapes the
		// inline data: a fixed point after that one normalisation.
		std1, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("json.Marshal of %+v: %v", x, err)
		}
		var z bus.Signal
		if err := json.Unmarshal(std1, &z); err != nil {
			t.Fatalf("json.Unmarshal of json.Marshal output %q: %v", std1, err)
		}
		dataX, dataZ := x.Data, z.Data
		x.Data, z.Data = nil, nil
		if d := sigDiff(x, z); d != "" {
			t.Fatalf("round trip through encoding/json %q: %s", std1, d)
		}
		if !bytes.Equal(dataX, dataZ) && !jsonSame(dataX, dataZ) {
			t.Fatalf("data %q came back from encoding/json as %q", dataX, dataZ)
		}
		z.Data = dataZ
		std2, err := json.Marshal(z)
		if err != nil {
			t.Fatalf("second json.Marshal: %v", err)
		}
		if !bytes.Equal(std1, std2) {
			t.Fatalf("encoding/json encoding is not a fixed point:\n first %q\nsecond %q", std1, std2)
		}
	})
}

// jsonSame reports whether a and b are the same JSON text up to
// insignificant whitespace and the escaping of characters in strings.
func jsonSame(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	var ha, hb bytes.Buffer
	json.HTMLEscape(&ha, ca.Bytes())
	json.HTMLEscape(&hb, cb.Bytes())
	return bytes.Equal(ha.Bytes(), hb.Bytes())
}

// fuzzSeedSignals are valid signals whose encodings seed the fuzzer.
func fuzzSeedSignals() []bus.Signal {
	mk := func(f func(*bus.Signal)) bus.Signal {
		s := sigBase()
		f(&s)
		return s
	}
	return []bus.Signal{
		sigBase(),
		mk(func(s *bus.Signal) { s.DataContentType = "application/json"; s.Data = []byte(`{"a":[1,"x",null]}`) }),
		mk(func(s *bus.Signal) { s.Data = []byte{0, 1, 2, 0xff} }),
		mk(func(s *bus.Signal) { s.DataContentType = "text/plain"; s.Data = []byte("hi") }),
		mk(func(s *bus.Signal) { s.DataContentType = "application/json"; s.Data = []byte(" null ") }),
		mk(func(s *bus.Signal) {
			s.Extensions = map[string]any{"tenant": "acme", "sampled": true, "attempt": 3, "blob": []byte("x")}
		}),
	}
}

// typeGrammar is the type grammar of the design, as an independent oracle.
var typeGrammar = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// FuzzSignalType checks Validate's type check against typeGrammar.
func FuzzSignalType(f *testing.F) {
	for _, s := range []string{
		"", "a", "order.created", "my-app.order_created.v2", "a..b", ".a", "a.", ".",
		"order created", "order.*", "order.**", "ordre.créé", "a\x00", "a.b\n", "\n", "-._",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, typ string) {
		s := sigBase()
		s.Type = typ
		err := s.Validate()
		want := typeGrammar.MatchString(typ)
		switch {
		case want && err != nil:
			t.Fatalf("Validate rejects type %q, which the grammar accepts: %v", typ, err)
		case !want && err == nil:
			t.Fatalf("Validate accepts type %q, which the grammar rejects", typ)
		case err != nil && (!errors.Is(err, bus.ErrInvalidSignal) || !strings.Contains(err.Error(), "type")):
			t.Fatalf("Validate(type %q) = %v, want ErrInvalidSignal naming type", typ, err)
		}
	})
}
