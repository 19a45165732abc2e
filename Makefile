# CUDA kernels of backend/cuda. `make cuda` builds backend/cuda/lib/libfathomcuda.a and copies
# the CUDA runtime (libcudart_static.a) beside it, which `go build -tags cuda` links; the rest
# of the module needs no Makefile.
#
# The toolkit: CUDA_HOME (for instance /usr/local/cuda, or /usr for Debian's
# nvidia-cuda-toolkit), by default the one of the nvcc on PATH, else /usr/local/cuda. NVCC and
# CUDART name the compiler and the static runtime library where they lie elsewhere:
#
#	make cuda CUDA_HOME=/opt/cuda-12.4

NVCC_ON_PATH := $(shell command -v nvcc 2>/dev/null)
CUDA_HOME ?= $(if $(NVCC_ON_PATH),$(patsubst %/bin/nvcc,%,$(realpath $(NVCC_ON_PATH))),/usr/local/cuda)
NVCC ?= $(if $(wildcard $(CUDA_HOME)/bin/nvcc),$(CUDA_HOME)/bin/nvcc,$(or $(NVCC_ON_PATH),$(CUDA_HOME)/bin/nvcc))
CUDART ?= $(firstword $(wildcard $(addsuffix /libcudart_static.a,$(CUDA_HOME)/lib64 \
	$(CUDA_HOME)/targets/x86_64-linux/lib $(CUDA_HOME)/targets/sbsa-linux/lib \
	$(CUDA_HOME)/lib/x86_64-linux-gnu $(CUDA_HOME)/lib/aarch64-linux-gnu $(CUDA_HOME)/lib)))
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCCFLAGS ?= -O3 -std=c++17 -Xcompiler -fPIC -Xcompiler -Wall $(CUDA_GENCODE)

CUDA_DIR := backend/cuda/kernels
CUDA_LIB := backend/cuda/lib/libfathomcuda.a
CUDA_RT := backend/cuda/lib/libcudart_static.a
CUDA_SRC := $(wildcard $(CUDA_DIR)/*.cu)
CUDA_HDR := $(wildcard $(CUDA_DIR)/*.h) $(wildcard $(CUDA_DIR)/*.cuh)
CUDA_OBJ := $(patsubst $(CUDA_DIR)/%.cu,backend/cuda/lib/obj/%.o,$(CUDA_SRC))

.PHONY: cuda cuda-clean

cuda: $(CUDA_LIB) $(CUDA_RT)

$(CUDA_RT): $(CUDART)
	@test -n "$(CUDART)" || { echo "libcudart_static.a not found under CUDA_HOME=$(CUDA_HOME): set CUDA_HOME or CUDART" >&2; exit 1; }
	@mkdir -p $(dir $@)
	cp $(CUDART) $@

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
