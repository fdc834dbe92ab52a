package bus

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"time"
	"unicode/utf8"
)

// SpecVersion is the CloudEvents specification version every Signal carries.
const SpecVersion = "1.0"

// DefaultMaxDataSize is the largest Data a Signal may carry unless the bus is
// configured otherwise with WithMaxDataSize.
const DefaultMaxDataSize = 1 << 20

// Signal is one CloudEvents 1.0 event. The field names follow the
// CloudEvents context attributes; Extensions holds the extension attributes
// (lower-case a–z0–9 names), carried through the bus untouched.
//
// A Signal is a value: Publish copies it. The Extensions map and the Data
// slice of a delivered Signal may be shared with other subscriptions and
// with the history, so handlers must treat them as read-only (use Clone to
// get a copy to modify). The delivered Data has no spare capacity, so an
// append to it copies.
type Signal struct {
	ID              string
	Source          string
	Type            string
	SpecVersion     string
	Subject         string
	DataContentType string
	DataSchema      string
	Time            time.Time
	Data            []byte
	Extensions      map[string]any
}

// SignalOption sets an optional attribute in NewSignal.
type SignalOption func(*Signal) error

// WithSubject sets the CloudEvents subject: what, within the source, the
// signal is about (an order number, a file name).
func WithSubject(subject string) SignalOption {
	return func(s *Signal) error { s.Subject = subject; return nil }
}

// WithDataContentType overrides the content type NewSignal derives from the
// data (application/json for JSON-encoded values, none for []byte).
func WithDataContentType(contentType string) SignalOption {
	return func(s *Signal) error { s.DataContentType = contentType; return nil }
}

// WithDataSchema sets the URI of the schema the data adheres to.
func WithDataSchema(schema string) SignalOption {
	return func(s *Signal) error {
		if _, err := url.Parse(schema); err != nil {
			return fmt.Errorf("%w: dataschema %q: %w", ErrInvalidOption, schema, err)
		}
		s.DataSchema = schema
		return nil
	}
}

// WithExtension sets one extension attribute. The name must be lower-case
// a–z0–9; the value a string, bool, integer, []byte, time.Time or *url.URL,
// the types CloudEvents can carry.
func WithExtension(name string, value any) SignalOption {
	return func(s *Signal) error {
		if s.Extensions == nil {
			s.Extensions = make(map[string]any, 1)
		}
		s.Extensions[name] = value
		return nil
	}
}

// WithID replaces the generated id, for callers that carry an id from
// elsewhere (an idempotency key, an upstream event id).
func WithID(id string) SignalOption {
	return func(s *Signal) error { s.ID = id; return nil }
}

// WithTime replaces the creation time NewSignal records.
func WithTime(t time.Time) SignalOption {
	return func(s *Signal) error { s.Time = t; return nil }
}

// NewSignal builds a valid Signal of the given type and source. Data given as
// []byte is kept as is (and carries no content type unless one is set);
// anything else is JSON-encoded with datacontenttype application/json; nil
// means no data. NewSignal fills ID (a UUIDv7, increasing within the
// process), Time and SpecVersion, so the caller knows the id before
// publishing. The returned error wraps ErrInvalidSignal or ErrInvalidOption.
func NewSignal(typ, source string, data any, opts ...SignalOption) (Signal, error) {
	s := Signal{
		ID:          NewID(),
		Source:      source,
		Type:        typ,
		SpecVersion: SpecVersion,
		Time:        time.Now(),
	}
	switch d := data.(type) {
	case nil:
	case []byte:
		s.Data = d
	case json.RawMessage:
		s.Data = d
		s.DataContentType = "application/json"
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return Signal{}, fmt.Errorf("%w: data: %w", ErrInvalidSignal, err)
		}
		s.Data = b
		s.DataContentType = "application/json"
	}
	for _, opt := range opts {
		if err := opt(&s); err != nil {
			return Signal{}, err
		}
	}
	if err := s.Validate(); err != nil {
		return Signal{}, err
	}
	return s, nil
}

// DecodeData JSON-decodes the data into v.
func (s Signal) DecodeData(v any) error {
	if err := json.Unmarshal(s.Data, v); err != nil {
		return fmt.Errorf("signal %s: decode data: %w", s.ID, err)
	}
	return nil
}

// Clone returns a deep copy of s whose Data and Extensions may be modified
// without affecting s.
func (s Signal) Clone() Signal {
	c := s
	if s.Data != nil {
		c.Data = append([]byte(nil), s.Data...)
	}
	if s.Extensions != nil {
		c.Extensions = make(map[string]any, len(s.Extensions))
		for k, v := range s.Extensions {
			c.Extensions[k] = v
		}
	}
	return c
}

// Validate reports whether s is a CloudEvents 1.0 event the bus can carry,
// with the default data limit (DefaultMaxDataSize). The error names the
// field and wraps ErrInvalidSignal. An empty ID, Time or SpecVersion is
// valid here: Publish fills them.
func (s Signal) Validate() error {
	v := validator{maxData: DefaultMaxDataSize}
	return v.check(&s)
}

// validator checks signals one after another. The signals of a batch
// mostly share their type, source and content type: a string equal to the
// one the previous signal passed with is not checked again (strings that
// share their bytes compare equal without reading them), which makes the
// check of a 64-signal batch several times cheaper per signal than 64
// checks of one.
type validator struct {
	maxData int
	// The last type, source and content type that passed; "" before any.
	typ, source, contentType string
}

func (v *validator) check(s *Signal) error {
	// The checks come in the order Validate always made them, so that a
	// signal with several faults is refused for the same one. The empty
	// checks are not cached: "" is also what the cache starts with.
	if s.Type == "" {
		return fieldError("type", "is empty")
	}
	if s.Type != v.typ {
		if err := checkType(s.Type); err != nil {
			return err
		}
		v.typ = s.Type
	}
	if s.Source == "" {
		return fieldError("source", "is empty")
	}
	if err := checkUTF8("id", s.ID); err != nil {
		return err
	}
	if s.Source != v.source {
		if err := checkUTF8("source", s.Source); err != nil {
			return err
		}
		v.source = s.Source
	}
	if err := checkUTF8("subject", s.Subject); err != nil {
		return err
	}
	if s.DataContentType != v.contentType {
		if err := checkUTF8("datacontenttype", s.DataContentType); err != nil {
			return err
		}
		v.contentType = s.DataContentType
	}
	if err := checkUTF8("dataschema", s.DataSchema); err != nil {
		return err
	}
	if s.SpecVersion != "" && s.SpecVersion != SpecVersion {
		return fieldError("specversion", fmt.Sprintf("is %q, want %q", s.SpecVersion, SpecVersion))
	}
	if len(s.Data) > v.maxData {
		return fieldError("data", fmt.Sprintf("is %d bytes, over the %d-byte limit", len(s.Data), v.maxData))
	}
	if !s.Time.IsZero() && !inRFC3339Range(s.Time) {
		return fieldError("time", fmt.Sprintf("%v is outside the years 0-9999 of RFC 3339", s.Time))
	}
	if len(s.Extensions) == 0 {
		return nil
	}
	for name, value := range s.Extensions {
		if err := checkExtensionName(name); err != nil {
			return err
		}
		if err := checkExtensionValue(name, value); err != nil {
			return err
		}
	}
	return nil
}

// checkUTF8 refuses a string attribute that is not valid UTF-8: JSON and
// the NATS binding would replace invalid bytes with U+FFFD, and two
// different ids could become one.
func checkUTF8(field, value string) error {
	if !validUTF8(value) {
		return fieldError(field, "is not valid UTF-8")
	}
	return nil
}

// validUTF8 is utf8.ValidString with a faster walk over an ASCII prefix,
// eight bytes at a time: the attributes checked per signal are short and
// ASCII.
func validUTF8(s string) bool {
	for len(s) >= 8 {
		// One 8-byte load: the compiler merges these.
		_ = s[7]
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		if w&0x8080808080808080 != 0 {
			break
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

func fieldError(field, problem string) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidSignal, field, problem)
}

// checkType checks the type grammar: dot-separated segments of [A-Za-z0-9_-]+.
func checkType(t string) error {
	segStart := 0
	for i := 0; i <= len(t); i++ {
		if i == len(t) || t[i] == '.' {
			if i == segStart {
				return fieldError("type", fmt.Sprintf("%q has an empty segment at offset %d", t, i))
			}
			segStart = i + 1
			continue
		}
		if !isSegmentByte(t[i]) {
			r, _ := utf8.DecodeRuneInString(t[i:])
			return fieldError("type", fmt.Sprintf("%q has %q at offset %d; segments are [A-Za-z0-9_-]+", t, r, i))
		}
	}
	return nil
}

func isSegmentByte(c byte) bool { return segmentBytes[c] }

// segmentBytes is [A-Za-z0-9_-] as a table: one load per byte of every
// published type.
var segmentBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	return t
}()

// isReservedAttribute reports whether name is a CloudEvents context
// attribute (or one of the JSON format's data members), which cannot be
// used as an extension name. A switch, not a map: validation runs for
// every extension of every signal, and hashing the name cost more than
// the rest of the check.
func isReservedAttribute(name string) bool {
	switch name {
	case "id", "source", "type", "specversion", "subject",
		"time", "datacontenttype", "dataschema", "data", "data_base64":
		return true
	}
	return false
}

func checkExtensionName(name string) error {
	if name == "" {
		return fieldError("extension name", "is empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			r, _ := utf8.DecodeRuneInString(name[i:])
			return fieldError("extension "+fmt.Sprintf("%q", name), fmt.Sprintf("has %q at offset %d; names are lower-case [a-z0-9]", r, i))
		}
	}
	if isReservedAttribute(name) {
		return fieldError("extension "+fmt.Sprintf("%q", name), "is a reserved CloudEvents attribute")
	}
	return nil
}

// inRFC3339Range reports whether t's year has the four digits RFC 3339
// writes: a CloudEvents time must be one, in every format.
func inRFC3339Range(t time.Time) bool {
	// Inside these bounds the year has four digits in any zone whose
	// offset is under two days (every real one); only times near the
	// edges, or in a fixed zone made with a larger offset, pay for Year.
	if _, offset := t.Zone(); offset > -maxRealZoneOffset && offset < maxRealZoneOffset &&
		t.After(rfc3339SafeStart) && t.Before(rfc3339SafeEnd) {
		return true
	}
	y := t.Year()
	return y >= 0 && y <= 9999
}

const maxRealZoneOffset = 2 * 24 * 3600 // seconds

var (
	rfc3339SafeStart = time.Date(0, time.January, 3, 0, 0, 0, 0, time.UTC)
	rfc3339SafeEnd   = time.Date(9999, time.December, 29, 0, 0, 0, 0, time.UTC)
)

// checkInt32 enforces the range of the CloudEvents Integer type (32-bit
// signed): consumers in other languages reject anything wider.
func checkInt32(name string, v int64) error {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return fieldError(fmt.Sprintf("extension %q", name), fmt.Sprintf("is %d, outside the 32-bit range of a CloudEvents integer", v))
	}
	return nil
}

func checkExtensionValue(name string, v any) error {
	switch u := v.(type) {
	case string:
		if !validUTF8(u) {
			return fieldError(fmt.Sprintf("extension %q", name), "is not valid UTF-8")
		}
		return nil
	case int:
		return checkInt32(name, int64(u))
	case int64:
		return checkInt32(name, u)
	case uint32:
		return checkInt32(name, int64(u))
	case time.Time:
		if !inRFC3339Range(u) {
			return fieldError(fmt.Sprintf("extension %q", name), fmt.Sprintf("%v is outside the years 0-9999 of RFC 3339", u))
		}
		return nil
	case bool, int8, int16, int32, uint8, uint16, []byte:
		return nil
	case *url.URL:
		if u == nil {
			// A typed nil would pass as a URI and panic in MarshalJSON.
			return fieldError(fmt.Sprintf("extension %q", name), "is a nil *url.URL")
		}
		return nil
	default:
		return fieldError(fmt.Sprintf("extension %q", name),
			fmt.Sprintf("has a value of type %T; CloudEvents carries string, bool, integer, []byte, time.Time or *url.URL", v))
	}
}
