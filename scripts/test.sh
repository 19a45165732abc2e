#!/usr/bin/env bash
# The project's test command: formatting, vet, the race-enabled test suite, the same suite with
# the pure-Go kernels only (build tag purego), and, where a C++20 compiler is present, the CUDA
# kernels on a CPU emulation of the CUDA runtime (a subset of the CUDA backend's tests). CI runs
# exactly this.
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

# The CUDA kernels compiled as C++ against backend/cuda/emu's emulation of the runtime: one host
# thread per CUDA thread, so only a subset runs, about a minute on two idle cores (many times
# that on a busy machine, hence the timeout): the GEMM, GEMV and MoE kernels through the
# conformance suite, the fused residual norm and the error paths.
cxx=${CXX:-g++}
if [[ $(go env CGO_ENABLED) == 1 ]] && command -v "$cxx" >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 &&
	echo '#include <barrier>' | "$cxx" -std=c++20 -x c++ -fsyntax-only - 2>/dev/null; then
	backend/cuda/emu/build.sh
	go vet -tags 'cuda cudaemu' ./backend/cuda/...
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	FATHOM_REQUIRE_CUDA=1 go test -count=1 -timeout 30m -v -tags 'cuda cudaemu' \
		-run '^(TestConformance|TestErrors)$/^bf16$/^(MatMul|MoE|ResidualNormer)$' ./backend/cuda/ >"$log" 2>&1 ||
		{ grep -v '^=== \|^    options.go' "$log" >&2; exit 1; }
	# A renamed test would match nothing and pass: check that each part ran.
	for t in TestConformance/bf16/MatMul TestConformance/bf16/MoE TestConformance/bf16/ResidualNormer TestErrors; do
		if ! grep -q -- "--- PASS: $t " "$log"; then
			echo "CUDA emulation: $t did not run" >&2
			exit 1
		fi
	done
	tail -1 "$log"
else
	echo "no C++20 compiler: the CUDA emulation tests are skipped" >&2
fi
