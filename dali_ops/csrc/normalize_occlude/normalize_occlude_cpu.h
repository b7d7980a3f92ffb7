// normalize_occlude on the CPU, DALI-free: crop_mirror_normalize's HWC uint8 -> CHW float step fused
// with the occlusion of a sample's boxes (erase with a fill, or paste from a partner row), one sample
// on the calling thread.  The DALI operator (normalize_occlude.cc) runs one sample per thread of its
// pool; tests/cpu_kernels builds this kernel alone against tests/oracles.py.
//
//   out[c, y, x] = (float(img[y, x', c]) - mean[c]) * (1 / std[c])        outside the boxes
//                = fill[c]                                                 inside (erase)
//                = (float(partner[y, x'', c]) - mean[c]) * (1 / std[c])   inside (paste)
//
// and, with a partner and a per-sample `blend` w != 1 (MixUp), outside the boxes
//   out[c, y, x] = own * w + partner * (1 - w)   of the two normalised values, in float.
//
// where x' / x'' mirror x when the sample's / the partner's `mirror` flag is set.  A row's (and its
// partner's) optional colour transform (ColorJitter + Lighting, normalize_occlude_math.h) replaces
// float(img[...]) by A px + b in every one of these; an erased pixel's fill is `fill[c]` or the row's
// Random Erasing noise (EraseFill, normalize_occlude_math.h).  This is
// exactly DALI's crop_mirror_normalize arithmetic (slice_flip_normalize_permute_pad_cpu.h:
// (float(in) - mean) * inv_stddev, then ConvertSat to the output type, which for a floating-point
// output is the plain conversion static_cast<T> makes), so rows without boxes equal
// crop_mirror_normalize's output bit for bit; the occlusion is then the papers' operation after
// normalisation (Cutout / Hide-and-Seek: mask multiply, 0 = the dataset mean; CutMix / SaliencyMix:
// input[rand_index] at the same location, the partner with its own flip).  Boxes are int32 (K, 4),
// (y0, x0, y1, x1) half-open in pixels, clipped (common/boxes.h); overlaps are replaced once.
//
// A template on the output type T (float, or a 16-bit float type constructible from float: DALI's
// float16 in the operator), so it is instantiated by its caller: compile that translation unit with
// -ffp-contract=off (CMakeLists.txt says why).

#ifndef OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_CPU_H_
#define OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_CPU_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/boxes.h"
#include "common/multiversion.h"
#include "normalize_occlude/normalize_occlude_math.h"

namespace occlusion {
namespace kernels {

/// Per-channel constants, C floats each: mean and 1 / std in pixel units, fill in normalised units.
struct NormalizeChannels {
  const float *mean, *inv_std, *fill;
};

/// One H x W x C uint8 row as a source of normalised pixels: mirrored or not, with its colour
/// transform (null: none, crop_mirror_normalize's values).
struct RowSource {
  const uint8_t *in;
  bool mirror;
  const ColorAffine *color = nullptr;
};

namespace detail {

/// One CHW output row of channel c from HWC row `in` (W pixels, C channels), mirrored or not.
template <typename T>
OCC_MULTIVERSION void NormalizeRow(const uint8_t *__restrict__ in, T *__restrict__ out, int x0,
                                   int x1, int W, int C, int c, bool mirror, float mean,
                                   float inv_std) {
  if (mirror) {
    for (int x = x0; x < x1; x++)
      out[x] = static_cast<T>((static_cast<float>(in[(W - 1 - x) * C + c]) - mean) * inv_std);
  } else {
    for (int x = x0; x < x1; x++)
      out[x] = static_cast<T>((static_cast<float>(in[x * C + c]) - mean) * inv_std);
  }
}

/// NormalizeRow of a row source: with its colour transform when it has one.
template <typename T>
void SourceRow(const RowSource &s, int64_t in_row, T *out, int x0, int x1, int W, int C, int c, float mean,
               float inv_std) {
  if (!s.color) {
    NormalizeRow<T>(s.in + in_row, out, x0, x1, W, C, c, s.mirror, mean, inv_std);
    return;
  }
  const uint8_t *in = s.in + in_row;
  for (int x = x0; x < x1; x++)
    out[x] = static_cast<T>(SourceValue(in + (s.mirror ? W - 1 - x : x) * C, s.color, c, mean, inv_std));
}

/// One CHW output row of channel c blending the row's own pixels (weight w) with the partner's
/// (weight 1 - w), each normalised and mirrored by its own flag: MixUp's lam * x + (1 - lam) * x[j].
template <typename T>
OCC_MULTIVERSION void BlendRow(const uint8_t *__restrict__ in, const uint8_t *__restrict__ pin,
                               T *__restrict__ out, int x0, int x1, int W, int C, int c, bool mirror,
                               bool pmirror, float mean, float inv_std, float w) {
  const float wp = 1.f - w;
  for (int x = x0; x < x1; x++) {
    const int xs = mirror ? W - 1 - x : x, xp = pmirror ? W - 1 - x : x;
    const float a = (static_cast<float>(in[xs * C + c]) - mean) * inv_std;
    const float b = (static_cast<float>(pin[xp * C + c]) - mean) * inv_std;
    out[x] = static_cast<T>(a * w + b * wp);
  }
}

/// BlendRow of two row sources, with their colour transforms.
template <typename T>
void SourceBlendRow(const RowSource &s, const RowSource &p, int64_t in_row, T *out, int x0, int x1, int W,
                    int C, int c, float mean, float inv_std, float w) {
  if (!s.color && !p.color) {
    BlendRow<T>(s.in + in_row, p.in + in_row, out, x0, x1, W, C, c, s.mirror, p.mirror, mean, inv_std, w);
    return;
  }
  const float wp = 1.f - w;
  for (int x = x0; x < x1; x++) {
    const float a = SourceValue(s.in + in_row + (s.mirror ? W - 1 - x : x) * C, s.color, c, mean, inv_std);
    const float b = SourceValue(p.in + in_row + (p.mirror ? W - 1 - x : x) * C, p.color, c, mean, inv_std);
    out[x] = static_cast<T>(a * w + b * wp);
  }
}

}  // namespace detail

/// One H x W x C uint8 row `own` into the C x H x W output `out`.  `partner` null: the K `boxes` are
/// erased (ch.fill, or the noise of `fill`); else they take the partner's normalised pixels, and with
/// `blend` w != 1 the pixels outside them are own * w + partner * (1 - w).  K = 0 (boxes may then be
/// null) normalises only.
template <typename T>
void NormalizeOccludeCpu(const RowSource &own, const RowSource *partner, float blend, const int32_t *boxes,
                         int K, int H, int W, int C, const NormalizeChannels &ch, const EraseFill &fill, T *out,
                         std::vector<ClippedBox> &spans) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const float w = partner ? blend : 1.f;
  // the row's own pixels in [x0, x1) of channel c, blended with the partner's when w != 1
  auto own_span = [&](T *row, int64_t in_row, int x0, int x1, int c) {
    if (w != 1.f)
      detail::SourceBlendRow<T>(own, *partner, in_row, row, x0, x1, W, C, c, ch.mean[c], ch.inv_std[c], w);
    else
      detail::SourceRow<T>(own, in_row, row, x0, x1, W, C, c, ch.mean[c], ch.inv_std[c]);
  };
  // spans: this sample's clipped boxes, then (after them) one row's spans
  spans.clear();
  for (int k = 0; k < K; k++) {
    ClippedBox box;
    if (ClipBox(boxes + 4 * k, H, W, box)) spans.push_back(box);
  }
  const size_t nboxes = spans.size();
  for (int y = 0; y < H; y++) {
    // the row's occluded spans [x0, x1), sorted and merged (overlaps replaced once)
    spans.resize(nboxes);
    for (size_t k = 0; k < nboxes; k++)
      if (spans[k].y0 <= y && y < spans[k].y1) {
        const ClippedBox box = spans[k];  // a copy: push_back may reallocate
        spans.push_back(box);
      }
    auto row_begin = spans.begin() + nboxes;
    std::sort(row_begin, spans.end(), [](const ClippedBox &a, const ClippedBox &b) { return a.x0 < b.x0; });
    const int64_t in_row = static_cast<int64_t>(y) * W * C;
    for (int c = 0; c < C; c++) {
      T *row = out + c * plane + int64_t(y) * W;
      int x = 0;
      for (auto it = row_begin; it != spans.end();) {
        const int x0 = it->x0;  // > x: spans that overlap or touch were merged below
        int x1 = it->x1;
        for (++it; it != spans.end() && it->x0 <= x1; ++it) x1 = std::max(x1, it->x1);
        own_span(row, in_row, x, x0, c);
        if (partner)
          detail::SourceRow<T>(*partner, in_row, row, x0, x1, W, C, c, ch.mean[c], ch.inv_std[c]);
        else if (fill.mode == kFillConst)
          std::fill(row + x0, row + x1, static_cast<T>(ch.fill[c]));
        else
          for (int xe = x0; xe < x1; xe++)
            row[xe] = static_cast<T>(ErasedValue(fill, ch.fill, boxes, K, H, W, C, y, xe, c));
        x = x1;
      }
      own_span(row, in_row, x, W, c);
    }
  }
}

/// The exact channel sums of an H x W x 3 uint8 row (for ColorAffineOf).
inline void ChannelSums(const uint8_t *in, int64_t pixels, uint64_t *sums) {
  uint64_t s0 = 0, s1 = 0, s2 = 0;
  for (int64_t p = 0; p < pixels; p++) {
    s0 += in[3 * p];
    s1 += in[3 * p + 1];
    s2 += in[3 * p + 2];
  }
  sums[0] = s0;
  sums[1] = s1;
  sums[2] = s2;
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_CPU_H_
