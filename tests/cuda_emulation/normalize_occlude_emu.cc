// normalize_occlude_gpu.cuh's kernels on the host (see cuda_runtime.h here): a C entry point for ctypes that
// builds the operator's NormDesc array and runs the two launches LaunchNormalizeOcclude makes.
#include <vector>

#include "normalize_occlude/normal_table.h"
#include "normalize_occlude/normalize_occlude_gpu.cuh"

namespace k = occlusion::kernels;

/// n rows of H x W x 3 uint8 `images[i]` into CHW `out[i]` (float32, or binary16 when `half`).  boxes[i]:
/// K[i] x 4 int32 (null when K[i] = 0); index: one int32 per row (null: erase, no partner); color: n x 21
/// floats (null: no colour transform).  fill_mode 0 / 1 / 2: const / rand / pixel with seeds[i].
extern "C" int emu_normalize_occlude(const uint8_t *const *images, void *const *out, const int32_t *const *boxes,
                                     const int *K, const int32_t *index, const int *mirror, const float *blend,
                                     const uint32_t *seeds, const float *color, int n, int H, int W,
                                     const float *mean, const float *inv_std, const float *fill, int fill_mode,
                                     int half) {
  std::vector<k::NormDesc> descs(n);
  std::vector<k::ColorAffine> affine(n);
  for (int i = 0; i < n; i++) {
    k::NormDesc &d = descs[i];
    d.in = images[i];
    d.out = out[i];
    d.boxes = boxes[i];
    d.K = K[i];
    d.index = index ? index + i : nullptr;
    d.H = H;
    d.W = W;
    d.C = 3;
    d.mirror = mirror[i];
    d.blend = blend[i];
    d.noise_seed = seeds[i];
    if (color) {
      d.color_params = color + 21 * i;
      d.color = &affine[i];
    }
  }
  const k::NormDesc *dp = descs.data();
  if (color) occ_emu::Launch(dim3(n), dim3(k::detail::kNormThreads), [&] { k::detail::ColorAffineKernel(dp); });
  const float *table = k::NormalQuantiles();
  const dim3 grid(k::detail::NormBlocks(int64_t(H) * W), n);
  if (half)
    occ_emu::Launch(grid, dim3(k::detail::kNormThreads), [&] {
      k::detail::NormalizeOccludeKernel<__half>(dp, n, mean, inv_std, fill, fill_mode, table);
    });
  else
    occ_emu::Launch(grid, dim3(k::detail::kNormThreads), [&] {
      k::detail::NormalizeOccludeKernel<float>(dp, n, mean, inv_std, fill, fill_mode, table);
    });
  return 0;
}
