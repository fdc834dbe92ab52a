package cluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
)

// The interop tests run a node and the CloudEvents Go SDK's own NATS
// bindings (sdk-go protocol/nats/v2 and protocol/nats_jetstream/v2) against
// each other, both ways, in fast and durable mode.
//
// What sdk-go v2.16.2 does, which the tests account for explicitly:
//   - the core NATS binding reads and writes the structured mode only, as a
//     headerless JSON body; a node sends binary mode, so the tests read
//     fast-mode traffic with the JetStream binding's receiver on a core
//     subscription (its Message reads either mode from a *nats.Msg);
//   - the JetStream binding neither percent-encodes header values on
//     sending nor decodes them on receipt (§3.1.3.2 asks both): the tests
//     decode what it hands over, as a conforming reader would, and encode
//     what it sends, as a conforming writer would;
//   - its binary writer renders extensions with fmt.Sprint: a []byte as
//     "[0 255 …]" rather than base64, a types.URI or URIRef as a Go
//     struct; the tests give it those as their canonical strings.

// interopCase is one signal, as the node and as the SDK hold it.
type interopCase struct {
	name string
	sig  bus.Signal
}

func interopCases(t *testing.T) []interopCase {
	t.Helper()
	abs, _ := url.Parse("https://example.com/a?b=c#d")
	ref, _ := url.Parse("/relative/path?x=1")
	when := time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.FixedZone("", 5*3600+30*60))
	return []interopCase{
		{"required attributes only", bus.Signal{ID: "min-1", Source: "/min", Type: "interop.min", SpecVersion: "1.0"}},
		{"every optional attribute", bus.Signal{ID: "opt-1", Source: "urn:shop:orders", Type: "interop.opt", SpecVersion: "1.0",
			Subject: "order-42", Time: when, DataSchema: "https://schemas.example.com/order/v1.json",
			DataContentType: "application/json", Data: []byte(`{"id":42}`)}},
		{"every extension type", bus.Signal{ID: "ext-1", Source: "/ext", Type: "interop.ext", SpecVersion: "1.0",
			Extensions: map[string]any{
				"str": "text", "int": int32(-2147483648), "booltrue": true, "boolfalse": false,
				"bin": []byte("\x00\xffbinary"), "uri": abs, "uriref": ref,
				"when": time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC),
			}}},
		{"values to percent-encode", bus.Signal{ID: `id with space, "quotes" and 100%`,
			Source: "/orders/caf%C3%A9?q=a%20b", Type: "interop.pct", SpecVersion: "1.0",
			Subject:    `Bestellung für Zoë: "50% off" ☃ 😀`,
			Extensions: map[string]any{"note": `café 100% "quoted" €`, "lead": `"whole value in quotes"`}}},
		{"empty data", bus.Signal{ID: "empty-1", Source: "/e", Type: "interop.empty", SpecVersion: "1.0",
			DataContentType: "text/plain", Data: []byte{}}},
		{"JSON data", bus.Signal{ID: "json-1", Source: "/j", Type: "interop.json", SpecVersion: "1.0",
			DataContentType: "application/json; charset=utf-8", Data: []byte(`{"n":1,"s":"é","a":[1,2]}`)}},
		{"binary data", bus.Signal{ID: "bin-1", Source: "/b", Type: "interop.bin", SpecVersion: "1.0",
			DataContentType: "application/octet-stream", Data: []byte{0, 0xff, 0xfe, '\r', '\n', 0x80, 0xc0}}},
	}
}

// view is a signal or an SDK event reduced to what both can hold: times
// as UTC instants, extensions as CloudEvents canonical strings (the binary
// mode carries no types).
type view struct {
	ID, Source, Type, SpecVersion, Subject, DataContentType, DataSchema, Time string
	Data                                                                      []byte
	Ext                                                                       map[string]string
}

// stamps are the extensions a node adds to what it publishes.
var stamps = map[string]bool{cluster.ExtensionNode: true, cluster.ExtensionInstance: true,
	cluster.ExtensionSequence: true, cluster.ExtensionFloor: true}

func canonical(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case *url.URL:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}

func utc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func signalView(s bus.Signal) view {
	v := view{ID: s.ID, Source: s.Source, Type: s.Type, SpecVersion: s.SpecVersion, Subject: s.Subject,
		DataContentType: s.DataContentType, DataSchema: s.DataSchema, Time: utc(s.Time), Data: s.Data, Ext: map[string]string{}}
	if v.SpecVersion == "" {
		v.SpecVersion = bus.SpecVersion
	}
	for k, x := range s.Extensions {
		if !stamps[k] {
			v.Ext[k] = canonical(x)
		}
	}
	return v
}

// eventView renders an SDK event; percentDecoded applies the binding's
// decoding to the values the SDK took from ce- headers as they came.
func eventView(t *testing.T, e event.Event, percentDecoded bool) view {
	t.Helper()
	dec := func(s string) string {
		if !percentDecoded {
			return s
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			t.Errorf("the SDK handed over %q, which is not percent-encoded: %v", s, err)
		}
		return d
	}
	v := view{ID: dec(e.ID()), Source: dec(e.Source()), Type: e.Type(), SpecVersion: e.SpecVersion(),
		Subject: dec(e.Subject()), DataContentType: e.DataContentType(), DataSchema: dec(e.DataSchema()),
		Time: utc(e.Time()), Data: e.Data(), Ext: map[string]string{}}
	for k, x := range e.Extensions() {
		if stamps[k] {
			continue
		}
		s, err := types.Format(x)
		if err != nil {
			t.Errorf("extension %q: %v", k, err)
		}
		if _, isString := x.(string); isString {
			s = dec(s)
		}
		v.Ext[k] = s
	}
	return v
}

// diffViews lists, field by field, where got differs from want.
func diffViews(want, got view) string {
	var b strings.Builder
	for _, f := range []struct{ name, want, got string }{
		{"id", want.ID, got.ID}, {"source", want.Source, got.Source}, {"type", want.Type, got.Type},
		{"specversion", want.SpecVersion, got.SpecVersion}, {"subject", want.Subject, got.Subject},
		{"datacontenttype", want.DataContentType, got.DataContentType}, {"dataschema", want.DataSchema, got.DataSchema},
		{"time", want.Time, got.Time},
	} {
		if f.want != f.got {
			fmt.Fprintf(&b, "  %s: got %q, want %q\n", f.name, f.got, f.want)
		}
	}
	if !bytes.Equal(want.Data, got.Data) {
		fmt.Fprintf(&b, "  data: got %q, want %q\n", got.Data, want.Data)
	}
	names := map[string]bool{}
	for k := range want.Ext {
		names[k] = true
	}
	for k := range got.Ext {
		names[k] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		w, inWant := want.Ext[k]
		g, inGot := got.Ext[k]
		switch {
		case !inGot:
			fmt.Fprintf(&b, "  extension %s: missing, want %q\n", k, w)
		case !inWant:
			fmt.Fprintf(&b, "  extension %s: unexpected %q\n", k, g)
		case w != g:
			fmt.Fprintf(&b, "  extension %s: got %q, want %q\n", k, g, w)
		}
	}
	return b.String()
}

// pctEncode is the binding's encoding (§3.1.3.2), the test's own: the
// UTF-8 bytes outside U+0021–U+007E, and space, '"' and '%', as %XX.
func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sdkEvent builds the SDK's event for s. forBinary prepares it for the
// JetStream binding's binary writer (see the file comment).
func sdkEvent(t *testing.T, s bus.Signal, forBinary bool) event.Event {
	t.Helper()
	enc := func(v string) string {
		if forBinary {
			return pctEncode(v)
		}
		return v
	}
	e := event.New()
	e.SetID(enc(s.ID))
	e.SetSource(enc(s.Source))
	e.SetType(s.Type)
	if s.Subject != "" {
		e.SetSubject(enc(s.Subject))
	}
	if !s.Time.IsZero() {
		e.SetTime(s.Time)
	}
	if s.DataSchema != "" {
		e.SetDataSchema(enc(s.DataSchema))
	}
	if s.DataContentType != "" {
		e.SetDataContentType(s.DataContentType)
	}
	if s.Data != nil {
		if err := e.SetData(s.DataContentType, s.Data); err != nil {
			t.Fatalf("SetData: %v", err)
		}
	}
	for k, x := range s.Extensions {
		var v any
		switch y := x.(type) {
		case string:
			v = enc(y)
		case []byte:
			v = y
			if forBinary {
				v = base64.StdEncoding.EncodeToString(y)
			}
		case time.Time:
			v = types.Timestamp{Time: y}
		case *url.URL:
			if forBinary {
				v = y.String()
			} else if y.IsAbs() {
				v = types.URI{URL: *y}
			} else {
				v = types.URIRef{URL: *y}
			}
		default:
			v = y
		}
		e.SetExtension(k, v)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("SDK event for %s does not validate: %v", s.ID, err)
	}
	return e
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startInteropNode(t *testing.T, mode cluster.Mode) (*cluster.Node, *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n, err := cluster.Start(ctx, cluster.Config{Name: "interop", Mode: mode, Listen: "127.0.0.1:0", NoSync: true,
		Logger: quiet(), BusOptions: []bus.Option{bus.WithLogger(quiet())}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if mode == cluster.Durable {
		// The SDK's JetStream consumer and sender create a stream of
		// their own when they do not find the node's: wait for it.
		js, err := nc.JetStream()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := js.StreamInfo(streamName, nats.Context(ctx)); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("stream %s: %v", streamName, err)
			}
		}
	}
	return n, nc
}

var interopModes = []struct {
	name string
	mode cluster.Mode
}{{"fast", cluster.Fast}, {"durable", cluster.Durable}}

// streamName is the node's stream for the default prefix (DESIGN.md).
const streamName = "SIGNALBUS_signals"

// TestInteropNodeToSDK: what a node publishes, the SDK's receiver reads as
// an equal, valid event: over a core subscription in fast mode, through
// the JetStream binding's consumer on the node's stream in durable mode.
func TestInteropNodeToSDK(t *testing.T) {
	for _, m := range interopModes {
		t.Run(m.name, func(t *testing.T) {
			n, nc := startInteropNode(t, m.mode)
			for i, tc := range interopCases(t) {
				t.Run(tc.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
					defer cancel()
					sig := tc.sig
					sig.Type = fmt.Sprintf("%s.n%d", sig.Type, i)
					subject := "signals." + sig.Type
					var recv interface {
						Receive(context.Context) (binding.Message, error)
					}
					if m.mode == cluster.Fast {
						r := cejs.NewReceiver()
						sub, err := nc.Subscribe(subject, r.MsgHandler)
						if err != nil {
							t.Fatal(err)
						}
						defer func() { _ = sub.Unsubscribe() }()
						if err := nc.Flush(); err != nil {
							t.Fatal(err)
						}
						recv = r
					} else {
						c, err := cejs.NewConsumerFromConn(nc, streamName, subject, nil,
							[]nats.SubOpt{nats.AckNone(), nats.DeliverAll()})
						if err != nil {
							t.Fatal(err)
						}
						opened := make(chan error, 1)
						go func() { opened <- c.OpenInbound(ctx) }()
						defer func() {
							if err := c.Close(context.Background()); err != nil {
								t.Error(err)
							}
							<-opened
						}()
						recv = c
					}
					if err := n.Bus().Publish(ctx, sig); err != nil {
						t.Fatalf("Publish: %v", err)
					}
					msg, err := recv.Receive(ctx)
					if err != nil {
						t.Fatalf("SDK Receive: %v", err)
					}
					if enc := msg.ReadEncoding(); enc != binding.EncodingBinary {
						t.Errorf("the SDK reads the message as %v, want binary", enc)
					}
					e, err := binding.ToEvent(ctx, msg)
					if err != nil {
						t.Fatalf("SDK ToEvent: %v", err)
					}
					if err := e.Validate(); err != nil {
						t.Errorf("SDK event does not validate: %v", err)
					}
					want, gotView := signalView(sig), eventView(t, *e, true)
					if sig.Time.IsZero() {
						// Publish stamps the time of a signal that has none.
						if gotView.Time == "" {
							t.Error("the SDK read no time; Publish sets one")
						}
						gotView.Time = ""
					}
					if d := diffViews(want, gotView); d != "" {
						t.Errorf("the SDK read an event that differs:\n%s", d)
					}
				})
			}
		})
	}
}

// sdkSenders are the ways the SDK puts an event on NATS.
var sdkSenders = []struct {
	name   string
	binary bool
	send   func(ctx context.Context, t *testing.T, nc *nats.Conn, mode cluster.Mode, subject string, e *event.Event) error
}{
	{"core NATS binding (structured)", false, func(ctx context.Context, t *testing.T, nc *nats.Conn, _ cluster.Mode, subject string, e *event.Event) error {
		s, err := cenats.NewSenderFromConn(nc, subject)
		if err != nil {
			return err
		}
		return s.Send(ctx, binding.ToMessage(e))
	}},
	{"JetStream binding (binary)", true, func(ctx context.Context, t *testing.T, nc *nats.Conn, mode cluster.Mode, subject string, e *event.Event) error {
		return jsSend(ctx, nc, mode, subject, e)
	}},
	{"JetStream binding (structured)", false, func(ctx context.Context, t *testing.T, nc *nats.Conn, mode cluster.Mode, subject string, e *event.Event) error {
		return jsSend(binding.WithForceStructured(ctx), nc, mode, subject, e)
	}},
}

// jsSend sends with the JetStream binding's Sender into the node's stream
// in durable mode; in fast mode, where there is no stream, it writes the
// message with the binding's WriteMsg and publishes it on core NATS.
func jsSend(ctx context.Context, nc *nats.Conn, mode cluster.Mode, subject string, e *event.Event) error {
	if mode == cluster.Durable {
		s, err := cejs.NewSenderFromConn(nc, streamName, subject, nil)
		if err != nil {
			return err
		}
		return s.Send(ctx, binding.ToMessage(e))
	}
	var body bytes.Buffer
	h, err := cejs.WriteMsg(ctx, binding.ToMessage(e), &body)
	if err != nil {
		return err
	}
	return nc.PublishMsg(&nats.Msg{Subject: subject, Header: h, Data: body.Bytes()})
}

// TestInteropSDKToNode: what the SDK sends, in either content mode, a
// node's subscription receives as an equal signal.
func TestInteropSDKToNode(t *testing.T) {
	for _, m := range interopModes {
		t.Run(m.name, func(t *testing.T) {
			n, nc := startInteropNode(t, m.mode)
			got := make(chan bus.Signal, 16)
			if _, err := n.Bus().Subscribe("interop.**", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
				got <- s.Clone()
				return nil
			})); err != nil {
				t.Fatal(err)
			}
			// A signal of the node's own first, so that the subscription is
			// known to be receiving before the SDK sends.
			probe := bus.Signal{ID: "probe", Source: "/probe", Type: "interop.probe", SpecVersion: "1.0", Time: time.Now()}
			if err := n.Bus().Publish(t.Context(), probe); err != nil {
				t.Fatal(err)
			}
			select {
			case <-got:
			case <-time.After(30 * time.Second):
				t.Fatal("the node's own probe signal did not arrive")
			}
			for si, snd := range sdkSenders {
				t.Run(snd.name, func(t *testing.T) {
					for i, tc := range interopCases(t) {
						t.Run(tc.name, func(t *testing.T) {
							ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
							defer cancel()
							want := tc.sig
							want.Type = fmt.Sprintf("%s.s%d.c%d", want.Type, si, i)
							want.ID = fmt.Sprintf("%s (%s %d)", want.ID, m.name, si)
							e := sdkEvent(t, want, snd.binary)
							if err := snd.send(ctx, t, nc, m.mode, "signals."+want.Type, &e); err != nil {
								t.Fatalf("SDK send: %v", err)
							}
							select {
							case s := <-got:
								wantView, gotView := signalView(want), signalView(s)
								if want.Time.IsZero() {
									// The bus stamps the time of a signal that has none.
									if gotView.Time == "" {
										t.Error("the node delivered no time; the bus sets one")
									}
									gotView.Time = ""
								}
								if d := diffViews(wantView, gotView); d != "" {
									t.Errorf("the node received a signal that differs:\n%s", d)
								}
							case <-ctx.Done():
								t.Fatalf("no signal arrived: %v", ctx.Err())
							}
						})
					}
				})
			}
		})
	}
}
