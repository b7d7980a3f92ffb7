// normalize_occlude on the GPU, DALI-free: crop_mirror_normalize's HWC uint8 -> CHW float step
// (its arithmetic, bit for bit: (v - mean) * inv_std in float32) fused with erasing the row's boxes
// (fill) or pasting the partner row's normalised pixels (its own mirror), and with a partner and
// blend w != 1, own * w + partner * (1 - w) outside the boxes (MixUp).  The whole batch in one
// launch, one thread per output pixel (blockIdx.y = sample), writing all channels.  Output T: float
// or __half (round to nearest, as DALI's float -> float16 conversion).

#ifndef OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_GPU_CUH_
#define OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_GPU_CUH_

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/boxes.h"

namespace occlusion {
namespace kernels {

struct NormDesc {
  const uint8_t *in;
  void *out;
  const int32_t *boxes;  // K x 4, device
  const int32_t *index;  // partner row (device scalar); null: erase
  int K, H, W, C;
  int mirror;
  float blend = 1.f;  // weight of the own pixels outside the boxes when there is a partner (MixUp)
};

namespace detail {

constexpr int kNormThreads = 256;
constexpr int kNormMaxBlocksPerSample = 256;

template <typename T>
__device__ inline T FromFloat(float v);
template <>
__device__ inline float FromFloat<float>(float v) { return v; }
template <>
__device__ inline __half FromFloat<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__global__ void NormalizeOccludeKernel(const NormDesc *descs, int n, const float *mean,
                                       const float *inv_std, const float *fill) {
  const NormDesc d = descs[blockIdx.y];
  const NormDesc *partner = nullptr;
  if (d.index) {
    int row = *d.index;
    partner = row >= 0 && row < n ? &descs[row] : nullptr;  // cannot raise on the device
  }
  T *out = static_cast<T *>(d.out);
  const int64_t plane = static_cast<int64_t>(d.H) * d.W;
  for (int64_t p = blockIdx.x * blockDim.x + threadIdx.x; p < plane;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int y = static_cast<int>(p / d.W), x = static_cast<int>(p - int64_t(y) * d.W);
    const bool inside = (!d.index || partner) && InAnyBox(d.boxes, d.K, y, x);
    const bool erase = inside && !partner;
    const uint8_t *src = inside && partner ? partner->in : d.in;
    const int sx = (inside && partner ? partner->mirror : d.mirror) ? d.W - 1 - x : x;
    const uint8_t *px = src + (int64_t(y) * d.W + sx) * d.C;
    const bool mix = partner && !inside && d.blend != 1.f;
    const uint8_t *ppx = mix ? partner->in + (int64_t(y) * d.W + (partner->mirror ? d.W - 1 - x : x)) * d.C
                             : nullptr;
    for (int c = 0; c < d.C; c++) {
      // __fmul_rn: crop_mirror_normalize rounds the difference and the product separately
      float v = erase ? fill[c] : __fmul_rn(__fsub_rn(static_cast<float>(px[c]), mean[c]), inv_std[c]);
      if (mix) {  // the CPU's own * w + partner * (1 - w), each step rounded (no FMA)
        const float b = __fmul_rn(__fsub_rn(static_cast<float>(ppx[c]), mean[c]), inv_std[c]);
        v = __fadd_rn(__fmul_rn(v, d.blend), __fmul_rn(b, __fsub_rn(1.f, d.blend)));
      }
      out[c * plane + p] = FromFloat<T>(v);
    }
  }
}

}  // namespace detail

/// One launch: descs (device, n), mean / inv_std / fill (device, C floats each), max_plane = the
/// largest H * W of the batch.
template <typename T>
cudaError_t LaunchNormalizeOcclude(const NormDesc *descs, int n, int64_t max_plane, const float *mean,
                                   const float *inv_std, const float *fill, cudaStream_t stream) {
  if (n <= 0 || max_plane <= 0) return cudaSuccess;
  const int64_t want = (max_plane + detail::kNormThreads - 1) / detail::kNormThreads;
  const int blocks = static_cast<int>(want < detail::kNormMaxBlocksPerSample ? want
                                                                            : detail::kNormMaxBlocksPerSample);
  detail::NormalizeOccludeKernel<T><<<dim3(blocks, n), detail::kNormThreads, 0, stream>>>(
      descs, n, mean, inv_std, fill);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_GPU_CUH_
