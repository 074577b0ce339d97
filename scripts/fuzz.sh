#!/usr/bin/env bash
# scripts/fuzz.sh — run every Fuzz target in the module for a while each,
# one after the other (make fuzz; CI runs it after the tests).
#
# Usage: scripts/fuzz.sh [fuzztime]      (default 10s, or $FUZZTIME)
# The targets are found in the source (every `func FuzzXxx` in a _test.go
# file), so that listing them compiles nothing. Every target runs; a
# failing input is saved under the package's testdata/fuzz/<target>/ (keep
# it: it becomes a regression test) and the run fails at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
time=${1:-${FUZZTIME:-10s}}

targets=$(grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' . |
	sed -E 's|^(.*)/[^/]+_test\.go:func (Fuzz.*)$|\1 \2|' | sort -u)
[[ -n $targets ]] || { echo "fuzz: no Fuzz targets found" >&2; exit 1; }

n=$(wc -l <<<"$targets")
i=0
failed=()
while read -r dir target; do
	i=$((i + 1))
	printf '==> [%d/%d] %s %s (%s)\n' "$i" "$n" "$dir" "$target" "$time"
	# Minimizing each new interesting input may take a minute by default,
	# the whole budget of a short run; 5s leaves the time to fuzzing.
	if ! "${GO:-go}" test -run='^$' -fuzz="^${target}\$" -fuzztime="$time" -fuzzminimizetime=5s "$dir" </dev/null; then
		failed+=("$dir $target")
	fi
done <<<"$targets"
if ((${#failed[@]})); then
	printf 'fuzz: %d of %d targets failed:\n' "${#failed[@]}" "$n" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all $n targets passed"
