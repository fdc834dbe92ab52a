package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/cluster/clustertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.NoCallbacksAfterClientClose())
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// eventually polls f every 25 ms until it returns nil, failing after d.
func eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %v: %v", what, d, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// publish publishes one message with a Nats-Msg-Id, so a retry after a
// timed-out attempt that was in fact stored is deduplicated by the stream.
func publish(ctx context.Context, js jetstream.JetStream, subj, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := js.Publish(ctx, subj, []byte(id), jetstream.WithMsgID(id))
	return err
}

// mustPublish retries publish until it is acknowledged (a new stream leader
// may have to be elected first: 4–9 s of Raft election timeout).
func mustPublish(t testing.TB, js jetstream.JetStream, subj, id string) {
	t.Helper()
	eventually(t, 30*time.Second, "publish "+id, func() error { return publish(t.Context(), js, subj, id) })
}

func createR3(t testing.TB, js jetstream.JetStream, name string) {
	t.Helper()
	eventually(t, 30*time.Second, "create stream "+name, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:     name,
			Subjects: []string{strings.ToLower(name) + ".>"},
			Replicas: 3,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // an earlier attempt that timed out did create it
		}
		return err
	})
}

func leaderMsgs(t testing.TB, js jetstream.JetStream, name string) (uint64, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

func TestIsolateAndHeal(t *testing.T) {
	t.Parallel()
	c := clustertest.StartCluster(t, 3)
	// Full mesh. Polled, not read once: right after the mesh forms,
	// nats-server may still close a duplicate route (both sides dialled)
	// and redial, so one read can catch a server with a route missing.
	c.WaitForRoutes(t)
	js := make([]jetstream.JetStream, 3)
	for i := range 3 {
		_, js[i] = connect(t, c.ClientURL(i))
	}

	createR3(t, js[0], "EV")
	for k := range 5 {
		mustPublish(t, js[2], "ev.a", fmt.Sprintf("before-%d", k))
	}
	c.WaitForStreamMsgs(t, "EV", 5)

	// Isolate server 2: it loses every route; 0 and 1 keep theirs.
	c.Isolate(2)
	c.WaitForRoutes(t)
	if got := c.Peers(2); len(got) != 0 {
		t.Fatalf("isolated server 2 routes to %v", got)
	}
	if got := c.Server(2).Raw().NumRoutes(); got != 0 {
		t.Fatalf("isolated server 2 NumRoutes() = %d, want 0", got)
	}
	// The majority side accepts writes (once it has a stream leader).
	for k := range 5 {
		mustPublish(t, js[k%2], "ev.a", fmt.Sprintf("during-%d", k))
	}
	c.WaitForStreamMsgs(t, "EV", 10, 0, 1)
	// The minority side cannot get a write acknowledged.
	if err := publish(t.Context(), js[2], "ev.a", "minority"); err == nil {
		t.Fatal("a publish through isolated server 2 was acknowledged")
	}
	if st, err := c.StreamState(2, "EV"); err != nil || st.Msgs != 5 {
		t.Fatalf("isolated server 2's replica: %+v, %v; want the 5 messages from before", st, err)
	}

	// Heal: server 2 rejoins and catches up.
	c.Heal()
	c.WaitForRoutes(t)
	c.WaitForStreamMsgs(t, "EV", 10)
	eventually(t, 30*time.Second, "stream info through server 2", func() error {
		n, err := leaderMsgs(t, js[2], "EV")
		if err == nil && n != 10 {
			err = fmt.Errorf("%d messages, want 10", n)
		}
		return err
	})
	mustPublish(t, js[2], "ev.a", "after")
	c.WaitForStreamMsgs(t, "EV", 11)
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	c := clustertest.StartCluster(t, 3)
	_, js0 := connect(t, c.ClientURL(0))
	createR3(t, js0, "KEEP")
	const n = 20
	for k := range n {
		mustPublish(t, js0, "keep.x", fmt.Sprintf("m-%02d", k))
	}
	c.WaitForStreamMsgs(t, "KEEP", n)

	url1 := c.ClientURL(1)
	// Below the kernel's ephemeral range (32768 and up by default), where
	// no outgoing connection can take the port while the server is down.
	if u, err := url.Parse(url1); err != nil {
		t.Fatal(err)
	} else if port, _ := strconv.Atoi(u.Port()); port < 20000 || port >= 32000 {
		t.Errorf("ClientURL(1) = %s, want a port in 20000–31999", url1)
	}
	c.Restart(1)
	if c.ClientURL(1) != url1 {
		t.Fatalf("ClientURL(1) changed across restart: %s, was %s", c.ClientURL(1), url1)
	}
	c.WaitForRoutes(t)
	c.WaitForJetStream(t)
	c.WaitForStreamMsgs(t, "KEEP", n)

	// Read everything back through the restarted server, in order.
	_, js1 := connect(t, url1)
	var cons jetstream.Consumer
	eventually(t, 30*time.Second, "ordered consumer through server 1", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var err error
		cons, err = js1.OrderedConsumer(ctx, "KEEP", jetstream.OrderedConsumerConfig{})
		return err
	})
	var got []string
	eventually(t, 30*time.Second, "fetch through server 1", func() error {
		batch, err := cons.Fetch(n-len(got), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			got = append(got, string(m.Data()))
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d messages (%v)", len(got), n, batch.Error())
		}
		return nil
	})
	for k := range n {
		if want := fmt.Sprintf("m-%02d", k); got[k] != want {
			t.Fatalf("message %d = %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
}

func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	c := clustertest.StartCluster(t, 3)
	_, js1 := connect(t, c.ClientURL(1))
	createR3(t, js1, "CRASH")
	mustPublish(t, js1, "crash.x", "one")

	c.Kill(0)
	if c.Server(0) != nil {
		t.Fatal("Server(0) != nil after Kill")
	}
	c.WaitForRoutes(t) // 1 and 2 route to each other only
	if got := c.Peers(1); len(got) != 1 || got[0] != c.Name(2) {
		t.Fatalf("server 1 routes to %v after killing 0, want [%s]", got, c.Name(2))
	}
	mustPublish(t, js1, "crash.x", "two")
	c.WaitForStreamMsgs(t, "CRASH", 2, 1, 2)

	c.Restart(0)
	c.WaitForRoutes(t)
	c.WaitForStreamMsgs(t, "CRASH", 2)
}

func TestSlowAndBlackhole(t *testing.T) {
	t.Parallel()
	c := clustertest.StartCluster(t, 3, clustertest.WithoutJetStream())
	nc0, _ := connect(t, c.ClientURL(0))
	nc1, _ := connect(t, c.ClientURL(1))
	sub, err := nc1.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc1.Flush(); err != nil {
		t.Fatal(err)
	}
	request := func() error {
		_, err := nc0.Request("echo", []byte("hi"), time.Second)
		return err
	}
	eventually(t, 10*time.Second, "request 0→1", request) // interest has propagated

	// 40 ms each way: a request and its reply cross the link once each.
	const d = 40 * time.Millisecond
	c.Slow(0, 1, d)
	start := time.Now()
	if err := request(); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 2*d {
		t.Fatalf("request over a link slowed by %v took %v, want >= %v", d, rtt, 2*d)
	}
	c.Slow(0, 1, 0)

	// A black-holed link stays open until the servers' pings give up on it.
	c.Blackhole(0, 1)
	c.WaitForRoutes(t)
	if got := c.Peers(0); len(got) != 1 || got[0] != c.Name(2) {
		t.Fatalf("server 0 routes to %v with link 0–1 black-holed, want [%s]", got, c.Name(2))
	}
	c.Heal()
	c.WaitForRoutes(t)
	eventually(t, 10*time.Second, "request 0→1 after heal", request)
}

func TestPartition(t *testing.T) {
	t.Parallel()
	c := clustertest.StartCluster(t, 4, clustertest.WithoutJetStream())
	conns := make([]*nats.Conn, 4)
	for i := range conns {
		conns[i], _ = connect(t, c.ClientURL(i))
	}
	got := make([]chan string, 4)
	for i, nc := range conns {
		got[i] = make(chan string, 16)
		if _, err := nc.Subscribe("news", func(m *nats.Msg) { got[i] <- string(m.Data) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// receivedBy publishes from server 0 until every server in want has
	// received a message (subscription interest takes a moment to spread).
	receivedBy := func(want []int, tag string) {
		t.Helper()
		eventually(t, 10*time.Second, "delivery of "+tag, func() error {
			if err := conns[0].Publish("news", []byte(tag)); err != nil {
				return err
			}
			for _, i := range want {
				if !waitTag(got[i], tag) {
					return fmt.Errorf("server %d's subscriber did not get %q", i, tag)
				}
			}
			return nil
		})
	}
	receivedBy([]int{0, 1, 2, 3}, "all")

	c.Partition([]int{0, 1}, []int{2, 3})
	c.WaitForRoutes(t)
	for i, want := range [][]string{{"s1"}, {"s0"}, {"s3"}, {"s2"}} {
		if p := c.Peers(i); len(p) != 1 || p[0] != want[0] {
			t.Fatalf("server %d routes to %v in partition {0,1}|{2,3}, want %v", i, p, want)
		}
	}
	receivedBy([]int{0, 1}, "majority")
	for _, i := range []int{2, 3} {
		for len(got[i]) > 0 {
			if m := <-got[i]; m == "majority" {
				t.Fatalf("server %d's subscriber got %q across the partition", i, m)
			}
		}
	}

	c.Heal()
	c.WaitForRoutes(t)
	receivedBy([]int{0, 1, 2, 3}, "healed")
}

// waitTag reads ch until it yields tag (true) or 100 ms pass without it.
func waitTag(ch <-chan string, tag string) bool {
	timeout := time.After(100 * time.Millisecond)
	for {
		select {
		case m := <-ch:
			if m == tag {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

func TestSingleServer(t *testing.T) {
	t.Parallel()
	c := clustertest.StartCluster(t, 1)
	if got := c.Peers(0); len(got) != 0 {
		t.Fatalf("a lone server routes to %v", got)
	}
	_, js := connect(t, c.ClientURL(0))
	eventually(t, 30*time.Second, "create R1 stream", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ONE", Subjects: []string{"one.>"}})
		return err
	})
	mustPublish(t, js, "one.x", "a")
	c.Restart(0)
	c.WaitForJetStream(t)
	c.WaitForStreamMsgs(t, "ONE", 1)
}
