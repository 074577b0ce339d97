#!/usr/bin/env bash
# Regenerates gen/ from api/. The output is committed, so a build needs none
# of these tools. Needs: protoc (Debian: protobuf-compiler), and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
#   go install connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(go env GOPATH)/bin"
protoc -I api \
  --plugin="$bin/protoc-gen-go" --plugin="$bin/protoc-gen-connect-go" \
  --go_out=. --go_opt=module=github.com/concordtm/concord \
  --connect-go_out=. --connect-go_opt=module=github.com/concordtm/concord \
  api/concord/v1/*.proto
