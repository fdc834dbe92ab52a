package wire

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

var percentCases = []struct {
	decoded, encoded string
}{
	{"", ""},
	{"plain-ASCII_0123~!#$&'()*+,/:;<=>?@[\\]^`{|}", "plain-ASCII_0123~!#$&'()*+,/:;<=>?@[\\]^`{|}"},
	{"Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"}, // the binding spec's example
	{`say "hi"`, "say%20%22hi%22"},
	{"100%", "100%25"},
	{"\x00\t\r\n\x1f\x7f", "%00%09%0D%0A%1F%7F"},
	{"\u0085\u00a0é", "%C2%85%C2%A0%C3%A9"},
	{"日本", "%E6%97%A5%E6%9C%AC"},
}

func TestEncodeValue(t *testing.T) {
	for _, tc := range percentCases {
		if got := encodeValue(tc.decoded); got != tc.encoded {
			t.Errorf("encodeValue(%q) = %q, want %q", tc.decoded, got, tc.encoded)
		}
		if got, err := decodeValue(tc.encoded); err != nil || got != tc.decoded {
			t.Errorf("decodeValue(%q) = %q, %v, want %q", tc.encoded, got, err, tc.decoded)
		}
	}
}

func TestDecodeValue(t *testing.T) {
	cases := []struct {
		in, want string
		err      string // in the error, "" for success
	}{
		{"%e2%82%ac", "€", ""},                  // lower-case hex
		{"%41%42C", "ABC", ""},                  // needlessly encoded
		{"  a b \t", "a b", ""},                 // OWS trimmed, inner space kept
		{`"quoted value"`, "quoted value", ""},  // RFC 7230 quoted-string
		{`"a \"b\" \\ c"`, `a "b" \ c`, ""},     // quoted-pairs
		{`"%41"`, "A", ""},                      // percent-decoded after unquoting
		{`""`, "", ""},                          // empty quoted string
		{`a"b"`, `a"b"`, ""},                    // not a quoted-string: literal
		{"raw é", "raw é", ""},                  // raw UTF-8 from a lax sender
		{`C:\dir`, `C:\dir`, ""},                // backslash outside quotes is literal
		{"%", "", "at offset 0"},                // truncated
		{"a%4", "", `"%4" at offset 1`},         // truncated
		{"%G0", "", "is not %XX"},               // not hex
		{"%C0%A0", "", "UTF-8"},                 // overlong space, rejected by the spec
		{"%ED%A0%80", "", "UTF-8"},              // surrogate
		{"%FF", "", "UTF-8"},                    // not UTF-8
		{"\xff", "", "UTF-8"},                   // raw, not UTF-8
		{`"open`, "", "unterminated"},           // no closing quote
		{`"a\`, "", "backslash"},                // escape at the end
		{`"a"b`, "", "after the quoted string"}, // text after the closing quote
		{`"%"`, "", "is not %XX"},               // bad escape inside quotes
	}
	for _, tc := range cases {
		got, err := decodeValue(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("decodeValue(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		case tc.err != "" && err == nil:
			t.Errorf("decodeValue(%q) = %q, want an error", tc.in, got)
		case tc.err != "" && (!errors.Is(err, errBadEncoding) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("decodeValue(%q) error = %v, want errBadEncoding mentioning %q", tc.in, err, tc.err)
		}
	}
}

// FuzzPercentEncoding checks decodeValue(encodeValue(s)) == s for valid
// UTF-8, that encoded values are plain header text, and decodeValue on any
// input against an independent oracle, url.PathUnescape plus a UTF-8 check,
// for inputs without quotes or surrounding whitespace.
func FuzzPercentEncoding(f *testing.F) {
	for _, tc := range percentCases {
		f.Add(tc.decoded)
		f.Add(tc.encoded)
	}
	for _, s := range []string{"%", "%4", "%zz", "%C0%A0", `"a\"b"`, "\xff", " x ", "+%2B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if utf8.ValidString(s) {
			enc := encodeValue(s)
			for i := 0; i < len(enc); i++ {
				if c := enc[i]; c <= ' ' || c >= 0x7F || c == '"' {
					t.Fatalf("encodeValue(%q) = %q has %q", s, enc, c)
				}
			}
			dec, err := decodeValue(enc)
			if err != nil || dec != s {
				t.Fatalf("decodeValue(encodeValue(%q)) = %q, %v", s, dec, err)
			}
		}

		got, err := decodeValue(s) // must not panic
		if err == nil && !utf8.ValidString(got) {
			t.Fatalf("decodeValue(%q) = %q, not UTF-8", s, got)
		}
		if err != nil && !errors.Is(err, errBadEncoding) {
			t.Fatalf("decodeValue(%q) error %v does not wrap errBadEncoding", s, err)
		}
		if s == "" || s[0] == '"' || s != trimOWS(s) {
			return // the oracle knows neither quoting nor OWS
		}
		want, werr := url.PathUnescape(s)
		if werr == nil && !utf8.ValidString(want) {
			werr = errors.New("not UTF-8")
		}
		if (err == nil) != (werr == nil) || (err == nil && got != want) {
			t.Fatalf("decodeValue(%q) = %q, %v; oracle %q, %v", s, got, err, want, werr)
		}
	})
}
