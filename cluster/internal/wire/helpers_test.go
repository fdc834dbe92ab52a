package wire_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// parseHeaderBlock reads "key: value" lines, one header each, as a plain
// client would put them on the wire; the same key on two lines gives two
// values. Lines without a colon are skipped. One space after the colon is
// dropped; the rest of the value is kept as is, so tests and the fuzzer can
// give Decode untrimmed values. An empty block gives a nil header.
func parseHeaderBlock(block string) nats.Header {
	var h nats.Header
	for _, line := range strings.Split(block, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if h == nil {
			h = nats.Header{}
		}
		h[k] = append(h[k], strings.TrimPrefix(v, " "))
	}
	return h
}

// canonical is the test's own rendering of an extension value as a
// CloudEvents canonical string, the oracle for what a binary-mode round trip
// gives back.
func canonical(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case *url.URL:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	default: // the integers
		return fmt.Sprint(x)
	}
}

// normalized returns s with its extensions as canonical strings and empty
// data as nil: what a binary-mode message can carry.
func normalized(s bus.Signal) bus.Signal {
	if s.Extensions != nil {
		ext := make(map[string]any, len(s.Extensions))
		for k, v := range s.Extensions {
			ext[k] = canonical(v)
		}
		s.Extensions = ext
	}
	if len(s.Data) == 0 {
		s.Data = nil
	}
	if s.SpecVersion == "" {
		s.SpecVersion = bus.SpecVersion
	}
	return s
}

// diffSignals describes how got differs from want, field by field, or
// returns "" when they are equal (Time compared with Equal, Data by bytes,
// Extensions with reflect.DeepEqual).
func diffSignals(want, got bus.Signal) string {
	var d []string
	str := func(name, w, g string) {
		if w != g {
			d = append(d, fmt.Sprintf("%s: got %q, want %q", name, g, w))
		}
	}
	str("ID", want.ID, got.ID)
	str("Source", want.Source, got.Source)
	str("Type", want.Type, got.Type)
	str("SpecVersion", want.SpecVersion, got.SpecVersion)
	str("Subject", want.Subject, got.Subject)
	str("DataContentType", want.DataContentType, got.DataContentType)
	str("DataSchema", want.DataSchema, got.DataSchema)
	if !want.Time.Equal(got.Time) {
		d = append(d, fmt.Sprintf("Time: got %v, want %v", got.Time, want.Time))
	}
	if !bytes.Equal(want.Data, got.Data) {
		d = append(d, fmt.Sprintf("Data: got %q, want %q", got.Data, want.Data))
	}
	if !reflect.DeepEqual(want.Extensions, got.Extensions) {
		d = append(d, fmt.Sprintf("Extensions: got %#v, want %#v", got.Extensions, want.Extensions))
	}
	return strings.Join(d, "\n")
}

// rawMsg is a message as another client would send it: a header block in
// parseHeaderBlock's form and a body.
type rawMsg struct {
	name    string
	headers string
	body    string
}

func (r rawMsg) msg() *nats.Msg {
	return &nats.Msg{Subject: "signals.x", Header: parseHeaderBlock(r.headers), Data: []byte(r.body)}
}

// The structured-mode example of the CloudEvents JSON event format
// (cloudevents/formats/json-format.md, "Examples").
const specJSONExample = `{
    "specversion" : "1.0",
    "type" : "com.github.pull_request.opened",
    "source" : "https://github.com/cloudevents/spec/pull",
    "subject" : "123",
    "id" : "A234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "text/xml",
    "data" : "<much wow=\"xml\"/>"
}`

// sdkJSON is a structured event as the CloudEvents Go SDK's format.JSON
// writes it (event.MarshalJSON: specversion, id, source, type, then the
// optional attributes, data and the extensions).
const sdkJSON = `{"specversion":"1.0","id":"sdk-1","source":"/sdk/sender","type":"com.example.sdk.sent",` +
	`"datacontenttype":"application/json","time":"2024-05-06T07:08:09.123456789Z","data":{"n":1},"myext":"v1"}`
