package telemetry

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: Shutdown
// and Close must stop every exporter, profiler and server they started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
