//go:build !failpoints

package failpoint

import "testing"

// TestReleaseBuildIgnoresFailpoints: without the failpoints build tag,
// an armed point does not kill the process (were it to, this test binary
// would die of SIGKILL).
func TestReleaseBuildIgnoresFailpoints(t *testing.T) {
	if Enabled {
		t.Fatal("Enabled without the failpoints tag")
	}
	Arm(AfterAccept + "," + AfterDecision + "@1")
	Hit(AfterAccept)
	Hit(AfterDecision)
}
