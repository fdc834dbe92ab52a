package bus_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: every
// subscription worker must end on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
