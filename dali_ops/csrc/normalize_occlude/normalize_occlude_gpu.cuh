// normalize_occlude on the GPU, DALI-free: crop_mirror_normalize's HWC uint8 -> CHW float step
// (its arithmetic, bit for bit: (v - mean) * inv_std in float32) fused with erasing the row's boxes
// (fill, or Random Erasing's noise) or pasting the partner row's normalised pixels (its own mirror),
// and with a partner and blend w != 1, own * w + partner * (1 - w) outside the boxes (MixUp).  The
// whole batch in one launch, one thread per output pixel (blockIdx.y = sample), writing all channels.
// Rows with a colour transform (ColorJitter + Lighting) first get their mean colour from a launch
// with one block per row (exact integer sums).  The per-pixel rules are normalize_occlude_math.h's,
// which the CPU kernel shares.  Output T: float or __half (round to nearest, as DALI's float ->
// float16 conversion).

#ifndef OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_GPU_CUH_
#define OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_GPU_CUH_

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/boxes.h"
#include "normalize_occlude/normalize_occlude_math.h"

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
  uint32_t noise_seed = 0;               // the row's Random Erasing noise (fill modes rand / pixel)
  const float *color_params = nullptr;   // device, kColorParams floats; null: no colour transform
  ColorAffine *color = nullptr;          // device, written by ColorAffineKernel from color_params
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

/// One block per row: a row with colour parameters gets its ColorAffine (its mean colour from exact
/// channel sums, reduced in shared memory).  blockDim.x == kNormThreads.
__global__ void ColorAffineKernel(const NormDesc *descs) {
  const NormDesc d = descs[blockIdx.x];
  if (!d.color_params) return;  // the whole block returns: no barrier is left waiting
  __shared__ uint64_t part[3][kNormThreads];
  uint64_t s0 = 0, s1 = 0, s2 = 0;
  const int64_t plane = static_cast<int64_t>(d.H) * d.W;
  for (int64_t p = threadIdx.x; p < plane; p += blockDim.x) {
    const uint8_t *px = d.in + 3 * p;
    s0 += px[0];
    s1 += px[1];
    s2 += px[2];
  }
  part[0][threadIdx.x] = s0;
  part[1][threadIdx.x] = s1;
  part[2][threadIdx.x] = s2;
  __syncthreads();
  for (int stride = kNormThreads / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride)
      for (int c = 0; c < 3; c++) part[c][threadIdx.x] += part[c][threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const uint64_t sums[3] = {part[0][0], part[1][0], part[2][0]};
    ColorAffineOf(d.color_params, sums, plane, *d.color);
  }
}

template <typename T>
__global__ void NormalizeOccludeKernel(const NormDesc *descs, int n, const float *mean,
                                       const float *inv_std, const float *fill, int fill_mode,
                                       const float *table) {
  const NormDesc d = descs[blockIdx.y];
  const NormDesc *partner = nullptr;
  if (d.index) {
    int row = *d.index;
    partner = row >= 0 && row < n ? &descs[row] : nullptr;  // cannot raise on the device
  }
  T *out = static_cast<T *>(d.out);
  EraseFill noise;
  noise.mode = fill_mode;
  noise.seed = d.noise_seed;
  noise.table = table;
  const int64_t plane = static_cast<int64_t>(d.H) * d.W;
  for (int64_t p = blockIdx.x * blockDim.x + threadIdx.x; p < plane;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int y = static_cast<int>(p / d.W), x = static_cast<int>(p - int64_t(y) * d.W);
    const bool inside = (!d.index || partner) && InAnyBox(d.boxes, d.K, y, x);
    const bool erase = inside && !partner;
    const NormDesc &s = inside && partner ? *partner : d;  // whose pixel the output starts from
    const uint8_t *px = s.in + (int64_t(y) * d.W + (s.mirror ? d.W - 1 - x : x)) * d.C;
    const bool mix = partner && !inside && d.blend != 1.f;
    const uint8_t *ppx = mix ? partner->in + (int64_t(y) * d.W + (partner->mirror ? d.W - 1 - x : x)) * d.C
                             : nullptr;
    for (int c = 0; c < d.C; c++) {
      float v = erase ? ErasedValue(noise, fill, d.boxes, d.K, d.H, d.W, d.C, y, x, c)
                      : SourceValue(px, s.color, c, mean[c], inv_std[c]);
      if (mix) {  // the CPU's own * w + partner * (1 - w), each step rounded (no FMA)
        const float b = SourceValue(ppx, partner->color, c, mean[c], inv_std[c]);
        v = AddRn(MulRn(v, d.blend), MulRn(b, SubRn(1.f, d.blend)));
      }
      out[c * plane + p] = FromFloat<T>(v);
    }
  }
}

/// Blocks per sample for the largest plane of the batch.
inline int NormBlocks(int64_t max_plane) {
  const int64_t want = (max_plane + kNormThreads - 1) / kNormThreads;
  return static_cast<int>(want < kNormMaxBlocksPerSample ? want : kNormMaxBlocksPerSample);
}

}  // namespace detail

#ifndef OCC_KERNEL_EMULATION  // tests/cuda_emulation runs the kernels on the host, without <<<>>>
/// descs (device, n), mean / inv_std / fill (device, C floats each), max_plane = the largest H * W of
/// the batch; `table` (device, kNormalTableSize floats) for the noise fill modes; `any_color`: some row
/// has colour parameters (one more launch first, for their mean colour).
template <typename T>
cudaError_t LaunchNormalizeOcclude(const NormDesc *descs, int n, int64_t max_plane, const float *mean,
                                   const float *inv_std, const float *fill, int fill_mode, const float *table,
                                   bool any_color, cudaStream_t stream) {
  if (n <= 0 || max_plane <= 0) return cudaSuccess;
  if (any_color) detail::ColorAffineKernel<<<n, detail::kNormThreads, 0, stream>>>(descs);
  detail::NormalizeOccludeKernel<T><<<dim3(detail::NormBlocks(max_plane), n), detail::kNormThreads, 0, stream>>>(
      descs, n, mean, inv_std, fill, fill_mode, table);
  return cudaGetLastError();
}
#endif

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_GPU_CUH_
