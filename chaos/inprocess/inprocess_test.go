package inprocess_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/chaos/chaostest"
	"github.com/signalbus/signalbus/chaos/inprocess"
	"github.com/signalbus/signalbus/cluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startCluster(t *testing.T, mode cluster.Mode) *inprocess.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := inprocess.Start(ctx, inprocess.Config{Mode: mode, Dir: t.TempDir(), Configure: func(_ string, cfg *cluster.Config) {
		// Partitions show within seconds, not the default's.
		cfg.HeartbeatInterval = 250 * time.Millisecond
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// TestConformance: the in-process backend passes the suite every backend
// passes.
func TestConformance(t *testing.T) {
	c := startCluster(t, cluster.Durable)
	chaostest.Run(t, chaostest.Backend{Cluster: c, WaitReady: c.WaitReady})
}
