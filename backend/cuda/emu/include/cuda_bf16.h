// cuda_bf16.h for the CPU emulation (emu_core.h): bfloat16 storage and round-to-nearest-even
// conversions, as the device's.
#pragma once
#include "emu_core.h"

struct __nv_bfloat16 {
	uint16_t bits;
};
struct __nv_bfloat162 {
	__nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 v) {
	uint32_t u = (uint32_t)v.bits << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
	uint32_t b;
	memcpy(&b, &f, 4);
	if ((b & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((b >> 16) | 0x40)};
	return __nv_bfloat16{(uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16)};
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 v) { return v.bits; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
	return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return float2{__bfloat162float(v.x), __bfloat162float(v.y)}; }
