// paste_boxes on the GPU, DALI-free: the whole batch in one launch, one thread per pixel
// (grid-stride over the sample's H x W, blockIdx.y = sample).  The thread tests the pixel against
// the sample's boxes (read from device memory, so boxes searched on the GPU never visit the host)
// and writes every channel from the image or the partner.  T is any 1/2/4-byte element type
// (uint8, half, float): values are only copied.

#ifndef OCCLUSION_PASTE_BOXES_PASTE_BOXES_GPU_CUH_
#define OCCLUSION_PASTE_BOXES_PASTE_BOXES_GPU_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "common/boxes.h"

namespace occlusion {
namespace kernels {

template <typename T>
struct PasteDesc {
  const T *in;
  T *out;
  const int32_t *boxes;   // K x 4, device
  const int32_t *index;   // partner row (device scalar); null: the sample's own row
  int K, H, W, C;
};

namespace detail {

constexpr int kPasteThreads = 256;
constexpr int kPasteMaxBlocksPerSample = 256;

template <typename T>
__global__ void PasteBoxesKernel(const PasteDesc<T> *descs, const T *const *partners,
                                 int num_partners, bool chw) {
  const PasteDesc<T> d = descs[blockIdx.y];
  int row = d.index ? *d.index : static_cast<int>(blockIdx.y);
  if (row < 0 || row >= num_partners) row = -1;  // cannot raise on the device: no paste
  const T *src = row < 0 ? nullptr : partners[row];
  const int64_t plane = static_cast<int64_t>(d.H) * d.W;
  for (int64_t p = blockIdx.x * blockDim.x + threadIdx.x; p < plane;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int y = static_cast<int>(p / d.W), x = static_cast<int>(p - static_cast<int64_t>(y) * d.W);
    const bool inside = src != nullptr && InAnyBox(d.boxes, d.K, y, x);
    for (int c = 0; c < d.C; c++) {
      const int64_t i = chw ? c * plane + p : p * d.C + c;
      d.out[i] = inside ? src[i] : d.in[i];
    }
  }
}

}  // namespace detail

/// One launch: `descs` (device, n), `partners` (device array of num_partners pointers),
/// max_plane = the largest H * W of the batch.
template <typename T>
cudaError_t LaunchPasteBoxes(const PasteDesc<T> *descs, int n, int64_t max_plane,
                             const T *const *partners, int num_partners, bool chw,
                             cudaStream_t stream) {
  if (n <= 0 || max_plane <= 0) return cudaSuccess;
  const int64_t want = (max_plane + detail::kPasteThreads - 1) / detail::kPasteThreads;
  const int blocks = static_cast<int>(want < detail::kPasteMaxBlocksPerSample ? want
                                                                              : detail::kPasteMaxBlocksPerSample);
  detail::PasteBoxesKernel<T><<<dim3(blocks, n), detail::kPasteThreads, 0, stream>>>(
      descs, partners, num_partners, chw);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_PASTE_BOXES_PASTE_BOXES_GPU_CUH_
