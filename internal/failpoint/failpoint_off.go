//go:build !failpoints

package failpoint

// Enabled reports whether this binary was built with the failpoint hook.
const Enabled = false

// Arm does nothing without the failpoints build tag.
func Arm(string) {}

// Hit does nothing without the failpoints build tag.
func Hit(string) {}
