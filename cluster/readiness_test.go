package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReadinessOfAHealthyDurableNode(t *testing.T) {
	n := startNode(t, Config{Name: "ready1", NoSync: true})
	deadline := time.Now().Add(20 * time.Second)
	for {
		checks := n.Readiness(context.Background())
		if len(checks) != 3 {
			t.Fatalf("Readiness = %v, want the nats, stream and membership checks", checks)
		}
		if checks[ReadyNATS] == nil && checks[ReadyStream] == nil && checks[ReadyMembership] == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("durable node never ready: %v", checks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNotReadyWhileSubscriptionConsumersAreMade: until the consumer of a
// named subscription exists, what is published passes it by, so the
// node is not ready. (The setup is held here by counting one more, as a
// subscription being attached does.)
func TestNotReadyWhileSubscriptionConsumersAreMade(t *testing.T) {
	n := startNode(t, Config{Name: "ready3", NoSync: true})
	waitDurableReady(t, n)
	n.dur.setups.add()
	err := n.Readiness(context.Background())[ReadyStream]
	if !errors.Is(err, ErrStreamNotReady) || !strings.Contains(err.Error(), "consumers of 1 subscriptions") {
		t.Errorf("with a consumer being made, stream check = %v, want ErrStreamNotReady naming it", err)
	}
	n.dur.setups.done()
	if err := n.Readiness(context.Background())[ReadyStream]; err != nil {
		t.Errorf("once made, stream check = %v", err)
	}
}

func TestReadinessOfAFastNodeHasNoStreamCheck(t *testing.T) {
	n := startNode(t, Config{Name: "ready2", Mode: Fast})
	checks := n.Readiness(context.Background())
	if _, ok := checks[ReadyStream]; ok || checks[ReadyNATS] != nil || checks[ReadyMembership] != nil {
		t.Fatalf("Readiness = %v, want nats and membership ready and no stream check", checks)
	}
}

// TestReadinessWhenNATSIsGone: with its external server down, a durable
// node reports NATS and the stream not ready, each with its sentinel.
func TestReadinessWhenNATSIsGone(t *testing.T) {
	s := startNATS(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, Config{Name: "ready3", NATSURL: s.ClientURL(), NoSync: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// With NATS gone Close cannot flush: it returns its ctx's error, which
	// is not what this test is about.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = n.Close(ctx)
	}()
	for n.Readiness(ctx)[ReadyStream] != nil {
		if ctx.Err() != nil {
			t.Fatalf("never ready: %v", n.Readiness(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		checks := n.Readiness(ctx)
		cancel()
		if errors.Is(checks[ReadyNATS], ErrNotConnected) && errors.Is(checks[ReadyStream], ErrStreamNotReady) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Readiness with NATS down = %v", checks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadinessWhenPartitioned: the last of three expected nodes is
// partitioned once the other two are gone.
func TestReadinessWhenPartitioned(t *testing.T) {
	nodes := startMembershipCluster(t, 3, 3, 40, nil)
	for _, n := range nodes {
		waitMembers(t, n, map[string]MemberState{"n0": Up, "n1": Up, "n2": Up})
	}
	if err := nodes[0].Readiness(context.Background())[ReadyMembership]; err != nil {
		t.Fatalf("membership of a whole cluster: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := nodes[0].Readiness(context.Background())[ReadyMembership]
		if errors.Is(err, ErrPartitioned) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("membership of a node alone of three: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
