package coordinator

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a
// Coordinator that Close left running, a call or timer nobody waits for.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
