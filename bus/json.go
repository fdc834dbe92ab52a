package bus

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MarshalJSON encodes s in the CloudEvents structured JSON format: the
// context attributes and extensions as top-level members, the data inline
// under "data" when the content type is JSON (or absent) and the bytes are
// valid JSON that UnmarshalJSON gives back unchanged, and base64-encoded
// under "data_base64" otherwise. Extension values are written as
// CloudEvents' canonical JSON types: []byte as base64 strings, times as
// RFC 3339 strings, URIs as strings. A Time outside the years 0–9999, which
// RFC 3339 cannot express, is an error.
func (s Signal) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(256 + len(s.Data)*4/3)
	buf.WriteByte('{')
	first := true
	str := func(name, value string) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		writeJSONString(&buf, name)
		buf.WriteByte(':')
		writeJSONString(&buf, value)
	}
	specVersion := s.SpecVersion
	if specVersion == "" {
		specVersion = SpecVersion
	}
	str("specversion", specVersion)
	str("id", s.ID)
	str("source", s.Source)
	str("type", s.Type)
	if s.Subject != "" {
		str("subject", s.Subject)
	}
	if !s.Time.IsZero() {
		t, err := formatRFC3339("time", s.Time)
		if err != nil {
			return nil, err
		}
		str("time", t)
	}
	if s.DataContentType != "" {
		str("datacontenttype", s.DataContentType)
	}
	if s.DataSchema != "" {
		str("dataschema", s.DataSchema)
	}
	names := make([]string, 0, len(s.Extensions))
	for name := range s.Extensions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := checkExtensionName(name); err != nil {
			return nil, err
		}
		buf.WriteByte(',')
		writeJSONString(&buf, name)
		buf.WriteByte(':')
		switch v := s.Extensions[name].(type) {
		case string:
			writeJSONString(&buf, v)
		case bool:
			buf.WriteString(strconv.FormatBool(v))
		case int:
			buf.WriteString(strconv.FormatInt(int64(v), 10))
		case int8:
			buf.WriteString(strconv.FormatInt(int64(v), 10))
		case int16:
			buf.WriteString(strconv.FormatInt(int64(v), 10))
		case int32:
			buf.WriteString(strconv.FormatInt(int64(v), 10))
		case int64:
			buf.WriteString(strconv.FormatInt(v, 10))
		case uint8:
			buf.WriteString(strconv.FormatUint(uint64(v), 10))
		case uint16:
			buf.WriteString(strconv.FormatUint(uint64(v), 10))
		case uint32:
			buf.WriteString(strconv.FormatUint(uint64(v), 10))
		case []byte:
			writeJSONString(&buf, base64.StdEncoding.EncodeToString(v))
		case time.Time:
			t, err := formatRFC3339(fmt.Sprintf("extension %q", name), v)
			if err != nil {
				return nil, err
			}
			writeJSONString(&buf, t)
		case *url.URL:
			if v == nil {
				return nil, checkExtensionValue(name, v)
			}
			writeJSONString(&buf, v.String())
		default:
			return nil, checkExtensionValue(name, v)
		}
	}
	if s.Data != nil {
		if isJSONContentType(s.DataContentType) && inlineJSON(s.Data) {
			buf.WriteString(`,"data":`)
			buf.Write(s.Data)
		} else {
			buf.WriteString(`,"data_base64":"`)
			buf.WriteString(base64.StdEncoding.EncodeToString(s.Data))
			buf.WriteByte('"')
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// maxInlineDepth is the deepest nesting of arrays and objects inline data
// may have: encoding/json refuses documents nested deeper than 10000
// levels, and the event object is one level.
const maxInlineDepth = 10000 - 1

// inlineJSON reports whether data can be written inline under "data" and
// read back as the same bytes: valid JSON, with no whitespace around it (a
// decoder drops it), and not nested too deep for the decoder inside the
// event object. Other data goes under "data_base64", which keeps any bytes.
func inlineJSON(data []byte) bool {
	if len(data) == 0 || isJSONSpace(data[0]) || isJSONSpace(data[len(data)-1]) || !json.Valid(data) {
		return false
	}
	depth := 0
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			if depth > maxInlineDepth {
				return false
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return true
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// formatRFC3339 writes t as an RFC 3339 timestamp that time.Parse reads
// back as the same instant, or names field in an error if none can.
func formatRFC3339(field string, t time.Time) (string, error) {
	if _, offset := t.Zone(); offset%60 != 0 {
		// RFC 3339 offsets are whole minutes; a zone such as Amsterdam's
		// before 1937 (+00:19:32) would lose its seconds and shift the
		// instant, so write such times in UTC.
		t = t.UTC()
	}
	if y := t.Year(); y < 0 || y > 9999 {
		// Format would write a year time.Parse cannot read back.
		return "", fieldError(field, fmt.Sprintf("%v is outside the years 0-9999 of RFC 3339", t))
	}
	return t.Format(time.RFC3339Nano), nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

// isJSONContentType reports whether data of this content type is JSON. An
// absent content type means JSON in the CloudEvents JSON format.
func isJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// UnmarshalJSON decodes a CloudEvents structured JSON event. It enforces the
// CloudEvents rules (specversion "1.0", id, source and type present and
// strings, valid extension names, scalar extension values) and reports the
// first violation with the attribute's name, wrapping ErrInvalidSignal. It
// does not apply the bus's own type grammar or data limit: Publish does.
// Extension numbers decode as int64, other extension values as strings or
// bools, as the JSON format cannot tell the richer CloudEvents types apart.
// An attribute whose value is null is unset (JSON format §2.2); a null
// "data" under a JSON content type is an explicit null payload, kept as the
// bytes "null" (§3.1.1).
func (s *Signal) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("%w: not a JSON object: %w", ErrInvalidSignal, err)
	}
	if raw == nil {
		return fmt.Errorf("%w: not a JSON object: null", ErrInvalidSignal)
	}
	// Decode stops after the first value; anything but whitespace after it
	// is not one event (json.Unmarshal rejects it too).
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON object", ErrInvalidSignal)
	}
	var out Signal
	getString := func(name string, required bool) (string, error) {
		v, ok := raw[name]
		if !ok || isJSONNull(v) {
			if required {
				return "", fieldError(name, "is missing")
			}
			return "", nil
		}
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return "", fieldError(name, "is not a string")
		}
		if required && str == "" {
			return "", fieldError(name, "is empty")
		}
		return str, nil
	}
	var err error
	if out.SpecVersion, err = getString("specversion", true); err != nil {
		return err
	}
	if out.SpecVersion != SpecVersion {
		return fieldError("specversion", fmt.Sprintf("is %q, want %q", out.SpecVersion, SpecVersion))
	}
	if out.ID, err = getString("id", true); err != nil {
		return err
	}
	if out.Source, err = getString("source", true); err != nil {
		return err
	}
	if out.Type, err = getString("type", true); err != nil {
		return err
	}
	if out.Subject, err = getString("subject", false); err != nil {
		return err
	}
	if out.DataContentType, err = getString("datacontenttype", false); err != nil {
		return err
	}
	if out.DataSchema, err = getString("dataschema", false); err != nil {
		return err
	}
	ts, err := getString("time", false)
	if err != nil {
		return err
	}
	if ts != "" {
		if out.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return fieldError("time", fmt.Sprintf("%q is not an RFC 3339 timestamp", ts))
		}
	}
	data, hasData := raw["data"]
	data64, hasData64 := raw["data_base64"]
	hasData64 = hasData64 && !isJSONNull(data64)
	switch {
	case hasData && hasData64:
		return fieldError("data", "and data_base64 are both present")
	case hasData64:
		var enc string
		if err := json.Unmarshal(data64, &enc); err != nil {
			return fieldError("data_base64", "is not a string")
		}
		if out.Data, err = base64.StdEncoding.DecodeString(enc); err != nil {
			return fieldError("data_base64", "is not valid base64")
		}
	case hasData:
		if isJSONContentType(out.DataContentType) {
			out.Data = append([]byte(nil), data...)
		} else if !isJSONNull(data) {
			// Non-JSON data carried inline must be a JSON string
			// (CloudEvents JSON format §3.1).
			var str string
			if err := json.Unmarshal(data, &str); err != nil {
				return fieldError("data", fmt.Sprintf("is not a string though datacontenttype is %q", out.DataContentType))
			}
			out.Data = []byte(str)
		}
	}
	for name, v := range raw {
		if isReservedAttribute(name) {
			continue
		}
		if err := checkExtensionName(name); err != nil {
			return err
		}
		if isJSONNull(v) {
			continue // unset
		}
		var val any
		if err := json.Unmarshal(v, &val); err != nil {
			return fieldError(fmt.Sprintf("extension %q", name), "is not valid JSON")
		}
		switch x := val.(type) {
		case string, bool:
			// kept as decoded
		case float64:
			// json.Unmarshal into any gives float64; re-read as an integer.
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return fieldError(fmt.Sprintf("extension %q", name), fmt.Sprintf("is %s; CloudEvents integers are whole numbers", v))
			}
			val = n
		default:
			return fieldError(fmt.Sprintf("extension %q", name), fmt.Sprintf("is a JSON %T; extensions are scalars", x))
		}
		if out.Extensions == nil {
			out.Extensions = make(map[string]any)
		}
		out.Extensions[name] = val
	}
	*s = out
	return nil
}

// isJSONNull reports whether v, a value as json.RawMessage holds it
// (without surrounding whitespace), is null.
func isJSONNull(v json.RawMessage) bool { return string(v) == "null" }
