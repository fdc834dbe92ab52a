package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/internal/wire"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startNode starts a node on free loopback ports, closed when the test ends.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	if cfg.Listen == "" && cfg.NATSURL == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	cfg.BusOptions = append([]bus.Option{bus.WithLogger(quietLogger())}, cfg.BusOptions...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("Close(%s): %v", cfg.Name, err)
		}
	})
	return n
}

// startFastCluster starts n fast-mode nodes, each with an embedded server,
// routed to the first; full mesh forms by gossip.
func startFastCluster(t *testing.T, size int, opts ...bus.Option) []*Node {
	t.Helper()
	nodes := []*Node{startNode(t, Config{Name: "n0", Mode: Fast, ClusterListen: "127.0.0.1:0", BusOptions: opts})}
	seed := nodes[0].server.ClusterURL()
	for i := 1; i < size; i++ {
		nodes = append(nodes, startNode(t, Config{Name: fmt.Sprintf("n%d", i), Mode: Fast,
			ClusterListen: "127.0.0.1:0", Routes: []string{seed}, BusOptions: opts}))
	}
	waitConnected(t, nodes)
	return nodes
}

// waitConnected publishes probes from every node until every node hears
// every other: routes are up and subscription interest has propagated.
// Fast mode is at-most-once, so signals sent before that are not owed.
func waitConnected(t testing.TB, nodes []*Node) {
	t.Helper()
	var mu sync.Mutex
	heard := map[string]bool{}
	for _, n := range nodes {
		sub, err := n.Bus().Subscribe("probe", bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
			mu.Lock()
			heard[n.Name()+"<-"+s.Source] = true
			mu.Unlock()
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, n := range nodes {
			if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "probe", Source: n.Name()}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		done := len(heard) == len(nodes)*len(nodes)
		mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not all hear each other: %v", heard)
		}
	}
}

// inbox records signals and lets a test wait for a count.
type inbox struct {
	mu      sync.Mutex
	signals []bus.Signal
}

func (r *inbox) Handle(_ context.Context, s bus.Signal) error {
	r.mu.Lock()
	r.signals = append(r.signals, s)
	r.mu.Unlock()
	return nil
}

func (r *inbox) wait(t *testing.T, n int) []bus.Signal {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		got := append([]bus.Signal(nil), r.signals...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d signals, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFastModeFansOutInPublisherOrder(t *testing.T) {
	nodes := startFastCluster(t, 3)
	const perPublisher = 2000
	boxes := make([]*inbox, len(nodes))
	for i, n := range nodes {
		boxes[i] = &inbox{}
		if _, err := n.Bus().Subscribe("order.*", boxes[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Subscriptions are local; the node's NATS interest covers them
	// already (it subscribes to the whole prefix), so no wait is needed.
	var wg sync.WaitGroup
	for _, p := range nodes[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPublisher {
				s := bus.Signal{Type: "order.created", Source: "/" + p.Name(), Subject: strconv.Itoa(i)}
				if err := p.Bus().Publish(context.Background(), s); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, box := range boxes {
		got := box.wait(t, 2*perPublisher)
		next := map[string]int{}
		for _, s := range got {
			seq, _ := strconv.Atoi(s.Subject)
			if seq != next[s.Source] {
				t.Fatalf("node %d got %s #%d, want #%d: publisher order broken", i, s.Source, seq, next[s.Source])
			}
			next[s.Source]++
			if s.Extensions[ExtensionNode] == nil || s.Extensions[ExtensionSequence] == nil {
				t.Fatalf("signal lacks the publisher node and sequence extensions: %v", s.Extensions)
			}
		}
		if st := nodes[i].Stats(); st.Lost != 0 || st.Parked != 0 {
			t.Errorf("node %d stats %+v, want no loss on healthy links", i, st)
		}
	}
}

func TestTraceContinuesAcrossNodes(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	nodes := startFastCluster(t, 2, bus.WithTracerProvider(tp))
	box := &inbox{}
	if _, err := nodes[1].Bus().Subscribe("trace.me", box); err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	if err := nodes[0].Bus().Publish(ctx, bus.Signal{Type: "trace.me", Source: "/t"}); err != nil {
		t.Fatal(err)
	}
	root.End()
	box.wait(t, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var send, process sdktrace.ReadOnlySpan
		for _, s := range spans.Ended() {
			switch s.Name() {
			case "send trace.me":
				send = s
			case "process trace.me":
				process = s
			}
		}
		if send != nil && process != nil {
			if process.SpanContext().TraceID() != root.SpanContext().TraceID() || process.Parent().SpanID() != send.SpanContext().SpanID() {
				t.Errorf("the receiving node's process span is not a child of the publishing node's send span")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans: send %v, process %v", send != nil, process != nil)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestInteropWithPlainNATS: a message a plain NATS client publishes with
// ce- headers (binary mode) or as a structured JSON event reaches a bus
// subscriber, and what the bus publishes carries the binding's headers.
func TestInteropWithPlainNATS(t *testing.T) {
	n := startNode(t, Config{Name: "solo", Mode: Fast})
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	box := &inbox{}
	if _, err := n.Bus().Subscribe("interop.*", box); err != nil {
		t.Fatal(err)
	}
	raw, err := nc.SubscribeSync("signals.interop.out")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	binary := nats.NewMsg("signals.interop.binary")
	binary.Header["Ce-Specversion"] = []string{"1.0"}
	binary.Header["Ce-Id"] = []string{"raw-1"}
	binary.Header["Ce-Source"] = []string{"/plain%20nats"}
	binary.Header["Ce-Type"] = []string{"interop.binary"}
	binary.Header["Content-Type"] = []string{"application/json"}
	binary.Header["Ce-Tenant"] = []string{"acme"}
	binary.Data = []byte(`{"n":1}`)
	structured := nats.NewMsg("signals.interop.structured")
	structured.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	structured.Data = []byte(`{"specversion":"1.0","id":"raw-2","source":"/json","type":"interop.structured","data":{"n":2}}`)
	for _, m := range []*nats.Msg{binary, structured} {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	got := box.wait(t, 2)
	if got[0].ID != "raw-1" || got[0].Source != "/plain nats" || string(got[0].Data) != `{"n":1}` || got[0].Extensions["tenant"] != "acme" {
		t.Errorf("binary-mode message arrived as %+v", got[0])
	}
	if got[1].ID != "raw-2" || string(got[1].Data) != `{"n":2}` {
		t.Errorf("structured-mode message arrived as %+v", got[1])
	}

	sig, _ := bus.NewSignal("interop.out", "/bus", map[string]int{"n": 3})
	if err := n.Bus().Publish(context.Background(), sig); err != nil {
		t.Fatal(err)
	}
	m, err := raw.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"ce-id": sig.ID, "ce-type": "interop.out", "ce-source": "/bus",
		"ce-specversion": "1.0", "content-type": "application/json", "Nats-Msg-Id": sig.ID} {
		if got := m.Header[key]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %v, want %s", key, got, want)
		}
	}
	if string(m.Data) != `{"n":3}` {
		t.Errorf("body %s, want the data", m.Data)
	}
}

// watchParked connects a plain client to n's server and subscribes it to
// the dead-letter subject; both end with the test.
func watchParked(t *testing.T, n *Node) (*nats.Conn, *nats.Subscription) {
	t.Helper()
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	parked, err := nc.SubscribeSync(n.cfg.DeadLetterSubject)
	if err != nil {
		t.Fatal(err)
	}
	return nc, parked
}

// TestInvalidMessagesAreParked: what is not a CloudEvent goes to the
// dead-letter subject with its reason, is counted, and does not stop the
// node delivering what follows.
func TestInvalidMessagesAreParked(t *testing.T) {
	n := startNode(t, Config{Name: "solo", Mode: Fast})
	nc, parked := watchParked(t, n)
	box := &inbox{}
	if _, err := n.Bus().Subscribe("ok", box); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("signals.garbage", []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	noID := nats.NewMsg("signals.x")
	noID.Header["ce-specversion"] = []string{"1.0"}
	noID.Header["ce-type"] = []string{"x"}
	noID.Header["ce-source"] = []string{"/x"}
	if err := nc.PublishMsg(noID); err != nil {
		t.Fatal(err)
	}
	if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "ok", Source: "/ok"}); err != nil {
		t.Fatal(err)
	}
	box.wait(t, 1)
	for i, wantSubject := range []string{"signals.garbage", "signals.x"} {
		m, err := parked.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("parked message %d: %v", i, err)
		}
		if m.Header.Get("signalbus-subject") != wantSubject || m.Header.Get("signalbus-reason") == "" {
			t.Errorf("parked message %d headers %v, want subject %s and a reason", i, m.Header, wantSubject)
		}
	}
	if got := n.Stats().Parked; got != 2 {
		t.Errorf("Stats().Parked = %d, want 2", got)
	}
}

// TestSignalTheBusRefusesIsParked: a valid CloudEvent over the receiving
// bus's own data limit (lower than its publisher's) is not dropped: it is
// parked, once per node however many of its consumers refuse it, with its
// reason, and counted; what follows is delivered. So with fast groups,
// which take their own copies: the node's receiver, which otherwise lets
// a stamped message of a type nothing on the node wants go undecoded,
// decodes what a group takes and parks it for the node.
func TestSignalTheBusRefusesIsParked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    Mode
		options [][]bus.SubscribeOption // one subscription each
		stamped bool
	}{
		{"fast", Fast, [][]bus.SubscribeOption{nil}, false},
		{"fast group", Fast, [][]bus.SubscribeOption{{bus.WithGroup("g")}}, true},
		{"fast groups", Fast, [][]bus.SubscribeOption{{bus.WithGroup("g1")}, {bus.WithGroup("g2")}, nil}, true},
		{"durable", Durable, [][]bus.SubscribeOption{nil, {bus.WithSubscriptionName("audit")}, {bus.WithGroup("g")}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const limit = 1000
			n := startNode(t, Config{Name: "small", Mode: tc.mode, BusOptions: []bus.Option{bus.WithMaxDataSize(limit)}})
			nc, parked := watchParked(t, n)
			var boxes []*inbox
			for _, opts := range tc.options {
				box := &inbox{}
				if _, err := n.Bus().Subscribe("big.*", box, opts...); err != nil {
					t.Fatal(err)
				}
				boxes = append(boxes, box)
			}
			if tc.mode == Durable {
				waitDurableReady(t, n)
				waitAttached(t, n, len(tc.options)-1)
			}
			// Until every subscription hears: a fast group's interest
			// reaches the server on a connection of its own.
			for heard := false; !heard; {
				probe := bus.Signal{Type: "big.probe", Source: "/test"}
				if err := n.Bus().Publish(context.Background(), probe); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
				heard = true
				for _, box := range boxes {
					heard = heard && len(box.wait(t, 0)) > 0
				}
			}
			// From outside, as a publisher with a higher limit sends them.
			for i, size := range []int{limit + 1, 10} {
				s, err := bus.NewSignal("big.data", "/outside", make([]byte, size), bus.WithDataContentType("application/octet-stream"))
				if err != nil {
					t.Fatal(err)
				}
				msg, err := wire.Encode(s, n.cfg.Prefix)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					msg.Header.Set("ce-bigone", "yes")
				}
				if tc.stamped {
					msg.Header.Set("ce-"+ExtensionNode, "big")
					msg.Header.Set("ce-"+ExtensionInstance, "run1")
					msg.Header.Set("ce-"+ExtensionSequence, strconv.Itoa(i+1))
				}
				if err := nc.PublishMsg(msg); err != nil {
					t.Fatal(err)
				}
			}
			for i, box := range boxes {
				deadline := time.Now().Add(20 * time.Second)
				for outside := []bus.Signal(nil); len(outside) == 0; {
					for _, s := range box.wait(t, 0) {
						if s.Source == "/outside" {
							outside = append(outside, s)
						}
					}
					if len(outside) > 0 && (len(outside) != 1 || len(outside[0].Data) != 10) {
						t.Errorf("subscription %d: delivered %d signals from outside (first with %d bytes), want the 10-byte one",
							i, len(outside), len(outside[0].Data))
					}
					if time.Now().After(deadline) {
						t.Fatalf("subscription %d: nothing from outside", i)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			m, err := parked.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("parked message: %v", err)
			}
			if m.Header.Get("ce-bigone") != "yes" || len(m.Data) != limit+1 {
				t.Errorf("parked %d bytes with headers %v, want the big signal", len(m.Data), m.Header)
			}
			if got := m.Header.Get("signalbus-reason"); got != wire.ReasonInvalidSignal {
				t.Errorf("parked with reason %q, want %q", got, wire.ReasonInvalidSignal)
			}
			time.Sleep(100 * time.Millisecond) // a second parking would be right behind
			if m, err := parked.NextMsg(10 * time.Millisecond); err == nil {
				t.Errorf("parked again: %v", m.Header)
			}
			if got := n.Stats().Parked; got != 1 {
				t.Errorf("Stats().Parked = %d, want 1", got)
			}
		})
	}
}

func TestStartRefusesWhatItCannotDo(t *testing.T) {
	ctx := context.Background()
	if _, err := Start(ctx, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Start without a name = %v, want ErrInvalidConfig", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := Start(short, Config{Name: "x", Mode: Fast, NATSURL: "nats://127.0.0.1:1", ConnectTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start against no server = %v, want ErrUnavailable", err)
	}
}

func TestCloseDeliversWhatWasPublished(t *testing.T) {
	n := startNode(t, Config{Name: "solo", Mode: Fast})
	box := &inbox{}
	if _, err := n.Bus().Subscribe("c", box); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "c", Source: "/c"}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	if len(box.signals) != 500 {
		t.Errorf("after Close %d of 500 own signals were handled", len(box.signals))
	}
	if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "c", Source: "/c"}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
}

// TestCloseKeepsTheTemporaryStoreUntilTheServerStopped: when Close's ctx
// ends before the embedded server has shut down, the temporary store is
// not removed from under the server, but once the server has stopped.
func TestCloseKeepsTheTemporaryStoreUntilTheServerStopped(t *testing.T) {
	start, cancelStart := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStart()
	n, err := Start(start, Config{Name: "tmp", Listen: "127.0.0.1:0", Logger: quietLogger(),
		BusOptions: []bus.Option{bus.WithLogger(quietLogger())}})
	if err != nil {
		t.Fatal(err)
	}
	waitDurableReady(t, n)
	dir := n.tmpDir
	if dir == "" {
		t.Fatal("a node without DataDir has no temporary store")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Close(ctx); err == nil {
		t.Fatal("Close with an ended ctx reported nothing")
	}
	// The store goes only after the server stopped: if it is gone, the
	// server must have stopped already (checked in this order, since the
	// server may stop, and the store go, between the two checks).
	if _, err := os.Stat(dir); err != nil {
		select {
		case <-n.server.Stopped():
		default:
			t.Errorf("the store was removed while the server was still shutting down: %v", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the temporary store %s is still there after the server stopped", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLeavingFastGroupLeavesNothingUnparked: a fast group takes its copy
// of a message the node's receiver gets too, and leaves parking it to the
// receiver. A group that leaves while the receiver is behind (here held
// up by a stuck handler) waits for the receiver to handle what the
// server had sent it, so a signal the bus refuses is still parked, not
// let go undecoded for want of a taker.
func TestLeavingFastGroupLeavesNothingUnparked(t *testing.T) {
	const limit = 1000
	n := startNode(t, Config{Name: "small", Mode: Fast, BusOptions: []bus.Option{bus.WithMaxDataSize(limit)}})
	nc, parked := watchParked(t, n)
	release, started := make(chan struct{}), make(chan struct{}, 10)
	if _, err := n.Bus().Subscribe("slow.*", bus.HandlerFunc(func(context.Context, bus.Signal) error {
		started <- struct{}{}
		<-release
		return nil
	}), bus.WithQueueSize(1)); err != nil {
		t.Fatal(err)
	}
	box := &inbox{}
	group, err := n.Bus().Subscribe("big.*", box, bus.WithGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	waitHeard(t, n, box, "big.probe")
	// The handler holds one, its queue another, and the receiver waits
	// in Dispatch with the third.
	for i := range 3 {
		msg, err := wire.Encode(bus.Signal{ID: "slow" + strconv.Itoa(i), Type: "slow.x", Source: "/outside", SpecVersion: bus.SpecVersion}, n.cfg.Prefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	s, err := bus.NewSignal("big.data", "/outside", make([]byte, limit+1), bus.WithDataContentType("application/octet-stream"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := wire.Encode(s, n.cfg.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{ExtensionNode: "big", ExtensionInstance: "run1", ExtensionSequence: "1"} {
		msg.Header.Set("ce-"+name, value) // as another node stamps it: the receiver may let it go undecoded
	}
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- group.Close() }()
	time.Sleep(100 * time.Millisecond) // the group has left, but for its wait
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := parked.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("the refused signal the group took was not parked: %v", err)
	}
	if st := n.Stats(); st.Parked != 1 || st.Undecoded != 0 {
		t.Errorf("Stats: parked %d, undecoded %d; want 1 and 0", st.Parked, st.Undecoded)
	}
}
