package natsserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/cluster/clustertest"
	"github.com/signalbus/signalbus/cluster/internal/natsserver"
	"github.com/signalbus/signalbus/internal/ports"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor polls cond every 25 ms until it returns nil or d has passed, then
// fails the test with cond's last error.
func waitFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v: %v", what, d, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func startServer(t testing.TB, o natsserver.Options) *natsserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, o)
	if err != nil {
		t.Fatalf("Start(%s): %v", o.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown(%s): %v", o.Name, err)
		}
	})
	return s
}

func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return nc, js
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := natsserver.Options{
		Name:          "n1",
		Listen:        "127.0.0.1:0",
		ClusterName:   "c",
		ClusterListen: "127.0.0.1:0",
		Routes:        []string{"nats://127.0.0.1:6222", "nats-route://localhost:6223"},
		StoreDir:      "/tmp/x",
		JetStream:     true,
	}
	tests := []struct {
		name  string
		mod   func(*natsserver.Options)
		field string // "" = valid
	}{
		{"good", func(*natsserver.Options) {}, ""},
		{"zero value", func(o *natsserver.Options) { *o = natsserver.Options{} }, ""},
		{"standalone", func(o *natsserver.Options) { o.ClusterName, o.ClusterListen, o.Routes = "", "", nil }, ""},
		{"any host", func(o *natsserver.Options) { o.Listen = ":0" }, ""},
		{"no JetStream no StoreDir", func(o *natsserver.Options) { o.JetStream, o.StoreDir = false, "" }, ""},
		{"name with space", func(o *natsserver.Options) { o.Name = "n 1" }, "Name"},
		{"clustered without name", func(o *natsserver.Options) { o.Name = "" }, "Name"},
		{"listen without port", func(o *natsserver.Options) { o.Listen = "127.0.0.1" }, "Listen"},
		{"listen bad port", func(o *natsserver.Options) { o.Listen = "127.0.0.1:http" }, "Listen"},
		{"listen port too big", func(o *natsserver.Options) { o.Listen = "127.0.0.1:65536" }, "Listen"},
		{"cluster listen bad", func(o *natsserver.Options) { o.ClusterListen = "nowhere" }, "ClusterListen"},
		{"cluster without name", func(o *natsserver.Options) { o.ClusterName = "" }, "ClusterName"},
		{"cluster name with space", func(o *natsserver.Options) { o.ClusterName = "a b" }, "ClusterName"},
		{"routes standalone", func(o *natsserver.Options) { o.ClusterName, o.ClusterListen = "", "" }, "Routes"},
		{"cluster name standalone", func(o *natsserver.Options) { o.ClusterListen, o.Routes = "", nil }, "ClusterName"},
		{"advertise standalone", func(o *natsserver.Options) {
			o.ClusterName, o.ClusterListen, o.Routes, o.ClusterAdvertise = "", "", nil, "localhost:1"
		}, "ClusterAdvertise"},
		{"advertise port 0", func(o *natsserver.Options) { o.ClusterAdvertise = "localhost:0" }, "ClusterAdvertise"},
		{"route scheme", func(o *natsserver.Options) { o.Routes = []string{"nats://127.0.0.1:1", "tcp://127.0.0.1:2"} }, "Routes[1]"},
		{"route no port", func(o *natsserver.Options) { o.Routes = []string{"nats://127.0.0.1"} }, "Routes[0]"},
		{"route port 0", func(o *natsserver.Options) { o.Routes = []string{"nats://127.0.0.1:0"} }, "Routes[0]"},
		{"route garbage", func(o *natsserver.Options) { o.Routes = []string{"::"} }, "Routes[0]"},
		{"clustered JetStream without routes", func(o *natsserver.Options) { o.Routes = nil }, "Routes"},
		{"clustered core NATS without routes", func(o *natsserver.Options) { o.Routes, o.JetStream = nil, false }, ""},
		{"no store dir", func(o *natsserver.Options) { o.StoreDir = "" }, "StoreDir"},
		{"negative ping", func(o *natsserver.Options) { o.PingInterval = -time.Second }, "PingInterval"},
		{"negative pings out", func(o *natsserver.Options) { o.MaxPingsOut = -1 }, "MaxPingsOut"},
		{"negative write deadline", func(o *natsserver.Options) { o.WriteDeadline = -1 }, "WriteDeadline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			o.Routes = append([]string(nil), good.Routes...)
			tc.mod(&o)
			err := o.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, natsserver.ErrInvalidOptions) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalidOptions", err)
			}
			var oe *natsserver.OptionError
			if !errors.As(err, &oe) || oe.Field != tc.field {
				t.Fatalf("Validate() = %v, want field %q", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name field %q", err, tc.field)
			}
		})
	}
}

func TestStartInvalidOptions(t *testing.T) {
	t.Parallel()
	_, err := natsserver.Start(t.Context(), natsserver.Options{Listen: "127.0.0.1:0", JetStream: true})
	if !errors.Is(err, natsserver.ErrInvalidOptions) {
		t.Fatalf("Start without StoreDir = %v, want ErrInvalidOptions", err)
	}
}

func TestStandaloneJetStream(t *testing.T) {
	t.Parallel()
	s := startServer(t, natsserver.Options{
		Name:      "solo",
		Listen:    "127.0.0.1:0",
		StoreDir:  t.TempDir(),
		JetStream: true,
	})
	if u := s.ClientURL(); !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":0") || strings.HasSuffix(u, ":4222") {
		t.Fatalf("ClientURL() = %q, want nats://127.0.0.1:<free port>", u)
	}
	if s.ClusterURL() != "" {
		t.Fatalf("ClusterURL() = %q for a standalone server, want \"\"", s.ClusterURL())
	}
	if s.Name() != "solo" {
		t.Fatalf("Name() = %q, want solo", s.Name())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.JetStreamReady(ctx); err != nil {
		t.Fatal(err)
	}

	_, js := connect(t, s.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	const n = 10
	for i := range n {
		if _, err := js.Publish(ctx, "ev.x", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	cons, err := js.OrderedConsumer(ctx, "EV", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("OrderedConsumer: %v", err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
	}
	if err := batch.Error(); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(got) != n || got[0] != "m0" || got[n-1] != fmt.Sprintf("m%d", n-1) {
		t.Fatalf("consumed %q, want m0..m%d in order", got, n-1)
	}
}

func TestStartBadListenAddress(t *testing.T) {
	t.Parallel()
	// Hold a port so the server cannot bind it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	for _, tc := range []struct{ name, listen, cluster string }{
		{"client port in use", l.Addr().String(), ""},
		{"route port in use", "127.0.0.1:0", l.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := natsserver.Options{Name: "busy", Listen: tc.listen, StoreDir: t.TempDir(), JetStream: true}
			if tc.cluster != "" {
				o.ClusterName, o.ClusterListen = "c", tc.cluster
				o.Routes = []string{"nats://" + tc.cluster}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			s, err := natsserver.Start(ctx, o)
			if err == nil {
				_ = s.Shutdown(context.Background())
				t.Fatalf("Start on a busy port succeeded")
			}
			if !strings.Contains(err.Error(), "listening") || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("Start error = %q, want it to say it could not listen and why", err)
			}
			if ctx.Err() != nil {
				t.Fatalf("Start waited for its whole ctx (%v) instead of failing fast", time.Since(start))
			}
		})
	}
}

func TestStartContextExpires(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := natsserver.Start(ctx, natsserver.Options{Listen: "127.0.0.1:0"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled ctx = %v, want context.Canceled", err)
	}
}

// syncBuffer is a goroutine-safe bytes.Buffer for a slog handler.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestLoggerBridge(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startServer(t, natsserver.Options{Name: "logged", Listen: "127.0.0.1:0", Logger: logger})
	nc, _ := connect(t, s.ClientURL())
	nc.Close()
	out := buf.String()
	for _, want := range []string{"level=DEBUG", "Server is ready", "nats_server=logged"} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}

	// A logger above debug gets nothing from a healthy start.
	var quiet syncBuffer
	q := startServer(t, natsserver.Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&quiet, nil))})
	_ = q
	if quiet.String() != "" {
		t.Errorf("info-level logger got lines from a healthy start:\n%s", quiet.String())
	}
}

// freeAddrs reserves n loopback ports and releases them, for servers that
// must know each other's route addresses before any of them starts.
// freeAddrs returns n free loopback addresses below the ephemeral range,
// so that no connection takes one between now and the servers' start.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, 0, n)
	for len(addrs) < n {
		a := ports.Unshared()
		if a == "127.0.0.1:0" || slices.Contains(addrs, a) {
			t.Fatalf("no free port below the ephemeral range (%v so far)", addrs)
		}
		addrs = append(addrs, a)
	}
	return addrs
}

func TestThreeServerCluster(t *testing.T) {
	t.Parallel()
	const n = 3
	clusterAddrs := freeAddrs(t, n)
	var routes []string
	for _, a := range clusterAddrs {
		routes = append(routes, "nats://"+a)
	}
	servers := make([]*natsserver.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Start all three at once, last first: order must not matter.
	for i := n - 1; i >= 0; i-- {
		wg.Go(func() {
			servers[i], errs[i] = natsserver.Start(ctx, natsserver.Options{
				Name:          fmt.Sprintf("s%d", i),
				Listen:        "127.0.0.1:0",
				ClusterName:   "ns-test",
				ClusterListen: clusterAddrs[i],
				Routes:        routes, // including itself: nats-server ignores a route to self
				StoreDir:      t.TempDir(),
				JetStream:     true,
			})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Start s%d: %v", i, errs[i])
		}
		s := servers[i]
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
		if got, want := s.ClusterURL(), "nats://"+clusterAddrs[i]; got != want {
			t.Errorf("s%d ClusterURL() = %q, want %q", i, got, want)
		}
	}

	for i, s := range servers {
		waitFor(t, 15*time.Second, fmt.Sprintf("s%d routes", i), func() error {
			if got := peers(s); len(got) != n-1 || s.Raw().NumRoutes() < n-1 {
				return fmt.Errorf("peers %v, NumRoutes %d; want %d peers", got, s.Raw().NumRoutes(), n-1)
			}
			return nil
		})
	}
	for _, s := range servers {
		if err := s.JetStreamReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	js := make([]jetstream.JetStream, n)
	for i, s := range servers {
		_, js[i] = connect(t, s.ClientURL())
	}
	// The meta leader may not have every peer registered yet; retry.
	waitFor(t, 15*time.Second, "create R3 stream through s0", func() error {
		_, err := js[0].CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		return err
	})
	publish := func(i int, subj string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js[i].Publish(pctx, subj, []byte(subj))
		return err
	}
	for i := range n {
		waitFor(t, 15*time.Second, fmt.Sprintf("publish through s%d", i), func() error {
			return publish(i, fmt.Sprintf("r3.via%d", i))
		})
	}
	waitFor(t, 10*time.Second, "3 messages in R3", func() error {
		return streamMsgs(ctx, js[1], "R3", 3)
	})

	// Stop one server: the other two are a majority and keep the stream
	// writable (after a leader election if it led the stream).
	sctx, scancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer scancel()
	if err := servers[2].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if servers[2].Running() {
		t.Fatal("s2 still running after Shutdown")
	}
	waitFor(t, 30*time.Second, "publish through s0 with s2 down", func() error {
		return publish(0, "r3.after")
	})
	waitFor(t, 10*time.Second, "publish through s1 with s2 down", func() error {
		return publish(1, "r3.after")
	})
	waitFor(t, 10*time.Second, "5 messages in R3", func() error {
		return streamMsgs(ctx, js[1], "R3", 5)
	})
}

func peers(s *natsserver.Server) []string {
	rz, err := s.Raw().Routez(nil)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range rz.Routes {
		if !seen[r.RemoteName] {
			seen[r.RemoteName] = true
			out = append(out, r.RemoteName)
		}
	}
	return out
}

func streamMsgs(ctx context.Context, js jetstream.JetStream, name string, want uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs != want {
		return fmt.Errorf("stream %s has %d messages, want %d", name, info.State.Msgs, want)
	}
	return nil
}

// TestShutdownWhileCreatingConsumers shuts a cluster down while its servers
// are still applying consumer assignments, each of which creates a Raft
// group and opens a WAL store for it. A group created after nats-server's
// own Shutdown has torn the system account down fails to start, and
// nats-server v2.15.2 never stops its store: a state-flush goroutine and a
// reference on the process-wide access-time ticker (server/ats) stay
// behind, which TestMain's goleak check reports. Shutdown takes JetStream
// down first so that this cannot happen.
func TestShutdownWhileCreatingConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("four JetStream clusters; skipped with -short")
	}
	t.Parallel()
	for i := range 4 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			c := clustertest.StartCluster(t, 3)
			nc, err := nats.Connect(c.ClientURL(i % 3))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			// Each request in attempts of its own (see untilAnswered):
			// an election under a loaded machine can leave one unanswered.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var stream jetstream.Stream
			untilAnswered(ctx, t, "create stream SHUT", func(ctx context.Context) (err error) {
				stream, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "SHUT", Subjects: []string{"shut.>"}, Replicas: 3})
				return err
			})
			// A few consumers created, the rest still in flight when the
			// cluster shuts down (t.Cleanup).
			for k := range 3 {
				untilAnswered(ctx, t, fmt.Sprintf("create consumer c%d", k), func(ctx context.Context) error {
					_, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
						Durable: fmt.Sprintf("c%d", k), AckPolicy: jetstream.AckExplicitPolicy, Replicas: 3})
					return err
				})
			}
			for k := 3; k < 30; k++ {
				subj := fmt.Sprintf("$JS.API.CONSUMER.CREATE.SHUT.c%d", k)
				req := fmt.Appendf(nil, `{"stream_name":"SHUT","config":{"durable_name":"c%d","ack_policy":"explicit","num_replicas":3}}`, k)
				if err := nc.PublishRequest(subj, nc.NewRespInbox(), req); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			// Let the meta leader commit some of them, so that the
			// servers are applying assignments when the shutdown begins.
			time.Sleep(time.Duration(i+1) * 50 * time.Millisecond)
		})
	}
}

// attemptTimeout bounds one JetStream API request of untilAnswered.
const attemptTimeout = 5 * time.Second

// untilAnswered makes a JetStream API request (op, which must be
// idempotent, as creating a stream or consumer again with the same
// configuration is) in attempts of attemptTimeout until one is answered,
// and fails the test with the last error once ctx ends or the answer is an
// error other than "no leader".
//
// In a cluster only the JetStream meta leader answers such a request: every
// other server drops it without a word, and so does the leader if it has
// just lost its leadership; a server answers "cluster not available" only
// once the meta group has been leaderless for a while. A request made while
// the leadership moves (an election, which a stalled, loaded machine can
// set off at any time) is never answered, and nats.go does not send it
// again: one request waited on to the end of ctx fails the test at ctx's
// end however soon the new leader is there. The node's own setup retries
// its requests so (durable.trySetup, attachment.setup).
func untilAnswered(ctx context.Context, t testing.TB, what string, op func(context.Context) error) {
	t.Helper()
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			return
		}
		var apiErr *jetstream.APIError
		unanswered := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
			(errors.As(err, &apiErr) && apiErr.Code == 503)
		if !unanswered || ctx.Err() != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v; again", what, err)
	}
}
