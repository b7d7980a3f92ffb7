// Box geometry of the plugin, one definition per rule, DALI-free and host + device: shared by the CPU
// kernels (<operator>/*_cpu.*), the CUDA kernels (<operator>/*_gpu.cuh), their host emulation
// (tests/cuda_emulation), the CPU kernels' test (tests/cpu_kernels) and the DALI-free GPU check
// (tests/gpu_check).  The Python side of the same rules is kernels/boxes.py.
// Boxes are (y0, x0, y1, x1) int32, half-open, in pixels.  Integer and add/subtract-only arithmetic:
// nothing here can be contracted into an FMA, so every caller gets the same values.

#ifndef OCCLUSION_COMMON_BOXES_H_
#define OCCLUSION_COMMON_BOXES_H_

#include <cstdint>

#include "common/host_dev.h"

namespace occlusion {
namespace kernels {

OCC_HOST_DEV inline int ClampInt(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/// The clipped centred box of every reference code here (kernels.boxes.centred_box): per axis
/// clip(c - half, 0, size) .. clip(c + half, 0, size), cut off by the border, never shifted inside.
/// SaliencyMix's peak box, KeepAugment's candidate regions and their chosen box.
OCC_HOST_DEV inline void CentredBox(int cy, int cx, int half_h, int half_w, int H, int W, int32_t *box) {
  box[0] = ClampInt(cy - half_h, 0, H);
  box[1] = ClampInt(cx - half_w, 0, W);
  box[2] = ClampInt(cy + half_h, 0, H);
  box[3] = ClampInt(cx + half_w, 0, W);
}

/// A box clipped to the image, [y0, y1) x [x0, x1).
struct ClippedBox {
  int y0, x0, y1, x1;
};

/// Box `box` clipped to H x W into `c`; false when it covers no pixel.
OCC_HOST_DEV inline bool ClipBox(const int32_t *box, int H, int W, ClippedBox &c) {
  c.y0 = ClampInt(box[0], 0, H);
  c.x0 = ClampInt(box[1], 0, W);
  c.y1 = ClampInt(box[2], 0, H);
  c.x1 = ClampInt(box[3], 0, W);
  return c.y1 > c.y0 && c.x1 > c.x0;
}

/// True when pixel (y, x) lies in one of the K boxes; an empty box (e.g. -1 padding) holds none.
OCC_HOST_DEV inline bool InAnyBox(const int32_t *boxes, int K, int y, int x) {
  for (int k = 0; k < K; k++) {
    const int32_t *b = boxes + 4 * k;
    if (b[0] <= y && y < b[2] && b[1] <= x && x < b[3]) return true;
  }
  return false;
}

/// Sum of the map over [y0, y1) x [x0, x1) from its (H+1) x (W+1) float64 integral image of row
/// stride S, in the order ((ii[y1][x1] - ii[y0][x1]) - ii[y1][x0]) + ii[y0][x0].  The CPU's
/// vectorised loops (box_search_cpu.cc: MaxWindow, RegionScores) write this expression out per row and
/// must keep the same order.
OCC_HOST_DEV inline double BoxSum(const double *ii, int64_t S, int y0, int x0, int y1, int x1) {
  return ii[y1 * S + x1] - ii[y0 * S + x1] - ii[y1 * S + x0] + ii[y0 * S + x0];
}

/// Fong & Vedaldi's jitter ("Occlusions for Effective Data Augmentation", arXiv 1910.10651) of a
/// window whose top-left `at` may lie in [0, last]: a shift uniform over the integers in
/// [-jitter, jitter] that keep the window inside, lo = max(-jitter, -at), hi = min(jitter, last - at),
/// shift = lo + r % (hi - lo + 1) with r uniform in [0, 2^31 - 1) drawn on the host.  Clipping a
/// uniform draw instead would pile the mass of every shift that leaves the image on the border.
/// The CPU operator rejects any other r; a kernel cannot raise, so a negative r still gives an
/// in-image shift (floor modulo).  jitter = 0 gives 0 for any r.
OCC_HOST_DEV inline int JitterShift(int at, int last, int jitter, int32_t r) {
  const int lo = -jitter > -at ? -jitter : -at;
  const int hi = jitter < last - at ? jitter : last - at;
  const int m = hi - lo + 1;
  int q = r % m;
  if (q < 0) q += m;
  return lo + q;
}

/// SaliencyMix's (map * 255).astype(uint8) of a float32 map value in [0, 1]: the float32 product,
/// truncated, clipped to [0, 255]; NaN -> 0 (NumPy leaves it undefined).
OCC_HOST_DEV inline int QuantizeU8(float v) {
  const float q = v * 255.0f;
  return !(q > 0.f) ? 0 : q > 255.f ? 255 : static_cast<int>(q);
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_COMMON_BOXES_H_
