package cluster_test

import (
	"context"
	"fmt"
	"log"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
)

// Example runs one fast-mode node with an embedded nats-server on a free
// port: what its bus publishes goes over NATS and comes back to its
// subscriptions, as it would reach every other node's.
func Example() {
	ctx := context.Background()
	node, err := cluster.Start(ctx, cluster.Config{Name: "node-1", Mode: cluster.Fast, Listen: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	_, err = node.Bus().Subscribe("order.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		fmt.Printf("%s from %s via NATS (published by %s)\n", s.Type, s.Source, s.Extensions[cluster.ExtensionNode])
		close(done)
		return nil
	}))
	if err != nil {
		log.Fatal(err)
	}
	sig, _ := bus.NewSignal("order.created", "/shop", map[string]string{"id": "A-1"})
	if err := node.Bus().Publish(ctx, sig); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := node.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: order.created from /shop via NATS (published by node-1)
}

// Example_durableSubscription names a subscription on a durable node, so
// that it keeps its place in the stream: after a restart of the node
// (same Name and DataDir), subscribing again under the same name resumes
// where it stopped. A group (bus.WithGroup) shares each signal among its
// members across the cluster instead.
func Example_durableSubscription() {
	ctx := context.Background()
	node, err := cluster.Start(ctx, cluster.Config{Name: "node-1", Listen: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	audit := bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		fmt.Println("audit:", s.Type)
		close(done)
		return nil
	})
	if _, err := node.Bus().Subscribe("order.*", audit, bus.WithSubscriptionName("audit")); err != nil {
		log.Fatal(err)
	}
	sig, _ := bus.NewSignal("order.paid", "/shop", nil)
	if err := node.Bus().Publish(ctx, sig); err != nil { // returns once stored
		log.Fatal(err)
	}
	<-done
	if err := node.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: audit: order.paid
}
