// Package api holds the end-to-end tests of the coordinator's public
// surface. They build the real concord binary, start `concord serve` on a
// loopback port (package testenv/proc), and drive it the ways its users
// do: the Go SDK (Connect and gRPC), raw HTTP/JSON, a standard grpc-go
// client, and the `concord tx` command, against in-test HTTP participants
// that record every call they receive.
//
// The package has no non-test code; run it with
//
//	go test -race ./e2e/api
package api
