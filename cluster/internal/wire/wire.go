package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
)

// DefaultPrefix is the first token of every signal subject unless the node
// is configured with another.
const DefaultPrefix = "signals"

// Header names. They are written exactly so, lower-case: see the package
// documentation.
const (
	headerPrefix      = "ce-"
	headerContentType = "content-type"
	headerTraceParent = "traceparent"
	headerTraceState  = "tracestate"
)

// Subject returns the NATS subject of signals of type typ: "<prefix>.<typ>".
// An empty prefix means DefaultPrefix. A valid type (dot-separated segments
// of [A-Za-z0-9_-]+) is a valid sequence of subject tokens.
func Subject(prefix, typ string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return prefix + "." + typ
}

// Encode returns s as a NATS message in the CloudEvents binary content mode
// (see the package documentation for the header mapping), published on
// Subject(prefix, s.Type). The message's Data is s.Data, not a copy.
//
// Encode rejects, with an error wrapping bus.ErrInvalidSignal that names the
// attribute, a signal that fails s.Validate (but for the data limit, which
// is the node's to apply), one without an ID (Publish fills it), a string
// attribute or extension that is not valid UTF-8, a time outside the
// years 0–9999 that RFC 3339 can express, and a datacontenttype that the
// content-type header cannot carry: one that is not printable ASCII
// without surrounding spaces, as a media type is (RFC 2045), or one that
// names a CloudEvents format (application/cloudevents…), which in a
// content-type announces a structured-mode event instead of describing the
// data.
func Encode(s bus.Signal, prefix string) (*nats.Msg, error) {
	if err := checkEncodable(s); err != nil {
		return nil, fmt.Errorf("wire: encode signal %q: %w", s.ID, err)
	}
	n := 10 + len(s.Extensions)
	h := make(nats.Header, n)
	// One backing array for all the values: a []string per header would be
	// an allocation each. The three-index slices keep an append to one
	// header from overwriting the next.
	vals := make([]string, 0, n)
	set := func(key, value string) {
		vals = append(vals, value)
		// Direct assignment, not Header.Set: the key stays exactly as
		// written (the package documentation says why it is lower-case).
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	specVersion := s.SpecVersion
	if specVersion == "" {
		specVersion = bus.SpecVersion
	}
	id := encodeValue(s.ID)
	set(headerPrefix+"specversion", specVersion)
	set(headerPrefix+"id", id)
	set(headerPrefix+"source", encodeValue(s.Source))
	set(headerPrefix+"type", encodeValue(s.Type))
	if s.Subject != "" {
		set(headerPrefix+"subject", encodeValue(s.Subject))
	}
	if !s.Time.IsZero() {
		t, err := formatTime(s.Time)
		if err != nil {
			return nil, fmt.Errorf("wire: encode signal %q: time: %w", s.ID, err)
		}
		set(headerPrefix+"time", t)
	}
	if s.DataSchema != "" {
		set(headerPrefix+"dataschema", encodeValue(s.DataSchema))
	}
	if s.DataContentType != "" {
		// content-type alone (binding §3.1.1): a ce-datacontenttype header
		// besides it is read by the CloudEvents SDKs as an extension of a
		// reserved name, and they refuse the event.
		set(headerContentType, s.DataContentType)
	}
	for name, v := range s.Extensions {
		str, err := canonicalString(v)
		if err != nil {
			return nil, fmt.Errorf("wire: encode signal %q: extension %q: %w", s.ID, name, err)
		}
		if (name == headerTraceParent || name == headerTraceState) && rawHeaderSafe(str) {
			// The W3C header is what tracing-aware NATS clients read; the
			// binding (§3.1.2) still requires the ce- header too, which is
			// what the CloudEvents SDKs read.
			set(name, str)
		}
		set(headerPrefix+name, encodeValue(str))
	}
	set(nats.MsgIdHdr, id)
	return &nats.Msg{Subject: Subject(prefix, s.Type), Header: h, Data: s.Data}, nil
}

// checkEncodable checks what Encode needs beyond the data limit: a valid
// signal (Validate also checks that every string attribute and extension
// is UTF-8) with an ID.
func checkEncodable(s bus.Signal) error {
	v := s
	v.Data = nil // the node applies its own data limit
	if err := v.Validate(); err != nil {
		return err
	}
	if s.ID == "" {
		return fmt.Errorf("%w: id is empty", bus.ErrInvalidSignal)
	}
	return CheckDataContentType(s.DataContentType)
}

// CheckDataContentType returns an error wrapping bus.ErrInvalidSignal when
// ct, a signal's datacontenttype, cannot travel as a binary-mode
// content-type header: it is not printable ASCII without surrounding
// spaces, as a media type is (RFC 2045), or it names a CloudEvents format,
// which in a content-type announces a structured event. The empty string
// passes. A node checks this at Publish, whatever its encoding, so a
// signal it accepts can always be sent, and parked, in binary mode.
func CheckDataContentType(ct string) error {
	if ct == "" {
		return nil
	}
	if !rawHeaderSafe(ct) {
		return fmt.Errorf("%w: datacontenttype %q cannot be a content-type header: a media type is printable ASCII without surrounding spaces", bus.ErrInvalidSignal, ct)
	}
	if isCloudEventsMediaType(ct) {
		return fmt.Errorf("%w: datacontenttype %q names a CloudEvents format: as a binary-mode content-type it would announce a structured event", bus.ErrInvalidSignal, ct)
	}
	return nil
}

// formatTime renders t as RFC 3339 with nanoseconds, the CloudEvents
// Timestamp string, in t's own zone when RFC 3339 can express it.
func formatTime(t time.Time) (string, error) {
	if _, offset := t.Zone(); offset%60 != 0 {
		// RFC 3339 offsets are whole minutes: write such a time in UTC
		// rather than shift the instant.
		t = t.UTC()
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return "", fmt.Errorf("%w: %v is outside the years 0-9999 of RFC 3339", bus.ErrInvalidSignal, t)
	}
	return t.Format(time.RFC3339Nano), nil
}

// canonicalString renders an extension value as the CloudEvents canonical
// string of its type (spec.md, "Type System").
func canonicalString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.FormatInt(int64(x), 10), nil
	case int8:
		return strconv.FormatInt(int64(x), 10), nil
	case int16:
		return strconv.FormatInt(int64(x), 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint8:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint16:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x), nil
	case time.Time:
		return formatTime(x)
	case *url.URL:
		if x == nil {
			return "", fmt.Errorf("%w: a nil *url.URL", bus.ErrInvalidSignal)
		}
		return x.String(), nil
	}
	return "", fmt.Errorf("%w: a value of type %T", bus.ErrInvalidSignal, v)
}

// Decode returns the signal a NATS message carries, in either CloudEvents
// content mode:
//
//   - structured: a content-type header whose media type is
//     application/cloudevents+json (any parameters, any case) and the JSON
//     event as the body, read with bus.Signal.UnmarshalJSON (the event is
//     the body: ce- headers of such a message are ignored); also a message
//     with no ce- header and no content-type whose body is a JSON object
//     with a "specversion" member, which is how the CloudEvents Go SDK's
//     core NATS binding sends (it sets no headers at all);
//   - binary: ce- headers, matched case-insensitively, their values
//     percent-decoded; the body is the data, aliased, not copied (nil when
//     empty).
//
// In both modes the plain traceparent and tracestate headers, when present,
// become the traceparent and tracestate extensions, taking precedence over
// a ce-traceparent / ce-tracestate header or JSON member.
//
// The decoded signal passes bus.Signal.Validate, except for the data limit,
// which is the node's to apply. Every error wraps ErrNotCloudEvent; those of
// a malformed event also wrap bus.ErrInvalidSignal. Reason gives a short
// reason for either. Decode never panics.
func Decode(m *nats.Msg) (bus.Signal, error) {
	if m == nil {
		return bus.Signal{}, notCloudEvent(ReasonNotCloudEvent, "nil message")
	}
	var p plainHeaders
	if err := p.collect(m.Header); err != nil {
		return bus.Signal{}, err
	}
	var (
		s   bus.Signal
		err error
	)
	switch {
	case p.hasContentType && isCloudEventsMediaType(p.contentType):
		s, err = decodeStructuredType(p.contentType, m.Data)
	case p.hasCE:
		s, err = decodeBinary(m)
	case !p.hasContentType && looksLikeJSONEvent(m.Data):
		s, err = decodeStructured(m.Data)
	default:
		return bus.Signal{}, notCloudEvent(ReasonNotCloudEvent, "no ce- headers and no structured content type")
	}
	if err != nil {
		return bus.Signal{}, err
	}
	if p.hasTraceParent || p.hasTraceState {
		if s.Extensions == nil {
			s.Extensions = make(map[string]any, 2)
		}
		if p.hasTraceParent {
			s.Extensions[headerTraceParent] = p.traceParent
		}
		if p.hasTraceState {
			s.Extensions[headerTraceState] = p.traceState
		}
	}
	if err := validateDecoded(s); err != nil {
		return bus.Signal{}, err
	}
	return s, nil
}

// plainHeaders are the headers other than ce- ones that Decode reads, and
// whether there is any ce- header.
type plainHeaders struct {
	hasCE                         bool
	contentType                   string
	traceParent, traceState       string
	hasContentType                bool
	hasTraceParent, hasTraceState bool
}

func (p *plainHeaders) collect(h nats.Header) error {
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		var dst *string
		var has *bool
		switch {
		case hasCEPrefix(k):
			p.hasCE = true
			continue
		case asciiEqualFold(k, headerContentType):
			dst, has = &p.contentType, &p.hasContentType
		case asciiEqualFold(k, headerTraceParent):
			dst, has = &p.traceParent, &p.hasTraceParent
		case asciiEqualFold(k, headerTraceState):
			dst, has = &p.traceState, &p.hasTraceState
		default:
			continue
		}
		name := asciiLower(k)
		for _, v := range vs {
			// Not percent-encoded: content-type is a media type with its
			// own quoting rules, and the trace headers are W3C's.
			v = trimOWS(v)
			if !utf8.ValidString(v) {
				return invalid(ReasonBadEncoding, name+" is not valid UTF-8", nil)
			}
			if *has && *dst != v {
				return invalid(ReasonDuplicateHeader, name+" is given twice with different values", nil)
			}
			*dst, *has = v, true
		}
	}
	return nil
}

// The context attributes with a fixed ce- header, in the order Decode
// checks them.
const (
	attrSpecVersion = iota
	attrID
	attrSource
	attrType
	attrSubject
	attrTime
	attrDataSchema
	attrDataContentType
	numAttrs
)

var attrNames = [numAttrs]string{"specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype"}

func attrIndex(name string) int {
	for i, n := range attrNames {
		if n == name {
			return i
		}
	}
	return -1
}

func decodeBinary(m *nats.Msg) (bus.Signal, error) {
	var (
		attrs [numAttrs]string
		set   [numAttrs]bool
		ext   map[string]any
	)
	for k, vs := range m.Header {
		if !hasCEPrefix(k) || len(vs) == 0 {
			continue
		}
		name := asciiLower(k[len(headerPrefix):])
		for _, raw := range vs {
			v, err := decodeValue(raw)
			if err != nil {
				return bus.Signal{}, invalid(ReasonBadEncoding, headerPrefix+name, err)
			}
			if i := attrIndex(name); i >= 0 {
				if set[i] && attrs[i] != v {
					return bus.Signal{}, invalid(ReasonDuplicateHeader, headerPrefix+name+" is given twice with different values", nil)
				}
				attrs[i], set[i] = v, true
				continue
			}
			if ext == nil {
				ext = make(map[string]any)
			}
			if old, ok := ext[name]; ok && old != v {
				return bus.Signal{}, invalid(ReasonDuplicateHeader, headerPrefix+name+" is given twice with different values", nil)
			}
			ext[name] = v
		}
	}
	if !set[attrSpecVersion] {
		return bus.Signal{}, invalid(ReasonMissingSpecVersion, "ce-specversion is missing", nil)
	}
	if v := attrs[attrSpecVersion]; v != bus.SpecVersion {
		return bus.Signal{}, invalid(ReasonBadSpecVersion, fmt.Sprintf("ce-specversion is %q, want %q", v, bus.SpecVersion), nil)
	}
	for _, r := range [...]struct {
		attr   int
		reason string
	}{{attrID, ReasonMissingID}, {attrSource, ReasonMissingSource}, {attrType, ReasonMissingType}} {
		if attrs[r.attr] == "" {
			problem := "is missing"
			if set[r.attr] {
				problem = "is empty"
			}
			return bus.Signal{}, invalid(r.reason, headerPrefix+attrNames[r.attr]+" "+problem, nil)
		}
	}
	s := bus.Signal{
		SpecVersion: attrs[attrSpecVersion],
		ID:          attrs[attrID],
		Source:      attrs[attrSource],
		Type:        attrs[attrType],
		Subject:     attrs[attrSubject],
		DataSchema:  attrs[attrDataSchema],
		Extensions:  ext,
	}
	if ts := attrs[attrTime]; ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return bus.Signal{}, invalid(ReasonBadTime, fmt.Sprintf("ce-time %q is not an RFC 3339 timestamp", ts), nil)
		}
		s.Time = t
	}
	ct, err := binaryContentType(m.Header, attrs[attrDataContentType], set[attrDataContentType])
	if err != nil {
		return bus.Signal{}, err
	}
	s.DataContentType = ct
	if len(m.Data) > 0 {
		s.Data = m.Data[:len(m.Data):len(m.Data)] // an append copies: see bus.Signal
	}
	return s, nil
}

// binaryContentType returns the datacontenttype of a binary-mode message:
// its content-type header (binding §3.1.1). A ce-datacontenttype header,
// which nodes wrote besides content-type before they followed the binding
// to the letter, and which they wrote alone when content-type could not
// carry the value, is accepted when content-type is absent or the two
// agree, so that a cluster upgrades node by node; two values that differ
// are one attribute given twice, an error.
func binaryContentType(h nats.Header, ceValue string, ceSet bool) (string, error) {
	ct, ok := headerValue(h, headerContentType)
	switch {
	case !ceSet:
		return ct, nil
	case !ok:
		return ceValue, nil
	case ct != ceValue:
		return "", invalid(ReasonDuplicateHeader, fmt.Sprintf("ce-datacontenttype %q and content-type %q are given with different values", ceValue, ct), nil)
	}
	return ct, nil
}

// BinaryAttribute returns the value of attribute name (type, or an
// extension such as sbseq) on a binary-mode message, read from its ce-
// header (percent-decoded), or for datacontenttype from content-type, as
// Decode does, without decoding the rest of the message; ok
// is false when the header is missing or its value is not validly
// encoded. A receiver reads what it needs of a message it does not deliver
// this way.
func BinaryAttribute(m *nats.Msg, name string) (value string, ok bool) {
	if m == nil {
		return "", false
	}
	if name == "datacontenttype" {
		if ct, ok := headerValue(m.Header, headerContentType); ok {
			return ct, true
		}
	}
	raw, ok := headerValue(m.Header, headerPrefix+name)
	if !ok {
		return "", false
	}
	v, err := decodeValue(raw)
	return v, err == nil
}

// headerValue returns the value of the header named name in any case,
// trimmed. collect has checked that all its values agree.
func headerValue(h nats.Header, name string) (string, bool) {
	// Writers that follow the binding, this package among them, use the
	// lower-case name: one map lookup finds it, before every key is tried
	// in any case.
	if vs := h[name]; len(vs) > 0 {
		return trimOWS(vs[0]), true
	}
	for k, vs := range h {
		if len(vs) > 0 && asciiEqualFold(k, name) {
			return trimOWS(vs[0]), true
		}
	}
	return "", false
}

// decodeStructuredType decodes a structured-mode body after checking that
// its content type is the JSON event format.
func decodeStructuredType(contentType string, body []byte) (bus.Signal, error) {
	switch mt := mediaType(contentType); {
	case mt == "application/cloudevents+json":
		return decodeStructured(body)
	case mt == ProtobufContentType:
		return decodeProtobuf(body)
	case mt == ProtobufBatchContentType:
		return bus.Signal{}, notCloudEvent(ReasonUnsupportedFormat, fmt.Sprintf("content-type %q: a batch holds many signals: read it with DecodeAll", contentType))
	case strings.HasPrefix(mt, "application/cloudevents-batch"):
		return bus.Signal{}, notCloudEvent(ReasonUnsupportedFormat, fmt.Sprintf("content-type %q: only the protobuf batch format is supported", contentType))
	default:
		return bus.Signal{}, notCloudEvent(ReasonUnsupportedFormat, fmt.Sprintf("content-type %q: only the JSON event format and the protobuf formats are supported", contentType))
	}
}

func decodeStructured(body []byte) (bus.Signal, error) {
	var s bus.Signal
	if err := s.UnmarshalJSON(body); err != nil {
		return bus.Signal{}, invalid(ReasonBadStructured, "structured body", err)
	}
	return s, nil
}

// looksLikeJSONEvent reports whether a body that came without headers is a
// JSON object with a "specversion" member: a structured-mode event as the
// CloudEvents Go SDK's core NATS binding (and a NATS server before 2.2)
// sends it. Anything else without ce- headers is not a CloudEvent.
func looksLikeJSONEvent(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(b, &members) != nil {
		return false
	}
	_, ok := members["specversion"]
	return ok
}

// validateDecoded applies bus.Signal.Validate, but for the data limit, and
// tells which attribute failed for Reason.
func validateDecoded(s bus.Signal) error {
	v := s
	v.Data = nil // the node applies its own data limit
	err := v.Validate()
	if err == nil {
		return nil
	}
	// Only on failure: probe the attributes one by one with the bus's own
	// rules, rather than restate its grammar here.
	if (bus.Signal{Type: s.Type, Source: "x"}).Validate() != nil {
		return invalid(ReasonBadType, "ce-type", err)
	}
	for name := range s.Extensions {
		probe := bus.Signal{Type: "x", Source: "x", Extensions: map[string]any{name: ""}}
		if probe.Validate() != nil {
			return invalid(ReasonBadExtension, "ce-"+name, err)
		}
	}
	return invalid(ReasonInvalidSignal, "signal", err)
}

// isCloudEventsMediaType reports whether a content type announces a
// structured-mode (or batch-mode) CloudEvent: application/cloudevents,
// application/cloudevents+<format>, application/cloudevents-batch+<format>.
func isCloudEventsMediaType(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/cloudevents" ||
		strings.HasPrefix(mt, "application/cloudevents+") ||
		strings.HasPrefix(mt, "application/cloudevents-batch")
}

// mediaType returns the lower-cased media type of a content type, without
// its parameters. Unlike mime.ParseMediaType it never fails: a content
// type whose parameters do not parse still names its media type.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return asciiLower(strings.TrimSpace(ct))
}

func hasCEPrefix(k string) bool {
	return len(k) >= len(headerPrefix) && asciiEqualFold(k[:len(headerPrefix)], headerPrefix)
}

// asciiEqualFold is strings.EqualFold for ASCII letters only: header names
// are ASCII, and Unicode folding would match "traceſtate" (long s).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// asciiLower lower-cases ASCII letters only, allocating only when it must.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lower(b[j])
			}
			return string(b)
		}
	}
	return s
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
