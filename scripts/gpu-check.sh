#!/usr/bin/env bash
# gpu-check.sh: the CUDA backend's check on a GPU machine, one run of under about 8 minutes:
# the device, the build (make cuda with the machine's nvcc; go build/vet -tags cuda when Go is
# there), the conformance suite and host-side tests, fixture parity through package mixtral,
# compute-sanitizer's memcheck over the kernels, benchmarks (multi-sequence decode too), the serving
# benchmark (fathom serve on the GPU under fathom bench serve), PyTorch peer figures, and the
# hardware counters of the MoE kernels (ncu). Each step's outcome is recorded and the script
# goes on. The summary (markdown) goes to
# $OUT/summary.md when OUT is set, else to stdout; the full log to $OUT/gpu-check.log (or a
# temporary directory). No network is used.
#
# A GPU machine may have no Go toolchain. Then the script runs a test binary built ahead:
#
#   scripts/gpu-check.sh prepare   # here, with Go, nvcc and the fixtures: writes
#                                  # backend/cuda/lib/gpucheck.tar.xz (test binary + fixtures)
#   scripts/gpu-check.sh           # there, with backend/cuda/lib/gpucheck.tar.xz carried along
#
# The backend loads cuBLASLt at run time: the check finds the newest libcublasLt.so on the machine
# (the toolkit's, or PyTorch's wheels') and requires it (FATHOM_CUBLASLT, FATHOM_REQUIRE_CUBLASLT).
#
# Environment: GPU_CHECK_BUDGET (seconds for all steps, default 500), FATHOM_FIXTURES.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PACK=backend/cuda/lib/gpucheck.tar.xz
MODELS="tiny-mixtral-bf16 tiny-mixtral-swa-f16 tiny-code-mixtral"
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=readonly
for d in /usr/local/cuda/bin /usr/local/go/bin "$HOME/go/bin"; do
	[[ -d $d ]] && PATH=$PATH:$d
done
export PATH

if [[ ${1:-} == prepare ]]; then
	set -eo pipefail
	fx=${FATHOM_FIXTURES:-$ROOT/../shared/fixtures}
	stage=$(mktemp -d)
	trap 'rm -rf "$stage"' EXIT
	mkdir -p "$stage/gpucheck/bin" "$stage/gpucheck/fixtures/reference" "$stage/gpucheck/fixtures/models"
	make cuda
	go vet -tags cuda ./backend/cuda/
	go test -c -tags cuda -o "$stage/gpucheck/bin/cuda.test" ./backend/cuda/
	go build -tags cuda -o "$stage/gpucheck/bin/fathom" ./cmd/fathom
	for m in $MODELS; do
		cp "$fx/reference/$m.json" "$fx/reference/$m.safetensors" "$stage/gpucheck/fixtures/reference/"
		# The repository bundles tiny-code-mixtral (models/): the check links it in there.
		if [[ $m == tiny-code-mixtral && -f models/$m/config.json ]]; then continue; fi
		mkdir -p "$stage/gpucheck/fixtures/models/$m"
		# Weights and configs only: the parity tests feed token ids, not text.
		for f in "$fx/models/$m"/{config.json,generation_config.json,model.safetensors.index.json,*.safetensors}; do
			[[ -f $f ]] && cp "$f" "$stage/gpucheck/fixtures/models/$m/"
		done
	done
	tar -C "$stage" -cf - gpucheck | xz -6 -T0 >"$PACK"
	echo "wrote $PACK ($(du -h "$PACK" | cut -f1)); carry it: run(carry=[\"$PACK\"], command=\"scripts/gpu-check.sh\")"
	exit 0
fi

BUDGET=${GPU_CHECK_BUDGET:-500}
T0=$(date +%s)
WORK=$(mktemp -d /tmp/gpucheck.XXXXXX)
DEST=${OUT:-$WORK}
mkdir -p "$DEST"
LOG=$DEST/gpu-check.log
: >"$LOG"
STEPS=()

# step NAME LIMIT CMD...: runs CMD with its output in the log, within LIMIT seconds and what
# is left of the budget, and records the outcome.
step() {
	local name=$1 limit=$2 left s rc e status
	shift 2
	left=$((BUDGET - ($(date +%s) - T0)))
	if ((left < 15)); then
		STEPS+=("| $name | skipped: time budget spent | 0 s |")
		echo "== $name: skipped (time budget spent)"
		return 99
	fi
	((limit > left)) && limit=$left
	echo "===== $name ($*)" >>"$LOG"
	s=$(date +%s)
	# Through bash, so that CMD may be one of the exported functions below.
	timeout --kill-after=10 "$limit" bash -c '"$@"' bash "$@" >>"$LOG" 2>&1
	rc=$?
	e=$(($(date +%s) - s))
	case $rc in
	0) status=ok ;;
	124 | 137) status="TIMEOUT after ${limit} s" ;;
	*) status="FAILED (exit $rc)" ;;
	esac
	STEPS+=("| $name | $status | $e s |")
	echo "== $name: $status ($e s)"
	echo "===== $name: $status ($e s)" >>"$LOG"
	return $rc
}

have() { command -v "$1" >/dev/null 2>&1; }
export -f have

# find_cublaslt prints the libcublasLt.so of the highest version found, if any.
find_cublaslt() {
	{
		ls -1 /usr/local/cuda/lib64/libcublasLt.so.* /usr/local/cuda/targets/*/lib/libcublasLt.so.* \
			/usr/lib/x86_64-linux-gnu/libcublasLt.so.* 2>/dev/null
		if have python3; then
			python3 -c 'import glob, os, site
for d in site.getsitepackages():
    print("\n".join(glob.glob(os.path.join(d, "nvidia", "**", "libcublasLt.so*"), recursive=True)))' 2>/dev/null
		fi
	} | awk -F'libcublasLt[.]so[.]' 'NF == 2 && $2 != "" { print $2 " " $0 }' | sort -V | tail -1 | cut -d' ' -f2-
}
if [[ -z ${FATHOM_CUBLASLT:-} ]]; then
	FATHOM_CUBLASLT=$(find_cublaslt)
fi
if [[ -n $FATHOM_CUBLASLT ]]; then
	export FATHOM_CUBLASLT FATHOM_REQUIRE_CUBLASLT=1
fi

env_report() {
	echo "cuBLASLt: ${FATHOM_CUBLASLT:-none found}"
	nvidia-smi || echo "nvidia-smi: not available"
	echo
	if have nvcc; then nvcc --version; else echo "nvcc: not found"; fi
	if have go; then go version; else echo "go: not found"; fi
	if have python3; then python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1; fi
	if have compute-sanitizer; then echo "compute-sanitizer: $(command -v compute-sanitizer)"; fi
	nproc
}
export -f env_report
step environment 30 env_report

DEVICE=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
DEVICE=${DEVICE:-unknown (nvidia-smi failed)}

# Build: the kernels with this machine's nvcc, then the Go packages. Without Go here the
# build only shows that this nvcc compiles the kernels (the tests use the prebuilt binary), so
# it runs beside the GPU steps, in a copy of the tree, and is waited for before the benchmarks.
MAKE_PID=""
if have nvcc && have go; then
	step "make cuda" 240 make -j"$(nproc)" cuda
elif have nvcc; then
	mkdir -p "$WORK/build"
	tar --exclude=./backend/cuda/lib --exclude=./.git -cf - . | tar -C "$WORK/build" -xf -
	(cd "$WORK/build" && timeout 150 make -j"$(nproc)" cuda >"$WORK/make.log" 2>&1; echo $? >"$WORK/make.rc") &
	MAKE_PID=$!
	MAKE_T0=$(date +%s)
else
	STEPS+=("| make cuda | skipped: no nvcc | 0 s |")
fi
BIN=""
BIN_NOTE=""
if have go; then
	if step "go build -tags cuda ./..." 150 go build -tags cuda ./... &&
		step "go vet -tags cuda ./backend/cuda/" 90 go vet -tags cuda ./backend/cuda/ &&
		step "go test -c -tags cuda" 120 go test -c -tags cuda -o "$WORK/cuda.test" ./backend/cuda/; then
		BIN=$WORK/cuda.test
		BIN_NOTE="built here with this machine's CUDA"
	fi
else
	STEPS+=("| go build -tags cuda ./... | skipped: no Go toolchain | 0 s |")
fi
if [[ -f $PACK ]]; then
	step "unpack $PACK" 60 tar -C "$WORK" -xJf "$PACK"
	if [[ -z $BIN && -x $WORK/gpucheck/bin/cuda.test ]]; then
		BIN=$WORK/gpucheck/bin/cuda.test
		BIN_NOTE="prebuilt by 'scripts/gpu-check.sh prepare' (kernels from the build machine's nvcc)"
	fi
fi

# Fixtures: FATHOM_FIXTURES, ../shared/fixtures, or the unpacked ones (with the repository's
# tiny-code-mixtral).
FX=${FATHOM_FIXTURES:-}
if [[ -z $FX && -d ../shared/fixtures/reference ]]; then FX=$(cd ../shared/fixtures && pwd); fi
if [[ -z $FX && -d $WORK/gpucheck/fixtures/reference ]]; then
	FX=$WORK/gpucheck/fixtures
	if [[ ! -d $FX/models/tiny-code-mixtral && -f models/tiny-code-mixtral/config.json ]]; then
		ln -s "$ROOT/models/tiny-code-mixtral" "$FX/models/tiny-code-mixtral"
	fi
fi

# finish_make waits for the build beside the tests (before anything is timed) and records it.
finish_make() {
	[[ -n $MAKE_PID ]] || return 0
	wait "$MAKE_PID"
	MAKE_PID=""
	local rc status
	rc=$(cat "$WORK/make.rc" 2>/dev/null || echo "?")
	{
		echo "===== make cuda with this machine's nvcc (beside the tests): exit $rc"
		cat "$WORK/make.log"
	} >>"$LOG"
	if [[ $rc == 0 ]]; then status=ok; else status="FAILED (exit $rc)"; fi
	STEPS+=("| make cuda (this machine's nvcc, beside the tests) | $status | $(($(date +%s) - MAKE_T0)) s (wall, overlapped) |")
}

if [[ -n $BIN ]]; then
	export FATHOM_REQUIRE_CUDA=1
	[[ -n $FX ]] && export FATHOM_FIXTURES=$FX
	run_tests() { (cd backend/cuda && "$BIN" -test.count=1 -test.v "$@"); }
	export -f run_tests
	export BIN
	step "tests: conformance and unit" 150 run_tests -test.run '^Test' -test.skip '^TestFixture'
	if [[ -n $FX ]]; then
		step "tests: fixture parity and perplexity" 120 run_tests -test.run '^TestFixture'
	else
		STEPS+=("| tests: fixture parity | skipped: no fixtures (set FATHOM_FIXTURES or carry $PACK) | 0 s |")
	fi
	if have compute-sanitizer; then
		step "compute-sanitizer memcheck" 90 bash -c "cd backend/cuda && compute-sanitizer --tool memcheck --error-exitcode 9 \
			'$BIN' -test.count=1 -test.v -test.run 'TestConformance/bf16$/(Embed|RMSNorm|MatMul|AddGather|RoPE|MoE|ResidualNormer|StepRecorder)$|TestStep$|TestBLASPaths/exact$'"
	fi
	finish_make
	step "benchmarks" 180 run_tests -test.run '^$' -test.bench . -test.skip 'BenchmarkDecodeSequences' -test.benchtime 300ms
	# 16 decode tokens per sequence after each request's 512-token prompt.
	step "multi-sequence decode" 100 run_tests -test.run '^$' -test.bench 'BenchmarkDecodeSequences' -test.benchtime 1x
else
	STEPS+=("| tests and benchmarks | skipped: no test binary (no Go here and no $PACK) | 0 s |")
fi

# The serving benchmark: fathom serve on the GPU with the bundled model, measured by fathom
# bench serve (multi-turn chats, then 64 streams at once).
FATHOM=""
if have go && [[ $BIN == "$WORK/cuda.test" ]]; then
	step "go build -tags cuda ./cmd/fathom" 120 go build -tags cuda -o "$WORK/fathom" ./cmd/fathom && FATHOM=$WORK/fathom
elif [[ -x $WORK/gpucheck/bin/fathom ]]; then
	FATHOM=$WORK/gpucheck/bin/fathom
fi
if [[ -n $FATHOM ]]; then
	serving() {
		"$FATHOM" serve --model models/tiny-code-mixtral --cuda 0 --addr 127.0.0.1:18990 >"$WORK/serve.log" 2>&1 &
		local pid=$! i
		for i in $(seq 60); do
			(exec 3<>/dev/tcp/127.0.0.1/18990) 2>/dev/null && break
			sleep 1
		done
		cat "$WORK/serve.log"
		"$FATHOM" bench serve --url http://127.0.0.1:18990/v1 --users 16 --turns 4 --first-words 300 --max-tokens 64
		"$FATHOM" bench serve --url http://127.0.0.1:18990/v1 --users 64 --turns 1 --first-words 20 --max-tokens 128
		kill "$pid"
		wait "$pid"
	}
	export -f serving
	export FATHOM WORK
	step "serving benchmark (fathom serve on the GPU)" 120 serving
else
	STEPS+=("| serving benchmark | skipped: no fathom built with -tags cuda | 0 s |")
fi

if have python3; then
	peer() { PYTHONUNBUFFERED=1 python3 scripts/gpu_peer.py | tee "$WORK/peer.md"; }
	export -f peer
	export WORK
	step "PyTorch peer" 200 peer
else
	STEPS+=("| PyTorch peer | skipped: no python3 | 0 s |")
fi

# Hardware counters of the MoE kernels at one token and 2048 tokens, in both activation modes
# (speed of light: the share of DRAM bandwidth and of compute each kernel reaches).
if [[ -n $BIN ]] && have ncu; then
	profile() {
		cd backend/cuda && ncu --clock-control none --section SpeedOfLight --section Occupancy \
			-k 'regex:moe_|gemm|convert_rows|nvjet|xmma|cutlass' --launch-count 24 \
			"$BIN" -test.run '^$' -test.bench 'BenchmarkMoE/bf16(-bf16act)?/tokens=(1|2048)$' -test.benchtime 1x
	}
	export -f profile
	step "ncu: MoE kernels" 90 profile
fi

finish_make

# Summary.
summary() {
	echo "# fathom CUDA backend check"
	echo
	echo "- device: $DEVICE"
	echo "- test binary: ${BIN_NOTE:-none}"
	echo "- fixtures: ${FX:-none}"
	echo "- cuBLASLt: ${FATHOM_CUBLASLT:-none found}; the backend says: $(grep -m1 -o 'cuda device 0: .*' "$LOG" || echo '?')"
	echo "- total: $(($(date +%s) - T0)) s; full log: $LOG"
	echo
	echo "| step | result | time |"
	echo "| --- | --- | --- |"
	printf '%s\n' "${STEPS[@]}"
	echo
	echo "## Tests"
	echo
	local pass fail skip
	pass=$(grep -c -- '--- PASS' "$LOG")
	fail=$(grep -c -- '--- FAIL' "$LOG")
	skip=$(grep -c -- '--- SKIP' "$LOG")
	echo "$pass passed, $fail failed, $skip skipped (tests and subtests)."
	if ((fail > 0)); then
		echo
		echo '```'
		grep -E -- '--- FAIL|\.go:[0-9]+: ' "$LOG" | grep -v -E 'relative error [0-9.e+-]+$|worst logit error|: cuda device' | head -80
		echo '```'
	fi
	echo
	echo "## Fixture parity (worst relative logit error)"
	echo
	echo '```'
	grep -E 'worst logit error|perplexity [0-9]|^=== RUN   TestFixture[A-Za-z]*/[^/]*$' "$LOG" | sed 's/^ *//' | head -80
	echo '```'
	echo
	echo "## Benchmarks"
	echo
	echo "| benchmark | time/op | figures |"
	echo "| --- | --- | --- |"
	# Only the benchmarks step's lines (the profiler's runs print benchmark lines too).
	{
		sed -n '/^===== benchmarks (/,/^===== benchmarks: /p' "$LOG"
		sed -n '/^===== multi-sequence decode (/,/^===== multi-sequence decode: /p' "$LOG"
	} | grep -E '^Benchmark.* ns/op' | awk '{
		name = $1; sub(/-[0-9]+$/, "", name); t = $3 " " $4; f = "";
		for (i = 5; i + 1 <= NF; i += 2) f = f $i " " $(i + 1) "; ";
		print "| " name " | " t " | " f " |" }'
	echo
	echo "## PyTorch peer"
	echo
	if [[ -s $WORK/peer.md ]]; then cat "$WORK/peer.md"; else echo "(no peer figures)"; fi
}
summary >"$WORK/summary.md"
if [[ -n ${OUT:-} ]]; then
	cp "$WORK/summary.md" "$OUT/summary.md"
fi
cat "$WORK/summary.md"
