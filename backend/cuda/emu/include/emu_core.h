// emu_core.h: a CPU emulation of the part of CUDA that fathom's kernels use, so that the
// kernels' indexing, tiling, synchronisation and numerics can be tested on a machine without
// a GPU (see build.sh). It is a test tool, not a backend: it is slow, and it checks semantics
// only as far as noted here.
//
//   - A launch runs synchronously (or is recorded during a stream capture). Blocks run one after another, so a kernel's __shared__
//     variables become function statics shared by the block's threads. Blocks must be 1-D.
//   - Every CUDA thread is a std::thread. __syncthreads is a barrier over the block; warp
//     collectives (__shfl*_sync, __ballot_sync, __syncwarp) are barriers over the warp. Their
//     masks are ignored: every live lane of the warp must take part, as the kernels ensure.
//   - A thread that returns leaves the barriers (as on sm_70 and later).
//   - Device memory is host memory; cudaMalloc fills it with garbage (0xcd bytes), so code
//     that reads memory it never wrote shows it.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
	unsigned int x, y, z;
	dim3(unsigned int a = 1, unsigned int b = 1, unsigned int c = 1) : x(a), y(b), z(c) {}
};
struct uint4 {
	unsigned int x, y, z, w;
};
struct uint2 {
	unsigned int x, y;
};
struct float4 {
	float x, y, z, w;
};
struct float2 {
	float x, y;
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

namespace emu {

[[noreturn]] inline void fail(const char *what) {
	fprintf(stderr, "cuda emulation: %s (block %u,%u,%u thread %u)\n", what, blockIdx.x, blockIdx.y, blockIdx.z,
		threadIdx.x);
	abort();
}

struct Warp {
	std::barrier<> bar;
	int lanes;
	uint32_t slot[32];
	explicit Warp(int n) : bar(n), lanes(n) {}
};

struct Block {
	std::barrier<> bar;
	std::vector<std::unique_ptr<Warp>> warps;
	std::vector<unsigned char> dyn; // dynamic shared memory
	explicit Block(int n) : bar(n) {}
};

inline thread_local Block *block;
inline thread_local int lane, warp_id;

// dynamic_smem returns the block's dynamic shared memory, 128-byte aligned as on the device.
inline void *dynamic_smem() {
	uintptr_t p = (uintptr_t)block->dyn.data();
	return (void *)((p + 127) & ~(uintptr_t)127);
}
inline Warp &warp() { return *block->warps[warp_id]; }

struct Cfg {
	dim3 grid, block;
	size_t smem;
};
inline Cfg cfg(dim3 g, dim3 b, size_t smem = 0, void * = nullptr) { return Cfg{g, b, smem}; }

// A stream capture (cudaStreamBeginCapture) collects launches instead of running them; a
// graph replays them in order.
struct Graph {
	std::vector<std::function<void()>> launches;
	bool invalid = false; // an operation that cannot be recorded was issued
};
inline Graph *capture; // the recording in progress, if any

void run(Cfg c, const std::function<void()> &kernel);

// launch runs kernel (a call of the kernel with its arguments, captured by value) over the
// grid, or records it while a capture is in progress.
inline void launch(Cfg c, const std::function<void()> &kernel) {
	if (capture) {
		capture->launches.push_back([c, kernel] { run(c, kernel); });
		return;
	}
	run(c, kernel);
}

// run runs a launch: the block's threads are made once and run the blocks one after another,
// meeting at a gate between them.
inline void run(Cfg c, const std::function<void()> &kernel) {
	if (c.block.y != 1 || c.block.z != 1 || c.block.x == 0 || c.block.x > 1024) fail("launch: block shape");
	const int nt = (int)c.block.x;
	std::barrier<> gate(nt + 1);
	std::unique_ptr<Block> current;
	dim3 index;
	bool done = false;
	std::vector<std::thread> threads;
	threads.reserve(nt);
	for (int t = 0; t < nt; t++)
		threads.emplace_back([&, t] {
			threadIdx = dim3(t, 0, 0);
			blockDim = c.block;
			gridDim = c.grid;
			lane = t % 32;
			warp_id = t / 32;
			for (;;) {
				gate.arrive_and_wait(); // the next block is set up, or the grid is done
				if (done) return;
				blockIdx = index;
				block = current.get();
				kernel();
				block->warps[warp_id]->bar.arrive_and_drop();
				block->bar.arrive_and_drop();
				gate.arrive_and_wait(); // every thread has finished the block
			}
		});
	for (unsigned z = 0; z < c.grid.z; z++)
		for (unsigned y = 0; y < c.grid.y; y++)
			for (unsigned x = 0; x < c.grid.x; x++) {
				current.reset(new Block(nt));
				current->dyn.assign(c.smem + 128, 0xcd);
				for (int w = 0; w * 32 < nt; w++) current->warps.emplace_back(new Warp(std::min(32, nt - w * 32)));
				index = dim3(x, y, z);
				gate.arrive_and_wait();
				gate.arrive_and_wait();
			}
	done = true;
	gate.arrive_and_wait();
	for (auto &th : threads) th.join();
}

// exchange publishes each lane's 32-bit value and returns lane src's.
inline uint32_t exchange(uint32_t v, int src) {
	Warp &w = warp();
	if (src < 0 || src >= w.lanes) fail("shuffle from a lane outside the warp");
	w.slot[lane] = v;
	w.bar.arrive_and_wait();
	uint32_t r = w.slot[src];
	w.bar.arrive_and_wait();
	return r;
}

} // namespace emu

inline void __syncthreads() { emu::block->bar.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp().bar.arrive_and_wait(); }

template <typename T> inline T __shfl_sync(unsigned, T v, int src) {
	static_assert(sizeof(T) == 4, "32-bit shuffles only");
	uint32_t b;
	memcpy(&b, &v, 4);
	b = emu::exchange(b, src);
	memcpy(&v, &b, 4);
	return v;
}
template <typename T> inline T __shfl_xor_sync(unsigned m, T v, int o) { return __shfl_sync(m, v, emu::lane ^ o); }

inline unsigned __ballot_sync(unsigned, bool p) {
	emu::Warp &w = emu::warp();
	w.slot[emu::lane] = p;
	w.bar.arrive_and_wait();
	unsigned m = 0;
	for (int i = 0; i < w.lanes; i++)
		if (w.slot[i]) m |= 1u << i;
	w.bar.arrive_and_wait();
	return m;
}

template <typename T> inline T __ldcg(const T *p) { return *(const volatile T *)p; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline void __trap() { emu::fail("__trap"); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __float2int_rn(float v) { return (int)nearbyintf(v); }
inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
inline float __uint_as_float(unsigned int u) {
	float f;
	memcpy(&f, &u, 4);
	return f;
}
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return uint4{x, y, z, w}; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
