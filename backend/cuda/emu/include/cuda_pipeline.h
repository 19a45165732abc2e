// cuda_pipeline.h for the CPU emulation (emu_core.h): asynchronous copies to shared memory run
// at once, so commits and waits have nothing to do.
#pragma once
#include "emu_core.h"

inline void __pipeline_memcpy_async(void *dst, const void *src, size_t size, size_t zfill = 0) {
	if (zfill > size) emu::fail("__pipeline_memcpy_async: zfill > size");
	memcpy(dst, src, size - zfill);
	memset((unsigned char *)dst + (size - zfill), 0, zfill);
}
inline void __pipeline_commit() {}
inline void __pipeline_wait_prior(size_t) {}
