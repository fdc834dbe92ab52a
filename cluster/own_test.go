package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// TestOwnSignalsDoNotComeBackThroughNATS: a fast node's subscriptions get
// its own signals, in order, stamped exactly as another node decodes
// them, while its signal connection receives none of them back.
func TestOwnSignalsDoNotComeBackThroughNATS(t *testing.T) {
	eachEncoding(t, func(t *testing.T, enc Encoding) {
		c := startFastClusterEncoded(t, 2, enc)
		local, remote := &inbox{}, &inbox{}
		if _, err := c[0].Bus().Subscribe("own.*", local); err != nil {
			t.Fatal(err)
		}
		if _, err := c[1].Bus().Subscribe("own.*", remote); err != nil {
			t.Fatal(err)
		}
		before := c[0].sigs.Stats().InMsgs
		const total = 300
		batch := make([]bus.Signal, 0, 30)
		for i := range total {
			batch = append(batch, bus.Signal{Type: "own.x", Source: "/n0", Subject: strconv.Itoa(i),
				Data: []byte(`{"i":` + strconv.Itoa(i) + `}`), DataContentType: "application/json",
				Extensions: map[string]any{"tenant": "acme"}})
			if len(batch) == cap(batch) {
				if err := c[0].Bus().Publish(context.Background(), batch...); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		mine, theirs := local.wait(t, total), remote.wait(t, total)
		checkSequence(t, mine, 0, total)
		checkSequence(t, theirs, 0, total)
		for i := range mine {
			m, r := mine[i], theirs[i]
			if m.ID != r.ID || m.Type != r.Type || m.Source != r.Source || string(m.Data) != string(r.Data) ||
				m.DataContentType != r.DataContentType || !m.Time.Equal(r.Time) {
				t.Fatalf("signal %d: local %+v, remote %+v", i, m, r)
			}
			for _, name := range []string{ExtensionNode, ExtensionInstance, ExtensionSequence, "tenant"} {
				if m.Extensions[name] != r.Extensions[name] || m.Extensions[name] == nil {
					t.Fatalf("signal %d: %s is %#v here, %#v on the other node", i, name, m.Extensions[name], r.Extensions[name])
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // an echo would arrive right behind
		if got := c[0].sigs.Stats().InMsgs - before; got != 0 {
			t.Errorf("the publishing node's signal connection received %d messages; its own should not come back", got)
		}
		if got := len(local.wait(t, total)); got != total {
			t.Errorf("the publishing node's subscription got %d signals, want exactly %d", got, total)
		}
		if st := c[0].Stats(); st.LocalLost != 0 || st.Lost != 0 {
			t.Errorf("stats %+v, want nothing lost", st)
		}
	})
}

// startFastClusterEncoded is startFastCluster with an encoding.
func startFastClusterEncoded(t *testing.T, size int, enc Encoding) []*Node {
	t.Helper()
	nodes := []*Node{startNode(t, Config{Name: "n0", Mode: Fast, Encoding: enc, ClusterListen: "127.0.0.1:0"})}
	seed := nodes[0].server.ClusterURL()
	for i := 1; i < size; i++ {
		nodes = append(nodes, startNode(t, Config{Name: "n" + strconv.Itoa(i), Mode: Fast, Encoding: enc,
			ClusterListen: "127.0.0.1:0", Routes: []string{seed}}))
	}
	waitConnected(t, nodes)
	return nodes
}

// TestHandlerMayPublishMoreThanItsQueueHolds: a handler that publishes
// signals its own subscription matches, more than that subscription's
// queue holds (Block), does not wait for itself: the node delivers its
// own signals from a goroutine of its own, never inside Publish.
func TestHandlerMayPublishMoreThanItsQueueHolds(t *testing.T) {
	n := startNode(t, Config{Name: "loop", Mode: Fast})
	const fanOut = 20
	box := &inbox{}
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if s.Subject == "root" {
			children := make([]bus.Signal, fanOut)
			for i := range children {
				children[i] = bus.Signal{Type: "loop.x", Source: "/loop", Subject: strconv.Itoa(i)}
			}
			publishCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := n.Bus().Publish(publishCtx, children...); err != nil {
				t.Errorf("Publish from the handler: %v", err)
			}
			return nil
		}
		return box.Handle(ctx, s)
	})
	if _, err := n.Bus().Subscribe("loop.*", handler, bus.WithQueueSize(1)); err != nil {
		t.Fatal(err)
	}
	if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "loop.x", Source: "/loop", Subject: "root"}); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, box.wait(t, fanOut), 0, fanOut)
}

// TestOwnDeliveryDropsAndCountsPastItsLimit: when a node's own
// subscriptions fall further behind than the own-delivery queue holds,
// what does not fit is dropped and counted in Stats.LocalLost, never
// lost silently, and what is delivered stays in order.
func TestOwnDeliveryDropsAndCountsPastItsLimit(t *testing.T) {
	n := startNode(t, Config{Name: "slow", Mode: Fast})
	n.own.mu.Lock()
	n.own.limit = 10
	n.own.mu.Unlock()
	release := make(chan struct{})
	box := &inbox{}
	handler := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		<-release
		return box.Handle(ctx, s)
	})
	if _, err := n.Bus().Subscribe("slow.*", handler, bus.WithQueueSize(1)); err != nil {
		t.Fatal(err)
	}
	const total = 100
	for i := range total {
		if err := n.Bus().Publish(context.Background(), bus.Signal{Type: "slow.x", Source: "/slow", Subject: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	lost := n.Stats().LocalLost
	if lost == 0 {
		t.Fatalf("no signal counted lost, though %d waited for a handler that took none and the limit is 10", total)
	}
	close(release)
	got := box.wait(t, total-int(lost))
	time.Sleep(50 * time.Millisecond)
	got = box.wait(t, len(got))
	if int64(len(got))+lost != total {
		t.Fatalf("delivered %d and counted %d lost, of %d published", len(got), lost, total)
	}
	last := -1
	for _, s := range got {
		i, _ := strconv.Atoi(s.Subject)
		if i <= last {
			t.Fatalf("#%d after #%d: out of order", i, last)
		}
		last = i
	}
}
