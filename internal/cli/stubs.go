package cli

// Demo runs `concord demo`.
func Demo(args []string, env Env) error { return usageError("demo: not built yet") }

// Bench runs `concord bench`.
func Bench(args []string, env Env) error { return usageError("bench: not built yet") }
