package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: Close must
// end the node's NATS connection, embedded server and bus workers.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
