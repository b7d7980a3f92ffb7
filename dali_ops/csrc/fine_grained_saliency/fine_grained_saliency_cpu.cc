// Fine-grained static saliency on the CPU, DALI-free.  See fine_grained_saliency_cpu.h, and
// fine_grained_saliency_math.h for the algorithm and the reference it reproduces.

#include "fine_grained_saliency/fine_grained_saliency_cpu.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "common/multiversion.h"
#include "fine_grained_saliency/fine_grained_saliency_math.h"

namespace occlusion {
namespace fgs {

namespace {

// The hot loops are multiversioned (multiversion.h).  The results do not depend on the variant:
// every float operation is an IEEE add, subtract or divide of the same operands (the only
// multiply-subtract, width * height - 1, is exact in float32 with or without FMA contraction).

template <typename T>
T *Grow(std::vector<T> &v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

/// BGR2GRAY of one RGB row, of the horizontally mirrored row when `mirror`: the forward
/// conversion (it vectorises; a backward RGB read does not), then the row reversed in place --
/// the same bytes as converting the flipped row.
OCC_MULTIVERSION
void GrayRow(const uint8_t *__restrict__ rgb, int W, bool mirror, uint8_t *__restrict__ g) {
  for (int x = 0; x < W; x++) g[x] = RgbToGray(rgb[3 * x], rgb[3 * x + 1], rgb[3 * x + 2]);
  if (mirror) std::reverse(g, g + W);
}

/// Adds a gray row into the column sums of the current output row.
OCC_MULTIVERSION
void AccumulateRow(const uint8_t *__restrict__ g, int W, int32_t *__restrict__ acc) {
  for (int x = 0; x < W; x++) acc[x] += g[x];
}

/// (sum + count / 2) / count in integers, rounded half up, through one double division per
/// output pixel (a loop that vectorises): `numerators` hold sum + count / 2, exact in double
/// below 2^53 (see the caller), and so is the truncated quotient.
OCC_MULTIVERSION
void RoundedMeans(const double *__restrict__ numerators, const double *__restrict__ counts, int w,
                  uint8_t *__restrict__ out) {
  for (int j = 0; j < w; j++)
    out[j] = static_cast<uint8_t>(static_cast<int>(numerators[j] / counts[j]));
}

/// BGR2GRAY of the RGB image at full resolution (h == H, w == W), or box-averaged down to h x w
/// (integer mean over each output pixel's source span, rounded half up); of the horizontally
/// mirrored image when `mirror` (source column W - 1 - x: the same numbers as flipping first).
void GrayWorking(const uint8_t *rgb, int H, int W, int h, int w, bool mirror, uint8_t *gray,
                 CpuScratch &sc) {
  if (h == H && w == W) {
    for (int y = 0; y < H; y++)
      GrayRow(rgb + static_cast<int64_t>(y) * W * 3, W, mirror, gray + static_cast<int64_t>(y) * W);
    return;
  }
  int32_t *acc = Grow(sc.area_acc, W);
  uint8_t *g = Grow(sc.gray_row, W);
  double *numerators = Grow(sc.area_sums, 2 * static_cast<size_t>(w));
  double *counts = numerators + w;
  int32_t *x0s = Grow(sc.area_spans, 2 * static_cast<size_t>(w));
  int32_t *x1s = x0s + w;
  for (int j = 0; j < w; j++) AreaSpan(j, W, w, x0s[j], x1s[j]);
  for (int i = 0; i < h; i++) {
    int y0, y1;
    AreaSpan(i, H, h, y0, y1);
    std::fill(acc, acc + W, 0);
    for (int y = y0; y < y1; y++) {
      GrayRow(rgb + static_cast<int64_t>(y) * W * 3, W, mirror, g);
      AccumulateRow(g, W, acc);
    }
    for (int j = 0; j < w; j++) {
      int64_t sum = 0;  // <= 255 * H * W < 2^39: the double arithmetic below is exact
      for (int x = x0s[j]; x < x1s[j]; x++) sum += acc[x];
      const int64_t count = static_cast<int64_t>(y1 - y0) * (x1s[j] - x0s[j]);
      numerators[j] = static_cast<double>(sum + count / 2);
      counts[j] = static_cast<double>(count);
    }
    RoundedMeans(numerators, counts, w, gray + static_cast<int64_t>(i) * w);
  }
}

/// GaussianBlur(3x3, sigma 0, BORDER_REFLECT_101) on uint8, bit-exact with OpenCV's fixed-point
/// path: separable [1 2 1] sums in uint16, then one rounding shift.
OCC_MULTIVERSION
void Blur3x3(const uint8_t *__restrict__ src, uint8_t *__restrict__ dst, int h, int w,
             uint16_t *__restrict__ rows) {
  for (int y = 0; y < h; y++) {
    const uint8_t *s = src + static_cast<int64_t>(y) * w;
    uint16_t *r = rows + static_cast<int64_t>(y) * w;
    if (w == 1) {
      r[0] = 4 * s[0];
      continue;
    }
    r[0] = 2 * s[1] + 2 * s[0];
    for (int x = 1; x < w - 1; x++) r[x] = s[x - 1] + 2 * s[x] + s[x + 1];
    r[w - 1] = 2 * s[w - 2] + 2 * s[w - 1];
  }
  for (int y = 0; y < h; y++) {
    const uint16_t *up = rows + static_cast<int64_t>(Reflect101(y - 1, h)) * w;
    const uint16_t *mid = rows + static_cast<int64_t>(y) * w;
    const uint16_t *down = rows + static_cast<int64_t>(Reflect101(y + 1, h)) * w;
    uint8_t *d = dst + static_cast<int64_t>(y) * w;
    for (int x = 0; x < w; x++) d[x] = BlurRound(up[x] + 2 * mid[x] + down[x]);
  }
}

/// GaussianBlur(3x3, sigma 0, BORDER_REFLECT_101) on float32 as OpenCV runs it: a row pass, then a
/// column pass on its results, each BlurTapFloat (exact products, so contraction changes nothing).
OCC_MULTIVERSION
void BlurFloat(const float *__restrict__ src, float *__restrict__ dst, int h, int w,
               float *__restrict__ rows) {
  for (int y = 0; y < h; y++) {
    const float *s = src + static_cast<int64_t>(y) * w;
    float *r = rows + static_cast<int64_t>(y) * w;
    r[0] = BlurTapFloat(s[Reflect101(-1, w)], s[0], s[Reflect101(1, w)]);
    for (int x = 1; x < w - 1; x++) r[x] = BlurTapFloat(s[x - 1], s[x], s[x + 1]);
    if (w > 1) r[w - 1] = BlurTapFloat(s[w - 2], s[w - 1], s[Reflect101(w, w)]);
  }
  for (int y = 0; y < h; y++) {
    const float *up = rows + static_cast<int64_t>(Reflect101(y - 1, h)) * w;
    const float *mid = rows + static_cast<int64_t>(y) * w;
    const float *down = rows + static_cast<int64_t>(Reflect101(y + 1, h)) * w;
    float *d = dst + static_cast<int64_t>(y) * w;
    for (int x = 0; x < w; x++) d[x] = BlurTapFloat(up[x], mid[x], down[x]);
  }
}

/// cv::integral(gray, CV_32F) into rows of `stride` floats, each padded on both sides with
/// kMaxNeighbourhood copies of its edge value, so that the centre-surround loop reads clamped
/// corners without clamping.  Row r starts at integral + r * stride + kMaxNeighbourhood.
/// uint8 gray: exact integer row sums (an in-register scan); float32 gray: OpenCV's float order
/// (RowPrefixFloat into `row`, w floats).
template <typename T>
OCC_MULTIVERSION void PaddedIntegral(const T *__restrict__ gray, int h, int w,
                                     float *__restrict__ integral, int stride,
                                     float *__restrict__ row) {
  constexpr int P = kMaxNeighbourhood;
  std::fill(integral, integral + stride, 0.f);
  for (int y = 0; y < h; y++) {
    const float *prev = integral + static_cast<int64_t>(y) * stride + P;
    float *cur = integral + static_cast<int64_t>(y + 1) * stride + P;
    const T *g = gray + static_cast<int64_t>(y) * w;
    std::fill(cur - P, cur + 1, 0.f);
    if constexpr (std::is_same_v<T, float>) {
      // cv::integral: the row's running sums added to the row above (float adds commute).
      RowPrefixFloat(g, w, row);
      for (int x = 0; x < w; x++) cur[x + 1] = prev[x + 1] + row[x];
    } else {
      // OpenCV: running row sum (exact integer) added to the row above, rounded to float32.  The
      // running sum is an in-register prefix scan of 8 lanes (a serial loop would carry one add per
      // pixel); the float adds are the same per element.
      const I8 zero = {};
      I8 carry = {};
      int x = 0;
      for (; x + 8 <= w; x += 8) {
        I8 v = {g[x], g[x + 1], g[x + 2], g[x + 3], g[x + 4], g[x + 5], g[x + 6], g[x + 7]};
        v += __builtin_shuffle(v, zero, I8{8, 0, 1, 2, 3, 4, 5, 6});
        v += __builtin_shuffle(v, zero, I8{8, 8, 0, 1, 2, 3, 4, 5});
        v += __builtin_shuffle(v, zero, I8{8, 8, 8, 8, 0, 1, 2, 3});
        v += carry;
        carry = __builtin_shuffle(v, I8{7, 7, 7, 7, 7, 7, 7, 7});
        F8 above, sum;
        std::memcpy(&above, prev + x + 1, sizeof(above));
        sum = above + __builtin_convertvector(v, F8);
        std::memcpy(cur + x + 1, &sum, sizeof(sum));
      }
      for (int run = carry[0]; x < w; x++) {
        run += g[x];
        cur[x + 1] = prev[x + 1] + static_cast<float>(run);
      }
    }
    std::fill(cur + w + 1, cur + w + 1 + P, cur[w]);
  }
}

/// Centre-surround responses of row y, the six scales summed per pixel in registers (the scale
/// loop unrolled inside the pixel loop, which vectorises), stored as the uint16 on / off rows;
/// the row maxima are folded into max_on / max_off.
OCC_MULTIVERSION
void CentreSurroundRow(const float *__restrict__ integral, int stride, int h, int w, int y,
                       const uint8_t *__restrict__ gray_row, const float *__restrict__ widths,
                       uint16_t *__restrict__ on_row, uint16_t *__restrict__ off_row,
                       int &max_on, int &max_off) {
  constexpr int P = kMaxNeighbourhood;
  const float *p22[kNumScales], *p11[kNumScales], *p21[kNumScales], *p12[kNumScales];
  const float *wd[kNumScales];
  float height[kNumScales];
  for (int s = 0; s < kNumScales; s++) {
    const int n = Neighbourhood(s);
    const int y1 = Clamp(y - n + 1, 0, h), y2 = Clamp(y + n + 1, 0, h);
    height[s] = static_cast<float>(y2 - y1);
    const float *r1 = integral + static_cast<int64_t>(y1) * stride + P;
    const float *r2 = integral + static_cast<int64_t>(y2) * stride + P;
    p22[s] = r2 + n + 1;
    p11[s] = r1 - n + 1;
    p21[s] = r2 - n + 1;
    p12[s] = r1 + n + 1;
    wd[s] = widths + static_cast<int64_t>(s) * w;
  }
  int mx_on = max_on, mx_off = max_off;
  for (int x = 0; x < w; x++) {
    const float centre = static_cast<float>(gray_row[x]);
    int on = 0, off = 0;
#pragma GCC unroll 6
    for (int s = 0; s < kNumScales; s++) {
      const float area = wd[s][x] * height[s] - 1.f;  // exact: small integers
      CentreSurround(p22[s][x], p11[s][x], p21[s][x], p12[s][x], centre, area, on, off);
    }
    on_row[x] = static_cast<uint16_t>(on);
    off_row[x] = static_cast<uint16_t>(off);
    mx_on = std::max(mx_on, on);
    mx_off = std::max(mx_off, off);
  }
  max_on = mx_on;
  max_off = mx_off;
}

/// mixScales + mixOnOff through lookup tables: out = mix[on_lut[on] + off_lut[off]], where `mix`
/// gives the uint8 map value or (full resolution) directly the float OpenCV returns for it.
template <typename T>
OCC_MULTIVERSION void MixMaps(const uint16_t *__restrict__ on, const uint16_t *__restrict__ off,
                              int64_t npix, const uint8_t *__restrict__ on_lut,
                              const uint8_t *__restrict__ off_lut, const T *__restrict__ mix,
                              T *__restrict__ out) {
  for (int64_t i = 0; i < npix; i++) out[i] = mix[on_lut[on[i]] + off_lut[off[i]]];
}

/// One output row of the bilinear resize from two horizontally blended rows.
OCC_MULTIVERSION
void BlendRows(const int32_t *__restrict__ top, const int32_t *__restrict__ bottom, int fy, int W,
               float *__restrict__ out) {
  for (int X = 0; X < W; X++) out[X] = BilinearBlend(top[X], bottom[X], fy);
}

/// Steps 4-6 on the integral image (PaddedIntegral's layout, row stride `stride`) of an h x w
/// plane whose centre values are the bytes `centre` (row y at centre + y * centre_stride): the
/// on / off sums, mixScales / mixOnOff, and the map at H x W (resized back when h x w is smaller).
void SaliencyFromIntegral(const float *integral, int stride, const uint8_t *centre,
                          int64_t centre_stride, int h, int w, int H, int W, float *out,
                          CpuScratch &sc) {
  const int64_t npix = static_cast<int64_t>(h) * w;
  // Clamped box widths per scale and column: min(x + n + 1, w) - max(x - n + 1, 0).
  float *widths = Grow(sc.widths, static_cast<int64_t>(kNumScales) * w);
  for (int s = 0; s < kNumScales; s++) {
    int n = Neighbourhood(s);
    for (int x = 0; x < w; x++)
      widths[s * w + x] = static_cast<float>(Clamp(x + n + 1, 0, w) - Clamp(x - n + 1, 0, w));
  }

  uint16_t *on = Grow(sc.on, npix);
  uint16_t *off = Grow(sc.off, npix);
  int max_on = 0, max_off = 0;
  for (int y = 0; y < h; y++)
    CentreSurroundRow(integral, stride, h, w, y, centre + y * centre_stride, widths,
                      on + static_cast<int64_t>(y) * w, off + static_cast<int64_t>(y) * w,
                      max_on, max_off);

  // mixScales and mixOnOff through lookup tables (sums are at most 6 * 255).
  uint8_t lut_on[kNumScales * 255 + 1], lut_off[kNumScales * 255 + 1];
  for (int v = 0; v <= max_on; v++) lut_on[v] = static_cast<uint8_t>(ScaleSum(v, max_on));
  for (int v = 0; v <= max_off; v++) lut_off[v] = static_cast<uint8_t>(ScaleSum(v, max_off));
  const int max_val = std::max(ScaleSum(max_on, max_on), ScaleSum(max_off, max_off));
  uint8_t lut_mix[2 * 255 + 1];
  for (int v = 0; v <= 2 * 255; v++) lut_mix[v] = MixOnOff(v, 0, max_val);

  if (h == H && w == W) {
    float lut_unit[2 * 255 + 1];
    for (int v = 0; v <= 2 * 255; v++) lut_unit[v] = ToUnit(lut_mix[v]);
    MixMaps<float>(on, off, npix, lut_on, lut_off, lut_unit, out);
    return;
  }
  uint8_t *map = Grow(sc.blurred, npix);  // free again after the blur
  MixMaps<uint8_t>(on, off, npix, lut_on, lut_off, lut_mix, map);
  // Bilinear back to H x W, separably: every working row blended horizontally once, then each
  // output row blends two of those (BilinearUnit's integer arithmetic, so the same numbers).
  int32_t *x0s = Grow(sc.taps, 3 * static_cast<size_t>(W));
  int32_t *x1s = x0s + W, *fxs = x0s + 2 * W;
  for (int X = 0; X < W; X++) BilinearCoord(X, w, W, x0s[X], x1s[X], fxs[X]);
  int32_t *horizontal = Grow(sc.horizontal, static_cast<size_t>(h) * W);
  for (int r = 0; r < h; r++) {
    const uint8_t *m = map + static_cast<int64_t>(r) * w;
    int32_t *hr = horizontal + static_cast<int64_t>(r) * W;
    for (int X = 0; X < W; X++) hr[X] = BilinearRow(m[x0s[X]], m[x1s[X]], fxs[X]);
  }
  for (int Y = 0; Y < H; Y++) {
    int y0, y1, fy;
    BilinearCoord(Y, h, H, y0, y1, fy);
    BlendRows(horizontal + static_cast<int64_t>(y0) * W, horizontal + static_cast<int64_t>(y1) * W,
              fy, W, out + static_cast<int64_t>(Y) * W);
  }
}

}  // namespace

void FineGrainedSaliencyCpu(const uint8_t *rgb, int H, int W, int max_side, bool mirror,
                            float *out, CpuScratch &sc) {
  if (H <= 0 || W <= 0) return;
  int h, w;
  WorkingSize(H, W, max_side, h, w);
  const int64_t npix = static_cast<int64_t>(h) * w;
  const int stride = w + 1 + 2 * kMaxNeighbourhood;

  uint8_t *gray = Grow(sc.gray, npix);
  uint8_t *blurred = Grow(sc.blurred, npix);
  uint16_t *rows = Grow(sc.row_sums, npix);
  GrayWorking(rgb, H, W, h, w, mirror, gray, sc);
  Blur3x3(gray, blurred, h, w, rows);
  Blur3x3(blurred, gray, h, w, rows);

  float *integral = Grow(sc.integral, static_cast<int64_t>(h + 1) * stride);
  PaddedIntegral(gray, h, w, integral, stride, nullptr);
  SaliencyFromIntegral(integral, stride, gray, w, h, w, H, W, out, sc);
}

void FineGrainedSaliencyCpu(const float *image, int H, int W, bool mirror, float *out,
                            CpuScratch &sc) {
  if (H <= 0 || W <= 0) return;
  const int64_t npix = static_cast<int64_t>(H) * W;
  float *gray = Grow(sc.gray_f, npix);
  float *blurred = Grow(sc.blurred_f, npix);
  float *rows = Grow(sc.rows_f, npix);
  for (int y = 0; y < H; y++) {
    const float *row = image + static_cast<int64_t>(y) * W * 3;
    float *g = gray + static_cast<int64_t>(y) * W;
    for (int x = 0; x < W; x++) {
      const float *p = row + 3 * (mirror ? W - 1 - x : x);
      g[x] = GrayFloat(p[0], p[1], p[2], x, W);  // the rounding of column x of the image OpenCV gets
    }
  }
  BlurFloat(gray, blurred, H, W, rows);
  BlurFloat(blurred, gray, H, W, rows);
  const int stride = W + 1 + 2 * kMaxNeighbourhood;
  float *integral = Grow(sc.integral, static_cast<int64_t>(H + 1) * stride);
  PaddedIntegral(gray, H, W, integral, stride, rows);
  // getIntensityScaled reads gray.at<uchar>(y, x) of the CV_32F plane: its raw bytes.
  SaliencyFromIntegral(integral, stride, reinterpret_cast<const uint8_t *>(gray),
                       static_cast<int64_t>(W) * sizeof(float), H, W, H, W, out, sc);
}

}  // namespace fgs
}  // namespace occlusion
