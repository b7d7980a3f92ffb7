// The plugin's DALI-free CPU kernels (dali_ops/csrc/<operator>/<operator>_cpu.*) behind a C ABI for
// ctypes, so tests/dali_ops/test_cpu_kernels.py checks them without DALI.  One sample per call, as the DALI
// operators call them from their thread pools; working memory is the call's own.  float16 output is
// _Float16 (IEEE binary16, round to nearest even): the template the operator instantiates with DALI's
// float16 computes the same float32 values and converts them with DALI's conversion instead.

#include <cstdint>
#include <vector>

#include "box_search/box_search_cpu.h"
#include "fine_grained_saliency/fine_grained_saliency_cpu.h"
#include "normalize_occlude/normal_table.h"
#include "normalize_occlude/normalize_occlude_cpu.h"
#include "paste_boxes/paste_boxes_cpu.h"

namespace k = occlusion::kernels;

extern "C" {

void cpu_box_search(const k::SearchParams *params, const float *map, int H, int W, const int32_t *draws, int tries,
                    int32_t *box) {
  k::SearchScratch scratch;
  k::BoxSearchCpu(*params, map, H, W, draws, tries, scratch, box);
}

void cpu_paste_boxes(const void *in, void *out, const void *partner, int elem_bytes, int chw, int H, int W,
                     int C, const int32_t *boxes, int K) {
  k::PasteBoxesCpu(in, out, partner, elem_bytes, chw != 0, H, W, C, boxes, K);
}

/// half != 0: `out` holds binary16 values (_Float16), else float32.  `color` / `partner_color`: the row's /
/// the partner's 21 colour parameters (null: none), their mean colour taken from their own pixels.
/// fill_mode: 0 const, 1 rand, 2 pixel (with `seed`).
void cpu_normalize_occlude(const uint8_t *in, int mirror, const uint8_t *partner, int partner_mirror,
                           float blend, const int32_t *boxes, int K, int H, int W, int C, const float *mean,
                           const float *inv_std, const float *fill, int fill_mode, uint32_t seed,
                           const float *color, const float *partner_color, int half, void *out) {
  const k::NormalizeChannels ch{mean, inv_std, fill};
  std::vector<k::ClippedBox> spans;
  k::ColorAffine own_affine, partner_affine;
  auto affine = [&](const uint8_t *img, const float *params, k::ColorAffine &a) -> const k::ColorAffine * {
    if (!params) return nullptr;
    uint64_t sums[3];
    k::ChannelSums(img, int64_t(H) * W, sums);
    k::ColorAffineOf(params, sums, int64_t(H) * W, a);
    return &a;
  };
  const k::RowSource own{in, mirror != 0, affine(in, color, own_affine)};
  const k::RowSource other{partner, partner_mirror != 0,
                           partner ? affine(partner, partner_color, partner_affine) : nullptr};
  k::EraseFill noise;
  noise.mode = fill_mode;
  noise.seed = seed;
  noise.table = k::NormalQuantiles();
  if (half)
    k::NormalizeOccludeCpu<_Float16>(own, partner ? &other : nullptr, blend, boxes, K, H, W, C, ch, noise,
                                     static_cast<_Float16 *>(out), spans);
  else
    k::NormalizeOccludeCpu<float>(own, partner ? &other : nullptr, blend, boxes, K, H, W, C, ch, noise,
                                  static_cast<float *>(out), spans);
}

/// The noise table (kNormalTableSize floats) into `out`.
void cpu_normal_table(float *out) {
  const float *t = k::NormalQuantiles();
  for (int i = 0; i < k::kNormalTableSize; i++) out[i] = t[i];
}

void cpu_fine_grained_saliency_u8(const uint8_t *rgb, int H, int W, int max_side, int mirror, float *out) {
  occlusion::fgs::CpuScratch scratch;
  occlusion::fgs::FineGrainedSaliencyCpu(rgb, H, W, max_side, mirror != 0, out, scratch);
}

void cpu_fine_grained_saliency_f32(const float *image, int H, int W, int mirror, float *out) {
  occlusion::fgs::CpuScratch scratch;
  occlusion::fgs::FineGrainedSaliencyCpu(image, H, W, mirror != 0, out, scratch);
}

}  // extern "C"
