// Host emulation of the one cuda_fp16.h feature normalize_occlude_gpu.cuh uses: __half and its
// round-to-nearest conversion from float (IEEE binary16, as _Float16 on the host).  See cuda_runtime.h.
#ifndef OCC_CUDA_EMULATION_FP16_H_
#define OCC_CUDA_EMULATION_FP16_H_

struct __half {
  _Float16 x;
};

inline __half __float2half_rn(float v) { return __half{static_cast<_Float16>(v)}; }

#endif  // OCC_CUDA_EMULATION_FP16_H_
