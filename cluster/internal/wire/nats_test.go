package wire_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

// runServer starts an embedded nats-server on a free loopback port and
// returns a connection to it; both are closed when the test ends.
func runServer(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready within 5s")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// transmit publishes m through the server and returns the message as a
// subscriber receives it.
func transmit(t *testing.T, nc *nats.Conn, m *nats.Msg) *nats.Msg {
	t.Helper()
	sub, err := nc.SubscribeSync(m.Subject)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishMsg(m); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return got
}

func TestOverNATS(t *testing.T) {
	nc := runServer(t)

	t.Run("encoded signals", func(t *testing.T) {
		for name, s := range roundTripSignals(t) {
			t.Run(name, func(t *testing.T) {
				m, err := wire.Encode(s, wire.DefaultPrefix)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				got := transmit(t, nc, m)
				// The server keeps the keys byte for byte, lower case included.
				for k, vs := range m.Header {
					if g := got.Header[k]; len(g) != 1 || g[0] != vs[0] {
						t.Errorf("header %q: received %q, sent %q", k, g, vs)
					}
				}
				if len(got.Header) != len(m.Header) {
					t.Errorf("received %d headers, sent %d: %v", len(got.Header), len(m.Header), got.Header)
				}
				sig, err := wire.Decode(got)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if d := diffSignals(normalized(s), sig); d != "" {
					t.Errorf("received signal differs:\n%s", d)
				}
			})
		}
	})

	t.Run("hand-built binary message", func(t *testing.T) {
		m := &nats.Msg{
			Subject: "signals.order.created",
			Header: nats.Header{
				"Ce-Specversion": {"1.0"},
				"Ce-Id":          {"hand-1"},
				"CE-TYPE":        {"order.created"},
				"ce-source":      {"/hand%20built"},
				"Ce-Subject":     {`"quoted subject"`},
				"ce-time":        {"2024-01-02T03:04:05Z"},
				"Content-Type":   {"application/json"},
				"Ce-Region":      {"eu%2Dwest%E2%82%AC"},
				"traceparent":    {traceParent},
			},
			Data: []byte(`{"ok":true}`),
		}
		got, err := wire.Decode(transmit(t, nc, m))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		want := bus.Signal{
			SpecVersion: "1.0", ID: "hand-1", Type: "order.created", Source: "/hand built",
			Subject: "quoted subject", Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
			DataContentType: "application/json", Data: []byte(`{"ok":true}`),
			Extensions: map[string]any{"region": "eu-west€", "traceparent": traceParent},
		}
		if d := diffSignals(want, got); d != "" {
			t.Errorf("received signal differs:\n%s", d)
		}
	})

	t.Run("headerless structured message", func(t *testing.T) {
		got, err := wire.Decode(transmit(t, nc, &nats.Msg{Subject: "signals.sdk", Data: []byte(sdkJSON)}))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if d := diffSignals(sdkWant, got); d != "" {
			t.Errorf("received signal differs:\n%s", d)
		}
	})
}
