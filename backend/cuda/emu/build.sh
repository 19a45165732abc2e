#!/usr/bin/env bash
# Builds backend/cuda/lib/emu/libfathomcuda.a: the CUDA kernels compiled as C++ against a CPU
# emulation of the CUDA runtime, WMMA and warp intrinsics (include/). With it the CUDA
# backend's tests run on a machine without a GPU, slowly (one host thread per CUDA thread):
#
#   backend/cuda/emu/build.sh
#   FATHOM_REQUIRE_CUDA=1 go test -tags 'cuda cudaemu' -run 'TestConformance/bf16/(MatMul|MoE)' ./backend/cuda/
#
# The emulation checks indexing, bounds, tiling, synchronisation and numerics; it says nothing
# about speed, and little about races between blocks (they run one after another).
set -euo pipefail
cd "$(dirname "$0")"
out=../lib/emu
rm -rf "$out"
mkdir -p "$out/src"
python3 transform.py ../kernels "$out/src"
# One host thread per CUDA thread: the routing kernel runs with smaller blocks here.
for f in "$out"/src/*.cpp; do
	${CXX:-g++} -std=c++20 -O2 -fPIC -w -DFC_ROUTE_THREADS=128 -DFC_EMU -Iinclude -I"$out/src" -c "$f" -o "${f%.cpp}.o"
done
ar rcs "$out/libfathomcuda.a" "$out"/src/*.o
echo "built $out/libfathomcuda.a"
