# CUDA kernels of backend/cuda. `make cuda` builds backend/cuda/lib/libfathomcuda.a, which
# `go build -tags cuda` links; the rest of the module needs no Makefile.

NVCC ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCCFLAGS ?= -O3 -std=c++17 -Xcompiler -fPIC -Xcompiler -Wall $(CUDA_GENCODE)

CUDA_DIR := backend/cuda/kernels
CUDA_LIB := backend/cuda/lib/libfathomcuda.a
CUDA_SRC := $(wildcard $(CUDA_DIR)/*.cu)
CUDA_HDR := $(wildcard $(CUDA_DIR)/*.h) $(wildcard $(CUDA_DIR)/*.cuh)
CUDA_OBJ := $(patsubst $(CUDA_DIR)/%.cu,backend/cuda/lib/obj/%.o,$(CUDA_SRC))

.PHONY: cuda cuda-clean

cuda: $(CUDA_LIB)

$(CUDA_LIB): $(CUDA_OBJ)
	rm -f $@
	ar rcs $@ $^

backend/cuda/lib/obj/%.o: $(CUDA_DIR)/%.cu $(CUDA_HDR)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# The library, its objects, and what backend/cuda/emu/build.sh and scripts/gpu-check.sh
# prepare put beside them.
cuda-clean:
	rm -rf backend/cuda/lib
