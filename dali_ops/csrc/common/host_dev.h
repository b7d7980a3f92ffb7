// OCC_HOST_DEV: the DALI-free inline functions shared by the CPU and CUDA kernels (common/boxes.h,
// fine_grained_saliency/fine_grained_saliency_math.h) are __host__ __device__ under nvcc and plain
// functions under g++ (the CPU kernels, tests/cpu_kernels, tests/cuda_emulation).

#ifndef OCCLUSION_COMMON_HOST_DEV_H_
#define OCCLUSION_COMMON_HOST_DEV_H_

#ifdef __CUDACC__
#define OCC_HOST_DEV __host__ __device__
#else
#define OCC_HOST_DEV
#endif

#endif  // OCCLUSION_COMMON_HOST_DEV_H_
