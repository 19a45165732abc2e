#!/usr/bin/env bash
# The project's test command: formatting, vet, the race-enabled test suite, and the same suite
# with the pure-Go kernels only (build tag purego). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l .)
if [[ -n "$unformatted" ]]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags purego ./...
go test -race -count=1 ./...
go test -tags purego -count=1 ./...
