// cuda_runtime.h for the CPU emulation (emu_core.h): the runtime calls fathom's kernels
// make, on host memory and one emulated device.
#pragma once
#include "emu_core.h"

enum cudaError_t {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInsufficientDriver = 35,
	cudaErrorNoDevice = 100,
	cudaErrorStreamCaptureUnsupported = 900,
	cudaErrorStreamCaptureInvalidated = 901,
};
typedef void *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum { cudaStreamNonBlocking = 1 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize, cudaFuncAttributePreferredSharedMemoryCarveout };
struct cudaDeviceProp {
	char name[256];
	size_t totalGlobalMem;
	int multiProcessorCount, major, minor;
};

// EMU_SMS is the emulated device's multiprocessor count (launch planning depends on it).
#ifndef EMU_SMS
#define EMU_SMS 4
#endif

inline const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated CUDA error" : "no error"; }
inline cudaError_t cudaGetDeviceCount(int *n) { return *n = 1, cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
	snprintf(p->name, sizeof p->name, "CPU emulation");
	p->totalGlobalMem = 1ull << 34;
	p->multiProcessorCount = EMU_SMS;
	p->major = 9;
	p->minor = 0;
	return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr, int) { return *v = EMU_SMS, cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, int) { return *s = (void *)1, cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
// capturing fails a stream operation the emulation cannot record (copies, memsets,
// synchronisation), as the device refuses some of them; the recording is then invalid.
inline bool capturing_fails() {
	if (!emu::capture) return false;
	emu::capture->invalid = true;
	return true;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
	return capturing_fails() ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
inline cudaError_t cudaMalloc(void **p, size_t n) {
	*p = aligned_alloc(256, (n + 255) / 256 * 256);
	if (!*p) return cudaErrorMemoryAllocation;
	memset(*p, 0xcd, n);
	return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) { return free(p), cudaSuccess; }
inline cudaError_t cudaMemset(void *p, int v, size_t n) { return memset(p, v, n), cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
	if (capturing_fails()) return cudaErrorStreamCaptureUnsupported;
	return memset(p, v, n), cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) {
	if (capturing_fails()) return cudaErrorStreamCaptureUnsupported;
	return memmove(d, s, n), cudaSuccess;
}

// Stream capture and graphs (see emu::Graph). A capture made invalid by a refused operation
// ends without a graph.
typedef emu::Graph *cudaGraph_t;
typedef emu::Graph *cudaGraphExec_t;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed };
inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
	if (emu::capture) return cudaErrorStreamCaptureUnsupported;
	emu::capture = new emu::Graph;
	return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
	emu::Graph *c = emu::capture;
	emu::capture = nullptr;
	*g = nullptr;
	if (!c || c->invalid) {
		delete c;
		return cudaErrorStreamCaptureInvalidated;
	}
	*g = c;
	return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
	*e = new emu::Graph(*g);
	return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) { return delete g, cudaSuccess; }
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { return delete e, cudaSuccess; }
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
	for (auto &l : e->launches) l();
	return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { return *f = *t = 1ull << 34, cudaSuccess; }
template <typename F> inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
