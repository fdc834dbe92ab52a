package wire

import (
	"bytes"
	"fmt"
	"math"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/signalbus/signalbus/bus"
)

// Media types of the CloudEvents protobuf event format (cloudevents/spec,
// cloudevents/formats/protobuf-format.md): one event, and a batch.
const (
	ProtobufContentType      = "application/cloudevents+protobuf"
	ProtobufBatchContentType = "application/cloudevents-batch+protobuf"
)

// Field numbers of cloudevents/formats/cloudevents.proto (io.cloudevents.v1)
// and of the two well-known types it uses.
const (
	fieldBatchEvents = 1 // CloudEventBatch.events

	fieldEventID          = 1 // CloudEvent.id
	fieldEventSource      = 2
	fieldEventSpecVersion = 3
	fieldEventType        = 4
	fieldEventAttributes  = 5 // map<string, CloudEventAttributeValue>
	fieldEventBinaryData  = 6
	fieldEventTextData    = 7
	fieldEventProtoData   = 8 // google.protobuf.Any

	fieldMapKey   = 1
	fieldMapValue = 2

	fieldValueBoolean   = 1
	fieldValueInteger   = 2
	fieldValueString    = 3
	fieldValueBytes     = 4
	fieldValueURI       = 5
	fieldValueURIRef    = 6
	fieldValueTimestamp = 7

	fieldTimestampSeconds = 1
	fieldTimestampNanos   = 2

	fieldAnyTypeURL = 1
	fieldAnyValue   = 2
)

// Attr is a string extension attribute that EncodeBatch adds to one signal:
// what a node stamps on the signals it sends.
type Attr struct{ Name, Value string }

// EncodeBatch returns signals as one NATS message in the CloudEvents
// protobuf batch format (content-type application/cloudevents-batch+protobuf),
// on Subject(prefix, type). The signals must share one type: subscribers
// filter by subject, so a batch carries one type.
//
// stamp, when not nil, gives extra attributes for signal i (appending to dst
// and returning it spares an allocation per signal); they are written after
// the signal's own extensions. EncodeBatch sets no Nats-Msg-Id: the caller
// names the batch.
//
// Attribute types are kept: bool as ce_boolean, the integer types as
// ce_integer, []byte as ce_bytes, time.Time as ce_timestamp, *url.URL as
// ce_uri, strings as ce_string; time is a ce_timestamp and dataschema a
// ce_uri. Data goes in binary_data whatever its content type, as the
// CloudEvents Go SDK writes it (the format asks for text_data for text, but
// that SDK's reader changes JSON given so). EncodeBatch rejects what Encode
// rejects, naming the signal.
func EncodeBatch(signals []bus.Signal, prefix string, stamp func(i int, dst []Attr) []Attr) (*nats.Msg, error) {
	return encodeBatch(nil, signals, prefix, stamp, true)
}

// EncodePublished is EncodeBatch for signals as bus.Publish hands them to
// a bus.Transport: validated and filled already, so not checked against
// the bus's rules again (what the format itself cannot carry is still
// refused).
func EncodePublished(signals []bus.Signal, prefix string, stamp func(i int, dst []Attr) []Attr) (*nats.Msg, error) {
	return encodeBatch(nil, signals, prefix, stamp, false)
}

// EncodePublishedInto is EncodePublished writing into msg, a message it
// made before, rather than a new one: the body goes into msg.Data's array
// when it has room (its contents are overwritten), and msg.Header is kept
// when it still is the batch header this function set (else it gets a new
// one). A caller whose publish copies the message before it returns (core
// NATS does) can so use one message again and again, at one signal per
// message too; it must not change the header. A nil msg is a new one.
func EncodePublishedInto(msg *nats.Msg, signals []bus.Signal, prefix string, stamp func(i int, dst []Attr) []Attr) (*nats.Msg, error) {
	if msg == nil {
		return encodeBatch(nil, signals, prefix, stamp, false)
	}
	return encodeBatchInto(msg, signals, prefix, stamp, false)
}

func encodeBatch(buf []byte, signals []bus.Signal, prefix string, stamp func(i int, dst []Attr) []Attr, check bool) (*nats.Msg, error) {
	return encodeBatchInto(&nats.Msg{Data: buf}, signals, prefix, stamp, check)
}

// encodeBatchInto encodes into msg (see EncodePublishedInto).
func encodeBatchInto(msg *nats.Msg, signals []bus.Signal, prefix string, stamp func(i int, dst []Attr) []Attr, check bool) (*nats.Msg, error) {
	buf := msg.Data
	if len(signals) == 0 {
		return nil, fmt.Errorf("wire: encode batch: %w: no signals", bus.ErrInvalidSignal)
	}
	typ := signals[0].Type
	size := 0
	for _, s := range signals {
		size += 256 + len(s.Data)
	}
	body := buf[:0]
	if cap(body) < size {
		body = make([]byte, 0, size)
	}
	var attrs []Attr
	for i, s := range signals {
		if s.Type != typ {
			return nil, fmt.Errorf("wire: encode batch: signal %d (%q) has type %q, the batch %q: %w",
				i, s.ID, s.Type, typ, bus.ErrInvalidSignal)
		}
		if check {
			if err := checkEncodable(s); err != nil {
				return nil, fmt.Errorf("wire: encode signal %q: %w", s.ID, err)
			}
		}
		if stamp != nil {
			attrs = stamp(i, attrs[:0])
		}
		// The event goes straight into the body, behind room for its
		// length in two bytes (an event of 128 B to 16 KiB), which is
		// fixed up once the length is known.
		body = appendTag(body, fieldBatchEvents, protowire.BytesType)
		at := len(body)
		body = append(body, 0, 0)
		var err error
		if body, err = appendEvent(body, s, attrs); err != nil {
			return nil, fmt.Errorf("wire: encode signal %q: %w", s.ID, err)
		}
		body = putLength(body, at)
		if i == 0 && len(signals) > 1 {
			// The others likely have the first one's attributes: make room
			// for those and their data at once, rather than grow the body
			// step by step.
			attributes := len(body) - len(s.Data)
			need := 0
			for _, next := range signals[1:] {
				need += attributes + attributes/8 + len(next.Data)
			}
			body = slices.Grow(body, need)
		}
	}
	if !isBatchHeader(msg.Header) {
		msg.Header = nats.Header{headerContentType: []string{ProtobufBatchContentType}}
	}
	msg.Subject, msg.Data = Subject(prefix, typ), body
	return msg, nil
}

// isBatchHeader reports whether h is exactly the header encodeBatchInto sets.
func isBatchHeader(h nats.Header) bool {
	v := h[headerContentType]
	return len(h) == 1 && len(v) == 1 && v[0] == ProtobufBatchContentType
}

// putLength writes, at b[at:at+2], the length of what follows those two
// bytes as a varint, moving what follows when the varint needs another
// number of bytes.
func putLength(b []byte, at int) []byte {
	n := uint64(len(b) - at - 2)
	size := protowire.SizeVarint(n)
	switch {
	case size == 1:
		copy(b[at+1:], b[at+2:])
		b = b[:len(b)-1]
	case size > 2:
		b = append(b, make([]byte, size-2)...)
		copy(b[at+size:], b[at+2:])
	}
	protowire.AppendVarint(b[at:at], n) // in place: b has the room
	return b
}

// appendEvent appends s, and the extra attributes, as a CloudEvent message.
func appendEvent(b []byte, s bus.Signal, extra []Attr) ([]byte, error) {
	specVersion := s.SpecVersion
	if specVersion == "" {
		specVersion = bus.SpecVersion
	}
	b = appendStringField(b, fieldEventID, s.ID)
	b = appendStringField(b, fieldEventSource, s.Source)
	b = appendStringField(b, fieldEventSpecVersion, specVersion)
	b = appendStringField(b, fieldEventType, s.Type)
	if s.Subject != "" {
		b = appendAttribute(b, "subject", attrValue{field: fieldValueString, str: s.Subject})
	}
	if !s.Time.IsZero() {
		if y := s.Time.Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("time: %w: %v is outside the years 0-9999 of RFC 3339", bus.ErrInvalidSignal, s.Time)
		}
		b = appendAttribute(b, "time", attrValue{field: fieldValueTimestamp, time: s.Time})
	}
	if s.DataSchema != "" {
		b = appendAttribute(b, "dataschema", attrValue{field: fieldValueURI, str: s.DataSchema})
	}
	if s.DataContentType != "" {
		b = appendAttribute(b, "datacontenttype", attrValue{field: fieldValueString, str: s.DataContentType})
	}
	for name, v := range s.Extensions {
		value, err := protoValue(v)
		if err != nil {
			return nil, fmt.Errorf("extension %q: %w", name, err)
		}
		b = appendAttribute(b, name, value)
	}
	for _, a := range extra {
		b = appendAttribute(b, a.Name, attrValue{field: fieldValueString, str: a.Value})
	}
	if len(s.Data) > 0 {
		// Always binary_data, as the CloudEvents Go SDK writes it: its
		// reader re-encodes text_data of a JSON content type as a JSON
		// string, so text_data would reach it changed.
		b = appendTag(b, fieldEventBinaryData, protowire.BytesType)
		b = appendBytes(b, s.Data)
	}
	return b, nil
}

// attrValue is one CloudEventAttributeValue: the field of its oneof and
// the value it holds.
type attrValue struct {
	field   protowire.Number
	str     string // ce_string, ce_uri, ce_uri_ref
	bytes   []byte
	boolean bool
	integer int32
	time    time.Time
}

// protoValue maps an extension value (one bus.Signal.Validate accepts) to
// its typed attribute value.
func protoValue(v any) (attrValue, error) {
	switch x := v.(type) {
	case string:
		return attrValue{field: fieldValueString, str: x}, nil
	case bool:
		return attrValue{field: fieldValueBoolean, boolean: x}, nil
	case []byte:
		return attrValue{field: fieldValueBytes, bytes: x}, nil
	case time.Time:
		if y := x.Year(); y < 0 || y > 9999 {
			return attrValue{}, fmt.Errorf("%w: %v is outside the years 0-9999 of RFC 3339", bus.ErrInvalidSignal, x)
		}
		return attrValue{field: fieldValueTimestamp, time: x}, nil
	case *url.URL:
		if x == nil {
			return attrValue{}, fmt.Errorf("%w: a nil *url.URL", bus.ErrInvalidSignal)
		}
		return attrValue{field: fieldValueURI, str: x.String()}, nil
	}
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case uint32:
		n = int64(x)
	default:
		return attrValue{}, fmt.Errorf("%w: a value of type %T", bus.ErrInvalidSignal, v)
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return attrValue{}, fmt.Errorf("%w: %d is outside the 32-bit range of a CloudEvents integer", bus.ErrInvalidSignal, n)
	}
	return attrValue{field: fieldValueInteger, integer: int32(n)}, nil
}

func timestampParts(t time.Time) (seconds int64, nanos int32) {
	return t.Unix(), int32(t.Nanosecond())
}

func timestampSize(t time.Time) int {
	seconds, nanos := timestampParts(t)
	n := 0
	if seconds != 0 {
		n += protowire.SizeTag(fieldTimestampSeconds) + protowire.SizeVarint(uint64(seconds))
	}
	if nanos != 0 {
		n += protowire.SizeTag(fieldTimestampNanos) + protowire.SizeVarint(uint64(nanos))
	}
	return n
}

// size is the encoded length of the CloudEventAttributeValue message.
func (v attrValue) size() int {
	n := protowire.SizeTag(v.field)
	switch v.field {
	case fieldValueBoolean:
		return n + 1
	case fieldValueInteger:
		return n + protowire.SizeVarint(uint64(int64(v.integer))) // int32 is sign-extended
	case fieldValueBytes:
		return n + protowire.SizeBytes(len(v.bytes))
	case fieldValueTimestamp:
		return n + protowire.SizeBytes(timestampSize(v.time))
	}
	return n + protowire.SizeBytes(len(v.str))
}

func (v attrValue) appendTo(b []byte) []byte {
	switch v.field {
	case fieldValueBoolean:
		b = appendTag(b, v.field, protowire.VarintType)
		return appendVarint(b, protowire.EncodeBool(v.boolean))
	case fieldValueInteger:
		b = appendTag(b, v.field, protowire.VarintType)
		return appendVarint(b, uint64(int64(v.integer)))
	case fieldValueBytes:
		b = appendTag(b, v.field, protowire.BytesType)
		return appendBytes(b, v.bytes)
	case fieldValueTimestamp:
		b = appendTag(b, v.field, protowire.BytesType)
		b = appendVarint(b, uint64(timestampSize(v.time)))
		seconds, nanos := timestampParts(v.time)
		if seconds != 0 {
			b = appendTag(b, fieldTimestampSeconds, protowire.VarintType)
			b = appendVarint(b, uint64(seconds))
		}
		if nanos != 0 {
			b = appendTag(b, fieldTimestampNanos, protowire.VarintType)
			b = appendVarint(b, uint64(nanos))
		}
		return b
	}
	return appendStringField(b, v.field, v.str)
}

// appendAttribute appends one entry of the attributes map.
func appendAttribute(b []byte, name string, v attrValue) []byte {
	valueSize := v.size()
	entrySize := protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len(name)) +
		protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(valueSize)
	b = appendTag(b, fieldEventAttributes, protowire.BytesType)
	b = appendVarint(b, uint64(entrySize))
	b = appendStringField(b, fieldMapKey, name)
	b = appendTag(b, fieldMapValue, protowire.BytesType)
	b = appendVarint(b, uint64(valueSize))
	return v.appendTo(b)
}

// appendVarint is protowire.AppendVarint with the one-byte case inline:
// nearly every tag, and most lengths, of an event.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// appendTag appends a field's tag, which is one byte for field numbers
// under 16: every field of the format (see the field constants).
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return append(b, byte(num)<<3|byte(typ&7))
}

func appendBytes(b, v []byte) []byte {
	return append(appendVarint(b, uint64(len(v))), v...)
}

func appendString(b []byte, v string) []byte {
	return append(appendVarint(b, uint64(len(v))), v...)
}

func appendStringField(b []byte, field protowire.Number, s string) []byte {
	b = appendTag(b, field, protowire.BytesType)
	return appendString(b, s)
}

// Event is one event of a batch message: the signal, or why it is none,
// and its encoded CloudEvent message, which a node parks on its own when
// it is not a valid signal.
type Event struct {
	Signal bus.Signal
	Err    error // wraps ErrNotCloudEvent, like Decode's errors
	Raw    []byte
}

// IsBatch reports whether a message announces the CloudEvents protobuf
// batch format in its content-type header.
func IsBatch(m *nats.Msg) bool {
	if m == nil {
		return false
	}
	ct, ok := headerValue(m.Header, headerContentType)
	return ok && mediaType(ct) == ProtobufBatchContentType
}

// DecodeAll returns the signals a message carries, in order: each event of
// a protobuf batch (see DecodeBatch), or the one event Decode reads. The
// error is for the message as a whole (not a CloudEvent, not a batch);
// an event of a batch that is not a valid signal has its own Event.Err.
func DecodeAll(m *nats.Msg) ([]Event, error) {
	if IsBatch(m) {
		return DecodeBatch(m.Data)
	}
	s, err := Decode(m)
	if err != nil {
		return nil, err
	}
	return []Event{{Signal: s}}, nil
}

// DecodeBatch reads a body in the CloudEvents protobuf batch format. A body
// that is not a CloudEventBatch message gives an error wrapping
// ErrNotCloudEvent (reason bad_structured); otherwise each event gives its
// signal, which passes bus.Signal.Validate but for the data limit, or an
// error with a reason, as Decode's do. Data is aliased, not copied.
// Unknown fields are skipped, as protobuf readers do. DecodeBatch never
// panics.
func DecodeBatch(body []byte) ([]Event, error) {
	return AppendBatch(nil, body)
}

// AppendBatch is DecodeBatch appending the events to dst, so that a
// receiver decoding message after message reuses one slice. On error it
// returns dst as it was.
func AppendBatch(dst []Event, body []byte) ([]Event, error) {
	var d Decoder
	return d.AppendBatch(dst, body)
}

// AppendBatchUnchecked is AppendBatch without checking the signals
// against bus.Signal.Validate: an Event.Err then says only that the event
// is not a CloudEvent the bus could take at all (malformed, a required
// attribute missing, not UTF-8). It is for a receiver that hands the
// signals to bus.Bus.Dispatch, which validates them anyway, and calls
// Check for the reason of one it refuses.
func AppendBatchUnchecked(dst []Event, body []byte) ([]Event, error) {
	var d Decoder
	return d.AppendBatchUnchecked(dst, body)
}

// Decoder decodes protobuf batch bodies as AppendBatch,
// AppendBatchUnchecked and BatchStamps do, and keeps what repeats from one
// body to the next (attribute names, source, type, content type, the
// sending node's stamps): a receiver decoding message after message makes
// them once rather than once per message, which matters most for batches
// of one. The zero Decoder is ready; it is not safe for concurrent use.
type Decoder struct{ d eventDecoder }

// AppendBatch is the package's AppendBatch.
func (d *Decoder) AppendBatch(dst []Event, body []byte) ([]Event, error) {
	return d.d.appendBatch(dst, body, true)
}

// AppendBatchUnchecked is the package's AppendBatchUnchecked.
func (d *Decoder) AppendBatchUnchecked(dst []Event, body []byte) ([]Event, error) {
	return d.d.appendBatch(dst, body, false)
}

// Check tells why a signal that AppendBatchUnchecked decoded is not one
// AppendBatch would have given: nil, or an error with a reason, as
// AppendBatch's Event.Err.
func Check(s bus.Signal) error {
	return validateDecoded(s)
}

func (d *eventDecoder) appendBatch(dst []Event, body []byte, check bool) ([]Event, error) {
	events := dst
	r := batchReader{fields: fieldReader{b: body}}
	for raw, ok := r.next(); ok; raw, ok = r.next() {
		events = append(events, d.event(raw, check))
	}
	if r.err != nil {
		// Drop the references appended in place, and only those: in dst's
		// own array if it had room for all, else in all of its spare room,
		// which append filled before it moved on to a bigger array.
		if cap(events) == cap(dst) {
			clear(events[len(dst):])
		} else {
			clear(dst[len(dst):cap(dst)])
		}
		return dst, r.err
	}
	return events, nil
}

// batchReader walks the encoded events of a CloudEventBatch body, skipping
// unknown fields.
type batchReader struct {
	fields fieldReader
	err    error // why the walk stopped before the end of the body
}

func (r *batchReader) next() (raw []byte, ok bool) {
	for {
		num, typ, raw, _, ok := r.fields.next()
		if !ok {
			if r.fields.err != nil {
				r.err = invalid(ReasonBadStructured, "protobuf batch", r.fields.err)
			}
			return nil, false
		}
		if num != fieldBatchEvents {
			continue // an unknown field
		}
		if typ != protowire.BytesType {
			r.err = invalid(ReasonBadStructured, fmt.Sprintf("protobuf batch: events has wire type %d, want bytes", typ), nil)
			return nil, false
		}
		return raw, true
	}
}

// event decodes one encoded event of a batch, and checks it against
// bus.Signal.Validate if asked.
func (d *eventDecoder) event(raw []byte, check bool) Event {
	s, err := d.decode(raw)
	if err == nil && check {
		err = validateDecoded(s)
	}
	if err != nil {
		s = bus.Signal{}
	}
	return Event{Signal: s, Err: err, Raw: raw}
}

// MaxStampNames is how many attribute names BatchStamps reads at most.
const MaxStampNames = 4

// Stamps is what BatchStamps reads of one event: its type and the values
// of the attributes asked for, in the order of their names ("" for one
// absent or not a ce_string). OK is false when the event could not be
// read that far (malformed, or without a type).
type Stamps struct {
	Type   string
	Values [MaxStampNames]string
	OK     bool
}

// BatchStamps reads only the type and a few string attributes of the
// first and the last event of a protobuf batch body, and counts the
// events: what a receiver needs to account for a batch it lets go
// undecoded (the stamps of a node's batch are numbered one after the
// other). Nothing else of the events is decoded or checked. With one
// event, first and last are the same; with none, both are zero. The error
// is for the batch as a whole, as DecodeBatch's.
func BatchStamps(body []byte, names ...string) (first, last Stamps, n int, err error) {
	var d Decoder
	return d.BatchStamps(body, names...)
}

// BatchStamps is the package's BatchStamps.
func (d *Decoder) BatchStamps(body []byte, names ...string) (first, last Stamps, n int, err error) {
	if len(names) > MaxStampNames {
		return Stamps{}, Stamps{}, 0, fmt.Errorf("wire: BatchStamps reads at most %d names, not %d", MaxStampNames, len(names))
	}
	var firstRaw, lastRaw []byte
	r := batchReader{fields: fieldReader{b: body}}
	for raw, ok := r.next(); ok; raw, ok = r.next() {
		if n == 0 {
			firstRaw = raw
		}
		lastRaw = raw
		n++
	}
	if r.err != nil {
		return Stamps{}, Stamps{}, 0, r.err
	}
	if n == 0 {
		return Stamps{}, Stamps{}, 0, nil
	}
	first = d.d.stamps(firstRaw, names)
	if n == 1 {
		return first, first, 1, nil
	}
	return first, d.d.stamps(lastRaw, names), n, nil
}

// EventStamps is BatchStamps for one event, as an Event's Raw holds it:
// what a receiver needs to account for an event it parks, which may not
// decode. The values are read even when the type is missing or not valid
// UTF-8 (OK false), unless the event is malformed protobuf.
func (d *Decoder) EventStamps(raw []byte, names ...string) Stamps {
	if len(names) > MaxStampNames {
		return Stamps{}
	}
	return d.d.stamps(raw, names)
}

// stamps reads an event's type and the ce_string values of the attributes
// named.
func (d *eventDecoder) stamps(raw []byte, names []string) Stamps {
	var st Stamps
	hasType := false
	r := fieldReader{b: raw}
	for {
		num, typ, value, _, ok := r.next()
		if !ok {
			break
		}
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case fieldEventType:
			text, valid := d.text(slotType, value)
			st.Type, hasType = text, valid
		case fieldEventAttributes:
			// The last entry of a name wins, as in a protobuf map.
			if i, v := d.stampAttribute(value, names); i >= 0 {
				st.Values[i] = v
			}
		}
	}
	if r.err != nil {
		return Stamps{}
	}
	st.OK = hasType
	return st
}

// stampAttribute reads an attributes map entry: the index in names of its
// name (-1 if none) and its value, "" unless a string (ce_string or
// ce_uri_ref, as a decoded extension) of valid UTF-8.
func (d *eventDecoder) stampAttribute(entry []byte, names []string) (index int, value string) {
	var name, raw []byte
	r := fieldReader{b: entry}
	for {
		num, typ, v, _, more := r.next()
		if !more {
			break
		}
		if typ == protowire.BytesType && num == fieldMapKey {
			name = v
		} else if typ == protowire.BytesType && num == fieldMapValue {
			raw = v
		}
	}
	if r.err != nil {
		return -1, ""
	}
	index = -1
	for i, n := range names {
		if n == string(name) { // no allocation for the comparison
			index = i
			break
		}
	}
	if index < 0 {
		return -1, ""
	}
	// The values of a node's stamps repeat (its name, its run) or are
	// short (a sequence number): share them by the name's place.
	v, err := d.value(raw, slotStamps+index)
	if err != nil || (v.field != fieldValueString && v.field != fieldValueURIRef) {
		return index, ""
	}
	return index, v.str
}

// decodeProtobuf reads a structured-mode body in the protobuf event format.
func decodeProtobuf(body []byte) (bus.Signal, error) {
	var d eventDecoder
	return d.decode(body)
}

// eventDecoder decodes CloudEvent messages. Across the events it decodes
// it shares what repeats rather than allocate it again: the strings of
// attribute names, source, type and content type, and an extension value
// equal to the previous event's (see last).
type eventDecoder struct {
	// slots holds the string last read at each place of an event (source,
	// spec version, type, content type, the name of the i-th attribute):
	// the events of a batch repeat them in the same places, so one
	// comparison finds most. recent holds the last few made, for the
	// others. Both hold only valid UTF-8.
	slots  [slotAttributeNames + 16]string
	recent [16]string
	next   int
	// last holds, per extension name, the raw bytes and the decoded
	// value of the previous event's attribute: a value that repeats
	// across a batch (the sending node's name and instance) is shared,
	// boxed once, instead of allocated for every event. The bytes are
	// copied, so that a decoder kept from message to message does not
	// hold on to old messages.
	last [8]lastValue
}

// Places of an event whose strings eventDecoder shares (see slots).
const (
	slotSource = iota
	slotSpecVersion
	slotType
	slotDataContentType
	slotStamps                                      // the value of BatchStamps' first name; the i-th is at slotStamps+i
	slotAttributeNames = slotStamps + MaxStampNames // the first attribute's name; the i-th is at slotAttributeNames+i
)

type lastValue struct {
	name  string
	raw   [maxSharedValue]byte
	size  int
	value any
}

// maxSharedText bounds the strings eventDecoder keeps to share.
const maxSharedText = 256

// maxSharedValue bounds the encoded size of an extension value that
// eventDecoder shares between events: stamps are short.
const maxSharedValue = 64

// extension decodes an extension value, sharing it with the previous
// event's when the encoded bytes are the same.
func (d *eventDecoder) extension(name string, raw []byte) (any, error) {
	slot := -1
	for i := range d.last {
		if d.last[i].name == name {
			if last := &d.last[i]; bytes.Equal(last.raw[:last.size], raw) {
				return d.last[i].value, nil
			}
			slot = i
			break
		}
		if slot < 0 && d.last[i].name == "" {
			slot = i
		}
	}
	typed, err := d.value(raw, -1)
	if err != nil {
		return nil, err
	}
	v, err := typed.boxed(false)
	if err != nil {
		return nil, err
	}
	switch v.(type) {
	case []byte, *url.URL: // mutable: never shared
	default:
		if slot >= 0 && len(raw) <= maxSharedValue {
			last := &d.last[slot]
			last.name, last.size, last.value = name, copy(last.raw[:], raw), v
		}
	}
	return v, nil
}

// text returns b as a string, shared with an earlier one when the decoder
// made the same before (in place slot, or recently), and false when b is
// not valid UTF-8. A slot beyond the decoder's places only searches the
// recent ones.
func (d *eventDecoder) text(slot int, b []byte) (string, bool) {
	if len(b) > maxSharedText {
		// Not worth keeping, and a decoder kept from message to message
		// must not hold on to big ones.
		return string(b), utf8.Valid(b)
	}
	if slot < len(d.slots) {
		if s := d.slots[slot]; len(s) == len(b) && s == string(b) { // no allocation for the comparison
			return s, true
		}
	}
	s, found := "", false
	for _, r := range d.recent {
		if len(r) == len(b) && r == string(b) {
			s, found = r, true
			break
		}
	}
	if !found {
		if !utf8.Valid(b) {
			return "", false
		}
		s = string(b)
		d.recent[d.next] = s
		d.next = (d.next + 1) % len(d.recent)
	}
	if slot < len(d.slots) {
		d.slots[slot] = s
	}
	return s, true
}

// fieldReader walks the fields of one protobuf message.
type fieldReader struct {
	b   []byte
	err error
}

// next returns the next field; ok is false at the end or on a malformed
// field (r.err then says which). Most fields of a CloudEvent have a
// one-byte tag and a length or value under 128: those take a path short
// enough to inline, the others protowire's general one.
func (r *fieldReader) next() (num protowire.Number, typ protowire.Type, value []byte, varint uint64, ok bool) {
	b := r.b
	if len(b) >= 2 && b[0] < 0x80 && b[0] >= 1<<3 && b[1] < 0x80 {
		switch protowire.Type(b[0] & 7) {
		case protowire.BytesType:
			if end := 2 + int(b[1]); end <= len(b) {
				r.b = b[end:]
				return protowire.Number(b[0] >> 3), protowire.BytesType, b[2:end:end], 0, true
			}
		case protowire.VarintType:
			r.b = b[2:]
			return protowire.Number(b[0] >> 3), protowire.VarintType, nil, uint64(b[1]), true
		}
	}
	return r.general()
}

func (r *fieldReader) general() (num protowire.Number, typ protowire.Type, value []byte, varint uint64, ok bool) {
	if len(r.b) == 0 || r.err != nil {
		return 0, 0, nil, 0, false
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		r.err = fmt.Errorf("malformed field tag: %w", protowire.ParseError(n))
		r.b = nil
		return 0, 0, nil, 0, false
	}
	r.b = r.b[n:]
	switch typ {
	case protowire.BytesType:
		value, n = protowire.ConsumeBytes(r.b)
		// Capped, as next's fast path caps it: a value may become a
		// signal's Data, and an append to it must not write over what
		// follows in the body (other events, other handlers' data).
		value = value[:len(value):len(value)]
	case protowire.VarintType:
		varint, n = protowire.ConsumeVarint(r.b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, r.b)
	}
	if n < 0 {
		r.err = fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		r.b = nil
		return 0, 0, nil, 0, false
	}
	r.b = r.b[n:]
	return num, typ, value, varint, true
}

// wantType checks a known field's wire type.
func wantType(what string, got, want protowire.Type) error {
	if got != want {
		return fmt.Errorf("%s has wire type %d, want %d", what, got, want)
	}
	return nil
}

func (d *eventDecoder) decode(b []byte) (bus.Signal, error) {
	var (
		s                         bus.Signal
		hasSpecVersion, hasData   bool
		anyTypeURL                string
		idSet, sourceSet, typeSet bool
		attributes                int
	)
	r := fieldReader{b: b}
	for {
		num, typ, value, _, ok := r.next()
		if !ok {
			break
		}
		switch num {
		case fieldEventID, fieldEventSource, fieldEventSpecVersion, fieldEventType:
			what := [...]string{"", "id", "source", "specversion", "type"}[num]
			if err := wantType(what, typ, protowire.BytesType); err != nil {
				return bus.Signal{}, invalid(ReasonBadStructured, "protobuf event", err)
			}
			var text string
			valid := true
			if num == fieldEventID {
				// Unique to the event: not worth looking up.
				text, valid = string(value), utf8.Valid(value)
			} else {
				text, valid = d.text([...]int{0, 0, slotSource, slotSpecVersion, slotType}[num], value)
			}
			if !valid {
				return bus.Signal{}, invalid(ReasonBadEncoding, "protobuf event: "+what+" is not valid UTF-8", nil)
			}
			switch num {
			case fieldEventID:
				s.ID, idSet = text, true
			case fieldEventSource:
				s.Source, sourceSet = text, true
			case fieldEventSpecVersion:
				s.SpecVersion, hasSpecVersion = text, true
			default:
				s.Type, typeSet = text, true
			}
		case fieldEventAttributes:
			if err := wantType("an attribute", typ, protowire.BytesType); err != nil {
				return bus.Signal{}, invalid(ReasonBadStructured, "protobuf event", err)
			}
			if err := d.attribute(&s, value, slotAttributeNames+attributes); err != nil {
				return bus.Signal{}, err
			}
			attributes++
		case fieldEventBinaryData, fieldEventTextData:
			if err := wantType("data", typ, protowire.BytesType); err != nil {
				return bus.Signal{}, invalid(ReasonBadStructured, "protobuf event", err)
			}
			if num == fieldEventTextData && !utf8.Valid(value) {
				return bus.Signal{}, invalid(ReasonBadEncoding, "protobuf event: text_data is not valid UTF-8", nil)
			}
			s.Data, hasData = value, true
		case fieldEventProtoData:
			if err := wantType("proto_data", typ, protowire.BytesType); err != nil {
				return bus.Signal{}, invalid(ReasonBadStructured, "protobuf event", err)
			}
			url, data, err := decodeAny(value)
			if err != nil {
				return bus.Signal{}, invalid(ReasonBadStructured, "protobuf event: proto_data", err)
			}
			anyTypeURL, s.Data, hasData = url, data, true
		}
	}
	if r.err != nil {
		return bus.Signal{}, invalid(ReasonBadStructured, "protobuf event", r.err)
	}
	if !hasSpecVersion {
		return bus.Signal{}, invalid(ReasonMissingSpecVersion, "protobuf event: spec_version is missing", nil)
	}
	if s.SpecVersion != bus.SpecVersion {
		return bus.Signal{}, invalid(ReasonBadSpecVersion, fmt.Sprintf("protobuf event: spec_version is %q, want %q", s.SpecVersion, bus.SpecVersion), nil)
	}
	for _, r := range [...]struct {
		value, name, reason string
		set                 bool
	}{{s.ID, "id", ReasonMissingID, idSet}, {s.Source, "source", ReasonMissingSource, sourceSet}, {s.Type, "type", ReasonMissingType, typeSet}} {
		if r.value == "" {
			problem := "is missing"
			if r.set {
				problem = "is empty"
			}
			return bus.Signal{}, invalid(r.reason, "protobuf event: "+r.name+" "+problem, nil)
		}
	}
	if anyTypeURL != "" {
		// The format: a protobuf payload's content type may be
		// application/protobuf, and its schema is its type URL.
		if s.DataContentType == "" {
			s.DataContentType = "application/protobuf"
		}
		if s.DataSchema == "" {
			s.DataSchema = anyTypeURL
		}
	}
	if hasData && len(s.Data) == 0 {
		s.Data = nil
	}
	return s, nil
}

// attribute reads one entry of the attributes map into s.
// The attribute's name goes to the decoder's place nameSlot.
func (d *eventDecoder) attribute(s *bus.Signal, entry []byte, nameSlot int) error {
	var (
		name     string
		hasName  bool
		rawValue []byte
		hasValue bool
	)
	r := fieldReader{b: entry}
	for {
		num, typ, value, _, ok := r.next()
		if !ok {
			break
		}
		switch num {
		case fieldMapKey:
			if err := wantType("an attribute name", typ, protowire.BytesType); err != nil {
				return invalid(ReasonBadStructured, "protobuf event", err)
			}
			text, valid := d.text(nameSlot, value)
			if !valid {
				return invalid(ReasonBadEncoding, "protobuf event: an attribute name is not valid UTF-8", nil)
			}
			name, hasName = text, true
		case fieldMapValue:
			if err := wantType("an attribute value", typ, protowire.BytesType); err != nil {
				return invalid(ReasonBadStructured, "protobuf event", err)
			}
			rawValue, hasValue = value, true
		}
	}
	if r.err != nil {
		return invalid(ReasonBadStructured, "protobuf event: attribute", r.err)
	}
	if !hasName {
		return invalid(ReasonBadStructured, "protobuf event: an attribute has no name", nil)
	}
	if !hasValue {
		return invalid(ReasonBadStructured, fmt.Sprintf("protobuf event: attribute %q has no value", name), nil)
	}
	switch name {
	case "id", "source", "specversion", "type":
		return invalid(ReasonDuplicateHeader, fmt.Sprintf("protobuf event: %q is a field of its own, not an attribute", name), nil)
	case "subject", "datacontenttype", "dataschema", "time":
	default:
		v, err := d.extension(name, rawValue)
		if err != nil {
			return invalid(ReasonBadStructured, fmt.Sprintf("protobuf event: attribute %q", name), err)
		}
		if s.Extensions == nil {
			s.Extensions = make(map[string]any, 4)
		}
		s.Extensions[name] = v
		return nil
	}
	// A context attribute: read into its field, never boxed.
	slot := -1
	if name == "datacontenttype" {
		slot = slotDataContentType
	}
	v, err := d.value(rawValue, slot)
	if err != nil {
		return invalid(ReasonBadStructured, fmt.Sprintf("protobuf event: attribute %q", name), err)
	}
	if name == "time" {
		switch v.field {
		case fieldValueTimestamp:
			s.Time = v.time
		case fieldValueString, fieldValueURIRef:
			parsed, err := time.Parse(time.RFC3339Nano, v.str)
			if err != nil {
				return invalid(ReasonBadTime, fmt.Sprintf("protobuf event: time %q is not an RFC 3339 timestamp", v.str), nil)
			}
			s.Time = parsed
		default:
			return invalid(ReasonBadTime, fmt.Sprintf("protobuf event: time is a %s, want a timestamp", v.kind()), nil)
		}
		return nil
	}
	// The format's dataschema is a URI; any string kind will do for the
	// others.
	switch {
	case v.field == fieldValueString, v.field == fieldValueURIRef, v.field == fieldValueURI && name == "dataschema":
	case v.field == fieldValueURI:
		if _, err := url.Parse(v.str); err != nil {
			return invalid(ReasonBadStructured, fmt.Sprintf("protobuf event: attribute %q", name), fmt.Errorf("ce_uri: %w", err))
		}
		fallthrough
	default:
		return invalid(ReasonBadStructured, fmt.Sprintf("protobuf event: attribute %q is a %s, want a string", name, v.kind()), nil)
	}
	switch name {
	case "subject":
		s.Subject = v.str
	case "datacontenttype":
		s.DataContentType = v.str
	default:
		s.DataSchema = v.str
	}
	return nil
}

// value reads a CloudEventAttributeValue; the last member of the oneof
// present wins, as protobuf readers do. A string value is shared through
// the decoder's place slot (see text); a negative slot shares nothing.
func (d *eventDecoder) value(b []byte, slot int) (attrValue, error) {
	var v attrValue
	r := fieldReader{b: b}
	for {
		num, typ, value, varint, ok := r.next()
		if !ok {
			break
		}
		var err error
		switch num {
		case fieldValueBoolean:
			if err = wantType("ce_boolean", typ, protowire.VarintType); err == nil {
				v = attrValue{field: num, boolean: protowire.DecodeBool(varint)}
			}
		case fieldValueInteger:
			if err = wantType("ce_integer", typ, protowire.VarintType); err == nil {
				v = attrValue{field: num, integer: int32(varint)} // proto int32: the low 32 bits of a sign-extended varint
			}
		case fieldValueString, fieldValueURIRef, fieldValueURI:
			what := "a string value"
			if num == fieldValueURI {
				what = "ce_uri"
			}
			if err = wantType(what, typ, protowire.BytesType); err == nil {
				v = attrValue{field: num}
				valid := true
				if slot >= 0 {
					v.str, valid = d.text(slot, value)
				} else {
					v.str, valid = string(value), utf8.Valid(value)
				}
				if !valid {
					return attrValue{}, fmt.Errorf("%s is not valid UTF-8", what)
				}
			}
		case fieldValueBytes:
			if err = wantType("ce_bytes", typ, protowire.BytesType); err == nil {
				v = attrValue{field: num, bytes: value}
			}
		case fieldValueTimestamp:
			if err = wantType("ce_timestamp", typ, protowire.BytesType); err == nil {
				v = attrValue{field: num}
				v.time, err = decodeTimestamp(value)
			}
		default:
			continue // an unknown member of the oneof
		}
		if err != nil {
			return attrValue{}, err
		}
	}
	if r.err != nil {
		return attrValue{}, r.err
	}
	if v.field == 0 {
		return attrValue{}, fmt.Errorf("the value is empty")
	}
	return v, nil
}

// boxed is the value as a bus.Signal extension holds it: bool, int32,
// string (ce_string, ce_uri_ref), []byte, *url.URL (ce_uri; its text as is
// when uriText) or time.Time (UTC).
func (v attrValue) boxed(uriText bool) (any, error) {
	switch v.field {
	case fieldValueBoolean:
		return v.boolean, nil
	case fieldValueInteger:
		return v.integer, nil
	case fieldValueBytes:
		return v.bytes, nil
	case fieldValueTimestamp:
		return v.time, nil
	case fieldValueURI:
		if uriText {
			return v.str, nil
		}
		u, err := url.Parse(v.str)
		if err != nil {
			return nil, fmt.Errorf("ce_uri: %w", err)
		}
		return u, nil
	}
	return v.str, nil
}

// kind names the member of the oneof v holds, for errors.
func (v attrValue) kind() string {
	switch v.field {
	case fieldValueBoolean:
		return "ce_boolean"
	case fieldValueInteger:
		return "ce_integer"
	case fieldValueString:
		return "ce_string"
	case fieldValueBytes:
		return "ce_bytes"
	case fieldValueURI:
		return "ce_uri"
	case fieldValueURIRef:
		return "ce_uri_ref"
	case fieldValueTimestamp:
		return "ce_timestamp"
	}
	return fmt.Sprintf("field %d", v.field)
}

// decodeTimestamp reads a google.protobuf.Timestamp, refusing what the
// type's own rules refuse (nanos outside 0–999 999 999, years outside
// 1–9999).
func decodeTimestamp(b []byte) (time.Time, error) {
	var seconds, nanos int64
	r := fieldReader{b: b}
	for {
		num, typ, _, varint, ok := r.next()
		if !ok {
			break
		}
		switch num {
		case fieldTimestampSeconds, fieldTimestampNanos:
			if err := wantType("a timestamp field", typ, protowire.VarintType); err != nil {
				return time.Time{}, err
			}
			if num == fieldTimestampSeconds {
				seconds = int64(varint)
			} else {
				nanos = int64(int32(varint))
			}
		}
	}
	if r.err != nil {
		return time.Time{}, r.err
	}
	const minSeconds, maxSeconds = -62135596800, 253402300799 // 0001-01-01, 9999-12-31T23:59:59
	if nanos < 0 || nanos > 999_999_999 || seconds < minSeconds || seconds > maxSeconds {
		return time.Time{}, fmt.Errorf("timestamp %d s %d ns is out of range", seconds, nanos)
	}
	return time.Unix(seconds, nanos).UTC(), nil
}

// decodeAny reads a google.protobuf.Any: its type URL and value.
func decodeAny(b []byte) (typeURL string, value []byte, err error) {
	r := fieldReader{b: b}
	for {
		num, typ, v, _, ok := r.next()
		if !ok {
			break
		}
		switch num {
		case fieldAnyTypeURL:
			if err := wantType("type_url", typ, protowire.BytesType); err != nil {
				return "", nil, err
			}
			if !utf8.Valid(v) {
				return "", nil, fmt.Errorf("type_url is not valid UTF-8")
			}
			typeURL = string(v)
		case fieldAnyValue:
			if err := wantType("value", typ, protowire.BytesType); err != nil {
				return "", nil, err
			}
			value = v
		}
	}
	return typeURL, value, r.err
}
