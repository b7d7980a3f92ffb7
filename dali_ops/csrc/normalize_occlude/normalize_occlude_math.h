// normalize_occlude's per-pixel rules that the CPU kernel (normalize_occlude_cpu.h) and the CUDA kernel
// (normalize_occlude_gpu.cuh) share, DALI-free and host + device, so that both give the same bits:
//
// * Random Erasing's noise fill (Zhong et al. 2020, arXiv 1708.04896; timm's
//   timm/data/random_erasing.py): "rand" is one normal value per box and channel, "pixel" one per
//   channel and pixel, both in normalised units.  A value is the standard normal's quantile table
//   (normal_table.h) at the top 16 bits of SplitMix64 of the row's seed and a counter: integer
//   arithmetic and a table read, so no libm (whose log / cos differ between the CPU and CUDA in the
//   last bits) is involved.  Where boxes overlap, the last box containing a pixel gives its value
//   (timm erases its boxes one after the other).
// * ColorJitter + PCA Lighting (clovaai/CutMix-PyTorch utils.py, after fb.resnet.torch): on [0, 1]
//   float images, brightness img.lerp(0, a), contrast img.lerp(mean(gray), a), saturation
//   img.lerp(gray, a) in a random order, then + eigvec @ (alpha * eigval); no clamping.  Each step is
//   affine in the pixel and in the image's mean colour, so the whole chain is
//   out = A x + B mean(x) + b0 (pixel units), which the host composes per row (21 floats:
//   A row-major, B row-major, b0) and the kernels apply: the mean colour from exact integer channel
//   sums, then every product and sum rounded on its own (the _rn intrinsics on the device, plain
//   float operations compiled with -ffp-contract=off on the host: no FMA contraction anywhere).

#ifndef OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_MATH_H_
#define OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_MATH_H_

#include <cstdint>

#include "common/host_dev.h"

namespace occlusion {
namespace kernels {

/// `fill_mode` of normalize_occlude: timm's RandomErasing modes.
enum FillMode : int { kFillConst = 0, kFillRand = 1, kFillPixel = 2 };

/// Bits of the noise table's index: 2^16 quantiles.
constexpr int kNormalTableBits = 16;
constexpr int kNormalTableSize = 1 << kNormalTableBits;
/// Floats of a row's colour transform: A (3 x 3), B (3 x 3), b0 (3), pixel units.
constexpr int kColorParams = 21;

OCC_HOST_DEV inline float MulRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

OCC_HOST_DEV inline float AddRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

OCC_HOST_DEV inline float SubRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

/// crop_mirror_normalize's (v - mean) * inv_std, each step rounded.
OCC_HOST_DEV inline float Normalized(float v, float mean, float inv_std) {
  return MulRn(SubRn(v, mean), inv_std);
}

/// SplitMix64's output function (Steele et al. 2014): a bijective 64-bit mixer.
OCC_HOST_DEV inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The noise table index of draw `counter` of a row seeded `seed`: the counter-th output of SplitMix64
/// started at Mix64(seed), its top kNormalTableBits bits.
OCC_HOST_DEV inline uint32_t NoiseIndex(uint32_t seed, uint64_t counter) {
  const uint64_t state = Mix64(static_cast<uint64_t>(seed)) + (counter + 1) * 0x9E3779B97F4A7C15ull;
  return static_cast<uint32_t>(Mix64(state) >> (64 - kNormalTableBits));
}

/// The last of the K boxes that holds pixel (y, x), -1 for none (an empty box holds none).
OCC_HOST_DEV inline int LastBoxContaining(const int32_t *boxes, int K, int y, int x) {
  for (int k = K - 1; k >= 0; k--) {
    const int32_t *b = boxes + 4 * k;
    if (b[0] <= y && y < b[2] && b[1] <= x && x < b[3]) return k;
  }
  return -1;
}

/// How an erased pixel is filled: `fill` per channel (kFillConst) or the row's noise.
struct EraseFill {
  int mode = kFillConst;
  uint32_t seed = 0;
  const float *table = nullptr;  // kNormalTableSize quantiles (normal_table.h), for the noise modes
};

/// The value of erased pixel (y, x), channel c, of an H x W x C row with boxes (K, 4).
OCC_HOST_DEV inline float ErasedValue(const EraseFill &f, const float *fill, const int32_t *boxes, int K,
                                      int H, int W, int C, int y, int x, int c) {
  if (f.mode == kFillConst) return fill[c];
  uint64_t counter;
  if (f.mode == kFillRand) {
    const int k = LastBoxContaining(boxes, K, y, x);
    counter = static_cast<uint64_t>(k < 0 ? 0 : k) * C + c;
  } else {
    counter = (static_cast<uint64_t>(c) * H + y) * W + x;
  }
  return f.table[NoiseIndex(f.seed, counter)];
}

/// A row's colour transform in pixel units once its mean colour is known: out = m x + b.
struct ColorAffine {
  float m[9];
  float b[3];
};

/// The row's affine from its 21 parameters (A, B, b0) and the exact channel sums of its `pixels`
/// pixels: b = b0 + B mean, the mean per channel the double quotient rounded to float.
OCC_HOST_DEV inline void ColorAffineOf(const float *params, const uint64_t *sums, int64_t pixels,
                                       ColorAffine &out) {
  float mu[3];
  for (int c = 0; c < 3; c++)
    mu[c] = pixels > 0 ? static_cast<float>(static_cast<double>(sums[c]) / static_cast<double>(pixels)) : 0.f;
  for (int i = 0; i < 9; i++) out.m[i] = params[i];
  for (int c = 0; c < 3; c++) {
    const float *B = params + 9 + 3 * c;
    out.b[c] = AddRn(AddRn(AddRn(params[18 + c], MulRn(B[0], mu[0])), MulRn(B[1], mu[1])), MulRn(B[2], mu[2]));
  }
}

/// Channel c of RGB pixel `px` after the colour transform, in pixel units.
OCC_HOST_DEV inline float ColorValue(const ColorAffine &a, const uint8_t *px, int c) {
  const float *m = a.m + 3 * c;
  return AddRn(AddRn(AddRn(MulRn(m[0], static_cast<float>(px[0])), MulRn(m[1], static_cast<float>(px[1]))),
                     MulRn(m[2], static_cast<float>(px[2]))),
               a.b[c]);
}

/// Channel c of pixel `px`, normalised: with the colour transform when `color` is set, else
/// crop_mirror_normalize's value.
OCC_HOST_DEV inline float SourceValue(const uint8_t *px, const ColorAffine *color, int c, float mean,
                                      float inv_std) {
  const float v = color ? ColorValue(*color, px, c) : static_cast<float>(px[c]);
  return Normalized(v, mean, inv_std);
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_NORMALIZE_OCCLUDE_NORMALIZE_OCCLUDE_MATH_H_
