package containers

import (
	"context"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// StartT starts a cluster for a test and removes it when the test ends.
// Each container is handed to testcontainers.CleanupContainer as soon as
// it is created, before its error is checked, and Close is registered
// with tb.Cleanup; a failed start fails tb. The start is bounded by
// timeout.
func StartT(tb testing.TB, spec Spec, timeout time.Duration) *Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := start(ctx, spec, func(ctr testcontainers.Container) {
		testcontainers.CleanupContainer(tb, ctr)
	})
	if err != nil {
		tb.Fatalf("containers: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			tb.Errorf("containers: %v", err)
		}
	})
	return c
}
