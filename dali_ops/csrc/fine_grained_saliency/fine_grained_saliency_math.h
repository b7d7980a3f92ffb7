// The fine-grained static saliency and its per-pixel arithmetic, DALI-free.
//
// A bit-exact port of OpenCV contrib's StaticSaliencyFineGrained
// (opencv_contrib modules/saliency/src/staticSaliencyFineGrained.cpp, after Montabone & Soto,
// "Human detection using a mobile platform and novel features derived from a visual saliency
// mechanism", IVC 2010), the saliency map SaliencyMix (Uddin et al., ICLR 2021) takes its
// paste box from.  The steps, as opencv-contrib-python-headless 5.0.0 runs them:
//
//   1. gray = cvtColor(BGR2GRAY): fixed point, 15 fractional bits, rounded
//      (R 9798, G 19235, B 3735; checked against OpenCV 5.0.0 on all 2^24 colours);
//   2. GaussianBlur(3x3, sigma 0) twice on uint8, BORDER_REFLECT_101: OpenCV's fixed-point path
//      is exact for the binomial kernel, i.e. (sum of [1 2 1]x[1 2 1] weighted pixels + 8) >> 4;
//   3. float32 integral image of size (H+1) x (W+1), accumulated like cv::integral:
//      I[y+1][x+1] = I[y][x+1] + (running sum of row y up to x), in float32;
//   4. for each neighbourhood n in {12, 24, 48, 28, 56, 112}: corners x-n+1, x+n+1 (same in y)
//      clamped to the integral image, surround mean = (box - centre) / (area - 1) in float32,
//      on = centre - mean and off = mean - centre truncated to uint8 where positive;
//   5. on and off summed over the six scales (uint16), each sum scaled to uint8 by
//      255 * (sum / max sum) (truncated), final = uint8(255 * (on + off) / max(max on, max off));
//   6. OpenCV 5 returns final * (1/255) as float32.
//
// float32 input (SaliencyMix's official code hands OpenCV the mean/std-normalised float tensor;
// Uddin et al., arXiv 2006.01791, afm-shahab-uddin/SaliencyMix saliency_bbox): OpenCV never converts
// it to 8 bits.  Steps 1-3 run on a float32 gray plane (GrayFloat, BlurTapFloat, RowPrefixFloat:
// opencv-contrib-python-headless 5.0.0's x86-64 roundings and addition order), and step 4 reads the
// centre value as gray.at<uchar>(y, x): byte x of row y of the float32 buffer, so the responses wrap
// modulo 256 (ResponseByte).  Steps 4-6 are otherwise shared with the uint8 path.
//
// The per-pixel arithmetic is this file's (DALI-free host/device inline functions), shared by the
// CPU kernel (fine_grained_saliency_cpu.cc), the CUDA kernels (fine_grained_saliency_gpu.cuh), both
// wrapped by the DALI operator (fine_grained_saliency.{h,cc,cu}), and mirrored by kernels/saliency.py
// (tests prove all three and OpenCV agree).
//
// Optional reduced working resolution (argument max_side): the gray image is box-averaged down so
// that its longer side is max_side, saliency is computed there, and the uint8 map is resized back
// to the input size bilinearly.  Both resizes use integer arithmetic (see WorkingSize, AreaSpan,
// BilinearCoord) so that every backend gives identical numbers.

#ifndef OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_MATH_H_
#define OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_MATH_H_

#include <cmath>
#include <cstdint>

#include "common/host_dev.h"

namespace occlusion {
namespace fgs {

/// Number of centre-surround scales and the neighbourhood half-sizes OpenCV uses.
constexpr int kNumScales = 6;
constexpr int kMaxNeighbourhood = 112;

OCC_HOST_DEV constexpr int Neighbourhood(int scale) {
  // {3*4, 3*4*2, 3*4*2*2, 7*4, 7*4*2, 7*4*2*2} in OpenCV's order.
  return scale == 0 ? 12 : scale == 1 ? 24 : scale == 2 ? 48
       : scale == 3 ? 28 : scale == 4 ? 56 : 112;
}

/// OpenCV 5 cvtColor(COLOR_BGR2GRAY) for uint8: 15-bit fixed point, rounded.
OCC_HOST_DEV inline uint8_t RgbToGray(int r, int g, int b) {
  return static_cast<uint8_t>((b * 3735 + g * 19235 + r * 9798 + (1 << 14)) >> 15);
}

/// OpenCV 5.0.0's cvtColor(COLOR_BGR2GRAY) of a float32 pixel at column x of a row of w pixels, as
/// opencv-contrib-python-headless 5.0.0 rounds it on x86-64 (c0 is OpenCV's blue: the array's first
/// channel).  Its 8-pixel vector loop computes fma(c2, R, fma(c0, B, c1 * G)); of the w % 8 pixels left
/// at the end of the row, a block of 4 (when there are 4 or more) alternates fma(c2, R, fma(c1, G,
/// c0 * B)) and the vector rounding, the rest take the vector rounding (checked against cv2 on every
/// width 1..39).  Rows whose width is a multiple of 8 (224) use the vector rounding throughout.
OCC_HOST_DEV inline float GrayFloat(float c0, float c1, float c2, int x, int w) {
  const int tail = w - w % 8;
  const bool alternate = w % 8 >= 4 && x >= tail && x < tail + 4 && ((x - tail) & 1) == 0;
  return alternate ? fmaf(c2, 0.299f, fmaf(c1, 0.587f, c0 * 0.114f))
                   : fmaf(c2, 0.299f, fmaf(c0, 0.114f, c1 * 0.587f));
}

/// One pass of OpenCV's float32 GaussianBlur(3x3, sigma 0) (kernel [0.25 0.5 0.25], rows then
/// columns): 0.5 m + 0.25 (a + b) with a single rounding; both products are exact, so the result is
/// the same with or without FMA contraction.
OCC_HOST_DEV inline float BlurTapFloat(float a, float m, float b) {
  return 0.5f * m + 0.25f * (a + b);
}

/// The running sums of one row of cv::integral(gray, CV_32F) of a float32 plane, in the order
/// opencv-contrib-python-headless 5.0.0 adds them on x86-64: blocks of 8, each two in-register 4-lane
/// prefixes (a, a+b, a+(b+c), (a+b)+(c+d)), the upper one plus the lower one's total, then plus the
/// previous block's last sum; the w % 8 columns left one addition at a time (checked against cv2).
OCC_HOST_DEV inline void RowPrefixFloat(const float *g, int w, float *out) {
  float carry = 0.f;
  int x = 0;
  for (; x + 8 <= w; x += 8) {
    float lo[4], hi[4];
    for (int half = 0; half < 2; half++) {
      const float *v = g + x + 4 * half;
      float *p = half ? hi : lo;
      const float s1 = v[1] + v[0], s2 = v[2] + v[1], s3 = v[3] + v[2];
      p[0] = v[0];
      p[1] = s1;
      p[2] = s2 + v[0];
      p[3] = s3 + s1;
    }
    for (int k = 0; k < 4; k++) {
      out[x + k] = lo[k] + carry;
      out[x + 4 + k] = (hi[k] + lo[3]) + carry;
    }
    carry = out[x + 7];
  }
  for (; x < w; x++) {
    carry = carry + g[x];
    out[x] = carry;
  }
}

/// BORDER_REFLECT_101 (OpenCV's BORDER_DEFAULT) for indices at most one step outside [0, n).
OCC_HOST_DEV inline int Reflect101(int i, int n) {
  if (n == 1) return 0;
  if (i < 0) return -i;
  if (i >= n) return 2 * n - 2 - i;
  return i;
}

OCC_HOST_DEV inline int Clamp(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/// Rounds a [1 2 1] x [1 2 1] weighted 3x3 sum to the uint8 result of OpenCV's fixed-point
/// GaussianBlur(ksize 3, sigma 0).
OCC_HOST_DEV inline uint8_t BlurRound(int weighted_sum) {
  return static_cast<uint8_t>((weighted_sum + 8) >> 4);
}

/// (uchar)m of a positive on / off response as x86 runs it: truncation to int32, low byte.  The int32
/// conversion of a value it cannot hold (float input only: huge values, or +inf from a 1x1 image's
/// 0 / 0 surround) gives 0x80000000, i.e. 0; spelled out so that the GPU, whose conversion saturates,
/// gives the same.  Responses of uint8 input are below 256.
OCC_HOST_DEV inline int ResponseByte(float m) {
  return m > 0.f && m < 2147483648.f ? static_cast<int>(static_cast<uint8_t>(static_cast<int>(m))) : 0;
}

/// One scale of StaticSaliencyFineGrained::getIntensityScaled + getMean, in OpenCV's float32
/// order of operations.  i22 = I(y2, x2), i11 = I(y1, x1), i21 = I(y2, x1), i12 = I(y1, x2)
/// at the clamped corners; area = (x2 - x1) * (y2 - y1) - 1.  Adds the uint8-truncated on and
/// off responses to on_sum and off_sum.
OCC_HOST_DEV inline void CentreSurround(float i22, float i11, float i21, float i12,
                                         float centre, float area, int &on_sum, int &off_sum) {
  float value = ((i22 + i11) - i21) - i12;
  value = (value - centre) / area;
  float mean_on = centre - value;
  float mean_off = value - centre;
  on_sum += ResponseByte(mean_on);
  off_sum += ResponseByte(mean_off);
}

/// All six scales at pixel (y, x) of an h x w image, with corners clamped to the
/// (h+1) x (w+1) integral image `integral` (row stride `stride` floats).
OCC_HOST_DEV inline void CentreSurroundAt(const float *integral, int stride, int h, int w,
                                           int y, int x, float centre,
                                           int &on_sum, int &off_sum) {
  on_sum = 0;
  off_sum = 0;
#ifdef __CUDA_ARCH__
  #pragma unroll
#endif
  for (int s = 0; s < kNumScales; s++) {
    int n = Neighbourhood(s);
    int x1 = Clamp(x - n + 1, 0, w), x2 = Clamp(x + n + 1, 0, w);
    int y1 = Clamp(y - n + 1, 0, h), y2 = Clamp(y + n + 1, 0, h);
    const float *r1 = integral + static_cast<int64_t>(y1) * stride;
    const float *r2 = integral + static_cast<int64_t>(y2) * stride;
    float area = static_cast<float>((x2 - x1) * (y2 - y1) - 1);
    CentreSurround(r2[x2], r1[x1], r2[x1], r1[x2], centre, area, on_sum, off_sum);
  }
}

/// mixScales: uint8(255. * (float)(sum / (float)max_sum)).  A zero maximum gives 0/0 in OpenCV,
/// which its x86 build converts to 0.
OCC_HOST_DEV inline int ScaleSum(int sum, int max_sum) {
  if (max_sum == 0) return 0;
  float q = static_cast<float>(sum) / static_cast<float>(max_sum);
  return static_cast<uint8_t>(static_cast<int>(255. * static_cast<double>(q)));
}

/// mixOnOff: uint8(255. * (float)(on + off) / (float)max_val), max_val = max(max on, max off).
OCC_HOST_DEV inline uint8_t MixOnOff(int on, int off, int max_val) {
  if (max_val == 0) return 0;
  double v = 255. * static_cast<double>(static_cast<float>(on + off))
             / static_cast<double>(static_cast<float>(max_val));
  return static_cast<uint8_t>(static_cast<int>(v));
}

/// The float32 OpenCV 5 returns for a uint8 saliency value (convertTo with scale 1/255).
OCC_HOST_DEV inline float ToUnit(int v) {
  return static_cast<float>(v) * static_cast<float>(1.0 / 255.0);
}

/// Working resolution for max_side (<= 0: full resolution).  The longer side becomes max_side,
/// the shorter one round(short * max_side / long), at least 1.  Never upsamples.
OCC_HOST_DEV inline void WorkingSize(int H, int W, int max_side, int &h, int &w) {
  h = H;
  w = W;
  if (max_side <= 0) return;
  if (H >= W && H > max_side) {
    h = max_side;
    w = static_cast<int>((static_cast<int64_t>(W) * max_side + H / 2) / H);
    if (w < 1) w = 1;
  } else if (W > H && W > max_side) {
    w = max_side;
    h = static_cast<int>((static_cast<int64_t>(H) * max_side + W / 2) / W);
    if (h < 1) h = 1;
  }
}

/// Source span [begin, end) of output index i when n_in samples are box-averaged to n_out.
OCC_HOST_DEV inline void AreaSpan(int i, int n_in, int n_out, int &begin, int &end) {
  begin = static_cast<int>(static_cast<int64_t>(i) * n_in / n_out);
  end = static_cast<int>(static_cast<int64_t>(i + 1) * n_in / n_out);
}

/// Bilinear source coordinate of output index i (half-pixel centres, n_in -> n_out), in 1/256
/// steps: i0, i1 are the two source indices and frac the weight of i1 (0..255).
OCC_HOST_DEV inline void BilinearCoord(int i, int n_in, int n_out, int &i0, int &i1, int &frac) {
  int64_t s = (static_cast<int64_t>(2 * i + 1) * n_in * 128) / n_out - 128;
  if (s < 0) s = 0;
  i0 = static_cast<int>(s >> 8);
  frac = static_cast<int>(s & 255);
  if (i0 >= n_in - 1) {
    i0 = n_in - 1;
    frac = 0;
  }
  i1 = i0 + 1 < n_in ? i0 + 1 : i0;
}

/// Horizontal step of the bilinear resize: two uint8 values blended in 8-bit fixed point.
OCC_HOST_DEV inline int BilinearRow(int v0, int v1, int fx) {
  return v0 * (256 - fx) + v1 * fx;
}

/// Vertical step: two BilinearRow results blended, returned as float in [0, 1].
OCC_HOST_DEV inline float BilinearBlend(int top, int bottom, int fy) {
  int q = top * (256 - fy) + bottom * fy;  // <= 255 * 65536 < 2^24: exact in float
  return static_cast<float>(q) / 16711680.f;  // 255 * 65536
}

/// Bilinear interpolation of four uint8 values in 16-bit fixed point, returned as float in [0, 1].
OCC_HOST_DEV inline float BilinearUnit(int v00, int v01, int v10, int v11, int fy, int fx) {
  return BilinearBlend(BilinearRow(v00, v01, fx), BilinearRow(v10, v11, fx), fy);
}

}  // namespace fgs
}  // namespace occlusion

#endif  // OCCLUSION_FINE_GRAINED_SALIENCY_FINE_GRAINED_SALIENCY_MATH_H_
