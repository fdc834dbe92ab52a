package client_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/client"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSubjectFilters(t *testing.T) {
	cases := []struct {
		prefix, pattern string
		want            []string
		exact           bool
	}{
		{"", "order.created", []string{"signals.order.created"}, true},
		{"signals", "order.*", []string{"signals.order.*"}, true},
		{"app.ev", "order.*.x", []string{"app.ev.order.*.x"}, true},
		{"", "order.**", []string{"signals.order", "signals.order.>"}, true},
		{"", "**", []string{"signals.>"}, true},
		{"", "**.failed", []string{"signals.>"}, false},
		{"", "audit.**.failed", []string{"signals.audit.>"}, false},
	}
	for _, tc := range cases {
		got, exact, err := client.SubjectFilters(tc.prefix, tc.pattern)
		if err != nil || !slices.Equal(got, tc.want) || exact != tc.exact {
			t.Errorf("SubjectFilters(%q, %q) = %q, %v, %v; want %q, %v", tc.prefix, tc.pattern, got, exact, err, tc.want, tc.exact)
		}
	}
	for _, bad := range []string{"", "order..x", "order.c*", "a.**.**", "ordér"} {
		if _, _, err := client.SubjectFilters("", bad); !errors.Is(err, bus.ErrInvalidPattern) {
			t.Errorf("SubjectFilters(%q): %v, want ErrInvalidPattern", bad, err)
		}
	}
}

func TestStreamName(t *testing.T) {
	for prefix, want := range map[string]string{"": "SIGNALBUS_signals", "signals": "SIGNALBUS_signals", "a.b-c": "SIGNALBUS_a_b-c"} {
		if got := client.StreamName(prefix); got != want {
			t.Errorf("StreamName(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	sig, err := bus.NewSignal("order.created", "/shop", map[string]int{"n": 1}, bus.WithExtension("tenant", "acme"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := client.Encode(sig, "")
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "signals.order.created" || msg.Header.Get(nats.MsgIdHdr) != sig.ID {
		t.Fatalf("subject %q, Nats-Msg-Id %q; want signals.order.created, %q", msg.Subject, msg.Header.Get(nats.MsgIdHdr), sig.ID)
	}
	got, err := client.Decode(msg)
	if err != nil || len(got) != 1 {
		t.Fatalf("Decode: %d signals, %v", len(got), err)
	}
	if g := got[0]; g.ID != sig.ID || g.Type != sig.Type || string(g.Data) != `{"n":1}` || g.Extensions["tenant"] != "acme" || !g.Time.Equal(sig.Time) {
		t.Errorf("decoded %+v, want %+v", g, sig)
	}

	if _, err := client.Encode(bus.Signal{Type: "order.created", Source: "/shop"}, ""); !errors.Is(err, bus.ErrInvalidSignal) {
		t.Errorf("Encode without an id: %v, want ErrInvalidSignal", err)
	}
	if _, err := client.Decode(&nats.Msg{Subject: "signals.x", Data: []byte("hello")}); !errors.Is(err, client.ErrNotCloudEvent) {
		t.Errorf("Decode of a plain message: %v, want ErrNotCloudEvent", err)
	}
}

// A batch message from a ProtobufBatch node gives each of its signals;
// an invalid event is left out and named in the error.
func TestDecodeBatch(t *testing.T) {
	var signals []bus.Signal
	for i := range 3 {
		s, err := bus.NewSignal("order.created", "/shop", map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		signals = append(signals, s)
	}
	msg, err := wire.EncodeBatch(signals, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.Decode(msg)
	if err != nil || len(got) != 3 {
		t.Fatalf("Decode: %d signals, %v", len(got), err)
	}
	for i, g := range got {
		if g.ID != signals[i].ID {
			t.Errorf("signal %d: id %s, want %s", i, g.ID, signals[i].ID)
		}
	}
}

func TestWithoutStamps(t *testing.T) {
	s := bus.Signal{Extensions: map[string]any{"sbnode": "n1", "sbinst": "x", "sbseq": "4", "sbfloor": "3", "tenant": "acme"}}
	got := client.WithoutStamps(s)
	if len(got.Extensions) != 1 || got.Extensions["tenant"] != "acme" {
		t.Errorf("WithoutStamps kept %v", got.Extensions)
	}
	if len(s.Extensions) != 5 {
		t.Errorf("WithoutStamps changed its argument: %v", s.Extensions)
	}
	if got := client.WithoutStamps(bus.Signal{Extensions: map[string]any{"sbseq": "1"}}); got.Extensions != nil {
		t.Errorf("WithoutStamps left %v", got.Extensions)
	}
}

func ExampleSubjectFilters() {
	filters, exact, _ := client.SubjectFilters(client.DefaultPrefix, "order.**")
	fmt.Println(filters, exact)
	filters, exact, _ = client.SubjectFilters(client.DefaultPrefix, "audit.**.failed")
	fmt.Println(filters, exact)
	// Output:
	// [signals.order signals.order.>] true
	// [signals.audit.>] false
}
