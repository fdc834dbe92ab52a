package wire

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The header value encoding of the CloudEvents NATS protocol binding
// (cloudevents/spec, cloudevents/bindings/nats-protocol-binding.md,
// §3.1.3.2, the same rules as the HTTP binding):
//
//   - Encoding percent-encodes, byte by byte of the UTF-8 form, every
//     character outside the printable ASCII range U+0021–U+007E, and the
//     space, '"' and '%' inside it, with upper-case hex digits. Nothing else
//     is encoded, so the result needs no further quoting.
//   - Decoding first removes RFC 7230 §3.2.6 double quotes (a value that is
//     one quoted-string, with backslash escapes, as older versions of the
//     spec allowed), then performs one round of percent-decoding that
//     accepts lower-case hex and needlessly encoded characters, and rejects a
//     result that is not valid UTF-8 ("%C0%A0", an overlong space, included).

// errBadEncoding is wrapped by every decodeValue error.
var errBadEncoding = errors.New("bad header value encoding")

const upperHex = "0123456789ABCDEF"

// mustEncode reports whether byte c of a UTF-8 string is percent-encoded.
// Bytes of multi-byte characters are all >= 0x80, so encoding byte by byte
// is encoding each character's UTF-8 sequence.
func mustEncode(c byte) bool { return c <= ' ' || c >= 0x7F || c == '"' || c == '%' }

// encodeValue percent-encodes s for a ce- header. s must be valid UTF-8
// (Encode checks it, naming the attribute); invalid bytes are encoded as
// they are, which decodeValue then rejects.
func encodeValue(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEncode(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEncode(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xF])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodeValue undoes encodeValue for a header value as received, after the
// optional whitespace around it is trimmed. The error wraps errBadEncoding
// and says where the value is malformed.
func decodeValue(v string) (string, error) {
	v = trimOWS(v)
	if len(v) > 0 && v[0] == '"' {
		var err error
		if v, err = unquote(v); err != nil {
			return "", err
		}
	}
	if strings.IndexByte(v, '%') >= 0 {
		b := make([]byte, 0, len(v))
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c != '%' {
				b = append(b, c)
				continue
			}
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				end := min(i+3, len(v))
				return "", fmt.Errorf("%w: %q at offset %d is not %%XX", errBadEncoding, v[i:end], i)
			}
			b = append(b, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
		}
		v = string(b)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("%w: not valid UTF-8", errBadEncoding)
	}
	return v, nil
}

// unquote decodes a value that is one RFC 7230 quoted-string: DQUOTE, then
// characters or backslash-escaped characters, then DQUOTE as the last byte.
func unquote(v string) (string, error) {
	b := make([]byte, 0, len(v))
	for i := 1; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			if i+1 >= len(v) {
				return "", fmt.Errorf("%w: quoted string ends in a backslash", errBadEncoding)
			}
			i++
			b = append(b, v[i])
		case '"':
			if i != len(v)-1 {
				return "", fmt.Errorf("%w: text after the quoted string at offset %d", errBadEncoding, i+1)
			}
			return string(b), nil
		default:
			b = append(b, c)
		}
	}
	return "", fmt.Errorf("%w: unterminated quoted string", errBadEncoding)
}

// trimOWS trims the optional whitespace (SP, HTAB) RFC 7230 allows around a
// header value. Encoded values never start or end with either.
func trimOWS(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// rawHeaderSafe reports whether v can be sent as a header value without
// percent-encoding and come back unchanged: printable ASCII and inner
// spaces, no whitespace at either end (nats.go trims it on publish).
func rawHeaderSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c >= 0x7F {
			return false
		}
	}
	return len(v) == 0 || (v[0] != ' ' && v[len(v)-1] != ' ')
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
