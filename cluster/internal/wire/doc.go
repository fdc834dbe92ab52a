// Package wire is the cluster's wire codec: it converts between bus.Signal
// and *nats.Msg following the CloudEvents NATS protocol binding (and, for
// batches, the CloudEvents protobuf format)
// (cloudevents/spec, cloudevents/bindings/nats-protocol-binding.md, 1.0.3),
// so that a plain NATS client, the CloudEvents SDKs and the bus read each
// other's messages.
//
//	msg, err := wire.Encode(sig, wire.DefaultPrefix) // binary mode, on "signals.<type>"
//	...
//	sig, err := wire.Decode(msg) // binary or structured mode
//	if err != nil {
//		deadLetter(msg, wire.Reason(err)) // err wraps wire.ErrNotCloudEvent
//	}
//
// # Mapping
//
// Encode writes the binary content mode: every attribute in a header of its
// own, the data as the body.
//
//	attribute         header                               value
//	---------         ------                               -----
//	(type)            subject "<prefix>.<type>"            see Subject
//	specversion       ce-specversion                       "1.0"
//	id                ce-id, and Nats-Msg-Id               percent-encoded (JetStream dedups on Nats-Msg-Id)
//	source            ce-source                            percent-encoded
//	type              ce-type                              as is (the type grammar needs no encoding)
//	subject           ce-subject, if set                   percent-encoded
//	time              ce-time, if set                      RFC 3339 with nanoseconds
//	dataschema        ce-dataschema, if set                percent-encoded
//	datacontenttype   content-type, if set                 as is (a media type: printable ASCII; never
//	                                                       application/cloudevents…, which would announce
//	                                                       structured mode); no ce-datacontenttype
//	<extension>       ce-<extension>                       canonical string, percent-encoded
//	traceparent       traceparent (W3C, per hop)           as is (when plain ASCII), and ce-traceparent
//	tracestate        tracestate (W3C, per hop)            as is (when plain ASCII), and ce-tracestate
//	data              body                                 the bytes, no header
//
// Extension values are written as the CloudEvents canonical string of their
// type: bool "true"/"false", integers in decimal, []byte in base64, times
// in RFC 3339, *url.URL by its String. The binary mode carries no types, so
// Decode returns every extension as a string.
//
// Percent-encoding follows the binding (§3.1.3.2): the UTF-8 bytes of every
// character outside U+0021–U+007E, and of space, '"' and '%', become %XX in
// upper-case hex. Decode trims the whitespace around a value, removes the
// double quotes of a value sent as an RFC 7230 quoted-string, then decodes
// one round of %XX in either case and rejects a malformed escape or a
// result that is not UTF-8.
//
// The binding maps datacontenttype to the content-type header alone
// (§3.1.1), as the HTTP binding does, and the CloudEvents SDKs read a
// ce-datacontenttype header as an extension of a reserved name and refuse
// the event; so Encode writes content-type only, and refuses a
// datacontenttype that a content-type cannot carry (not printable ASCII,
// spaces around it, or a CloudEvents format) rather than send it some other
// way. Decode reads content-type as the datacontenttype. Nodes used to write
// ce-datacontenttype too (alone, when content-type could not carry the
// value): Decode accepts it when content-type is absent or agrees with it,
// so a cluster upgrades node by node, and refuses a message on which the two
// differ (reason duplicate_header).
//
// Decode also reads the structured content mode: a content-type of
// application/cloudevents+json (any parameters, any case) with the JSON
// event as the body; and, because the CloudEvents Go SDK's core NATS binding
// sends structured events with no headers at all, a message with no ce-
// header and no content-type whose body is a JSON object with a
// "specversion" member; and one event in the protobuf format
// (application/cloudevents+protobuf). Other event formats are refused, and
// so is a batch, which holds many signals: DecodeAll reads every kind of
// message, a batch included.
//
// # Batches
//
// EncodeBatch writes signals of one type as one message in the CloudEvents
// protobuf batch format (application/cloudevents-batch+protobuf,
// cloudevents/spec formats/protobuf-format.md and cloudevents.proto):
// a CloudEventBatch whose events carry id, source, spec_version and type as
// fields and every other attribute in the typed attributes map (time as a
// Timestamp, dataschema as a URI, extensions with their own types), with
// the data as binary_data. The node writes its stamps (sbnode, sbseq, …) as
// string attributes. DecodeBatch and DecodeAll read such a batch, event by
// event: an event that is not a valid signal gets its own error and its
// encoded bytes, so the node parks it alone. A protobuf round trip keeps
// attribute types (integers come back as int32, times in UTC).
//
// Each signal is validated once on each side: EncodePublished writes
// signals as bus.Publish hands them to a transport, already validated, and
// AppendBatchUnchecked leaves validation to bus.Bus.Dispatch, with Check
// for the reason of a signal Dispatch refuses. A Decoder kept by a
// receiver shares what repeats from one message to the next (attribute
// names, source, type, the sending node's stamps) instead of allocating it
// per message.
//
// # Why the keys are lower-case
//
// nats.Header is a plain map compared byte for byte: Header.Get("ce-id")
// does not find "Ce-Id". NATS (ADR-4) calls header names case-insensitive,
// but readers in practice look them up exactly: the CloudEvents Go SDK's
// JetStream binding gets "ce-specversion", "content-type" and "ce-…" as
// written in the binding spec, and W3C trace context names its headers
// "traceparent" and "tracestate". So Encode writes every key in lower case
// by direct map assignment (never through an http.Header-style
// canonicalisation, which would give "Ce-Id"), except Nats-Msg-Id, which
// the NATS server looks up in that exact case. Decode, in turn, matches
// every name in any case, since other clients may send "Ce-Id" or
// "CE-TYPE"; TraceCarrier does the same for trace context.
//
// # Trace context
//
// The bus writes a publish's trace context into the signal as the
// traceparent and tracestate extensions; on the wire they travel as the
// plain W3C headers, which tracing-aware NATS clients read, and as the
// ce-traceparent and ce-tracestate headers the binding requires (§3.1.2),
// which the CloudEvents SDKs read. On receipt a plain
// traceparent or tracestate header becomes the extension and wins over a
// ce-traceparent or ce-tracestate header (or JSON member) the sender may also
// have set: the plain header describes the hop that delivered the message,
// which is what the bus links its process span to. TraceCarrier lets the
// node inject and extract trace context in those headers directly.
//
// # Errors
//
// Every Decode error wraps ErrNotCloudEvent, says what is wrong (naming the
// header), and wraps bus.ErrInvalidSignal when the message is a CloudEvent
// but a malformed one. Reason maps an error to a short, bounded reason
// ("missing_id", "bad_time", "not_cloudevent", …) for the dead-letter
// subject and metrics. Decode never panics, whatever the message. It does
// not apply the bus's data limit (the node does, with its configured
// limit), and it does not check that the subject matches the type.
package wire
