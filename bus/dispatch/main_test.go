package dispatch_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: a handler,
// a subscription worker, an httptest server or an HTTP connection.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
