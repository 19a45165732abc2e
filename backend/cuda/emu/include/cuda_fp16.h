// cuda_fp16.h for the CPU emulation (emu_core.h): float16 storage and round-to-nearest-even
// conversions, as the device's (overflow to infinity, subnormals kept, NaNs stay NaN).
#pragma once
#include "emu_core.h"

struct __half {
	uint16_t bits;
};

inline float __half2float(__half v) {
	uint32_t sign = (uint32_t)(v.bits & 0x8000u) << 16, exp = (v.bits >> 10) & 0x1fu, man = v.bits & 0x3ffu, u;
	if (exp == 0x1f) {
		u = sign | 0x7f800000u | man << 13;
	} else if (exp != 0) {
		u = sign | (exp + 112) << 23 | man << 13;
	} else if (man == 0) {
		u = sign;
	} else { // subnormal: normalise
		int e = -1;
		do {
			man <<= 1;
			e++;
		} while (!(man & 0x400u));
		u = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ffu) << 13;
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

inline __half __float2half(float f) {
	uint32_t b;
	memcpy(&b, &f, 4);
	uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
	uint32_t a = b & 0x7fffffffu;
	if (a > 0x7f800000u) return __half{(uint16_t)(sign | 0x7e00u)}; // NaN
	if (a >= 0x477ff000u) return __half{(uint16_t)(sign | 0x7c00u)}; // rounds past 65504: infinity
	if (a >= 0x38800000u) {                                           // normal half
		uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
		return __half{(uint16_t)(sign | ((r - 0x38000000u) >> 13))};
	}
	if (a < 0x33000000u) return __half{sign}; // below half the smallest subnormal
	// Subnormal half: shift the full mantissa into place, rounding to nearest even.
	uint32_t man = (a & 0x7fffffu) | 0x800000u;
	int shift = 126 - (int)(a >> 23); // 14 .. 24
	uint32_t q = man >> shift, rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1u))) q++;
	return __half{(uint16_t)(sign | q)};
}

inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
