// Box operators: input checks, CPU implementations and schemas.  See box_ops.h.

#include "box_ops.h"
#include "box_inputs.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "kernels/boxes.h"
#include "multiversion.h"

namespace occlusion {

using ::dali::make_string;
using kernels::BoxSum;
using kernels::CentredBox;
using kernels::JitterShift;
using kernels::QuantizeU8;

namespace {

/// One sample: copy `in` to `out`, then give every box the partner's pixels (`partner` != null)
/// or the fill.  Row copies: CHW rows are per channel, HWC rows hold all channels.
template <typename T>
void ApplyBoxesSample(const T *in, T *out, const T *partner, const T *fill, bool chw,
                      int H, int W, int C, const int32_t *boxes, int K) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  std::memcpy(out, in, plane * C * sizeof(T));
  for (int k = 0; k < K; k++) {
    int y0, x0, y1, x1;
    if (!ClipBox(boxes + 4 * k, H, W, y0, x0, y1, x1)) continue;
    const int bw = x1 - x0;
    if (chw) {
      for (int c = 0; c < C; c++) {
        for (int y = y0; y < y1; y++) {
          const int64_t off = c * plane + static_cast<int64_t>(y) * W + x0;
          if (partner)
            std::memcpy(out + off, partner + off, bw * sizeof(T));
          else
            std::fill(out + off, out + off + bw, fill[c]);
        }
      }
    } else {
      for (int y = y0; y < y1; y++) {
        const int64_t off = (static_cast<int64_t>(y) * W + x0) * C;
        if (partner) {
          std::memcpy(out + off, partner + off, static_cast<int64_t>(bw) * C * sizeof(T));
        } else {
          T *p = out + off;
          for (int x = 0; x < bw; x++, p += C)
            for (int c = 0; c < C; c++) p[c] = fill[c];
        }
      }
    }
  }
}

#define OCCLUSION_IMAGE_TYPES (uint8_t, ::dali::float16, float)

}  // namespace

template <typename Backend>
BoxApplyShapes CheckBoxApplyInputs(const char *op, const ::dali::Workspace &ws, bool paste) {
  BoxApplyShapes r;
  const auto &images = ws.Input<Backend>(0);
  const auto &boxes = ws.Input<Backend>(1);
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  auto type = images.type();
  DALI_ENFORCE(type == DALI_UINT8 || type == DALI_FLOAT16 || type == DALI_FLOAT, make_string(
      op, ": input `images` must be uint8, float16 or float32, got ", type, "."));
  DALI_ENFORCE(shape.sample_dim() == 3, make_string(
      op, ": input `images` must have 3 dimensions (CHW or HWC), got ", shape.sample_dim(), "."));
  const auto &layout = images.GetLayout();
  DALI_ENFORCE(layout == "CHW" || layout == "HWC", make_string(
      op, ": input `images` must have layout \"CHW\" or \"HWC\", got \"", layout, "\"."));
  r.chw = layout == "CHW";
  CheckBoxes(op, boxes, n);
  if (!paste) return r;
  const auto &partners = ws.Input<Backend>(2);
  DALI_ENFORCE(partners.type() == type, make_string(
      op, ": `partners` must have the type of `images` (", type, "), got ", partners.type(), "."));
  const auto &pshape = partners.shape();
  r.indexed = ws.NumInput() > 3;
  if (!r.indexed) {
    DALI_ENFORCE(pshape == shape, make_string(
        op, ": without `partner_index`, `partners` must have the shape of `images` sample by "
        "sample; got ", pshape, " and ", shape, "."));
    return r;
  }
  // Any row may take any partner: every image and partner must share one shape.
  if (n > 0) {
    CheckOneShape(op, "images", shape, shape[0]);
    CheckOneShape(op, "partners", pshape, shape[0]);
  }
  CheckRowIndex(op, "partner_index", ws.Input<Backend>(3), n);
  return r;
}

template BoxApplyShapes CheckBoxApplyInputs<::dali::CPUBackend>(const char *,
                                                                const ::dali::Workspace &, bool);
template BoxApplyShapes CheckBoxApplyInputs<::dali::GPUBackend>(const char *,
                                                                const ::dali::Workspace &, bool);

std::vector<float> CheckFill(const ::dali::OpSpec &spec) {
  auto fill = spec.GetRepeatedArgument<float>("fill");
  DALI_ENFORCE(!fill.empty(), "erase_boxes: argument `fill` must hold one value or one per channel.");
  for (float f : fill)
    DALI_ENFORCE(std::isfinite(f), make_string("erase_boxes: argument `fill` must be finite, got ",
                                               f, "."));
  return fill;
}


namespace {

/// Per-sample (H, W, C) of a CHW / HWC sample.
inline void Dims(const ::dali::TensorListShape<> &shape, int i, bool chw, int &H, int &W, int &C) {
  auto s = shape.tensor_shape_span(i);
  C = static_cast<int>(chw ? s[0] : s[2]);
  H = static_cast<int>(chw ? s[1] : s[0]);
  W = static_cast<int>(chw ? s[2] : s[1]);
}

}  // namespace

template <>
void EraseBoxes<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::CPUBackend>(0);
  const auto &boxes = ws.Input<::dali::CPUBackend>(1);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  out.SetLayout(images.GetLayout());
  auto &tp = ws.GetThreadPool();
  const auto &shape = images.shape();
  TYPE_SWITCH(images.type(), ::dali::type2id, T, OCCLUSION_IMAGE_TYPES, (
    for (int i = 0; i < shape.num_samples(); i++) {
      int H, W, C;
      Dims(shape, i, shapes_.chw, H, W, C);
      tp.AddWork([&, i, H, W, C](int) {
        std::vector<T> fill(C);
        for (int c = 0; c < C; c++)
          fill[c] = static_cast<T>(fill_.size() == 1 ? fill_[0] : fill_[c]);
        ApplyBoxesSample<T>(images.tensor<T>(i), out.mutable_tensor<T>(i), nullptr, fill.data(),
                            shapes_.chw, H, W, C, boxes.tensor<int32_t>(i),
                            static_cast<int>(boxes.shape()[i][0]));
      }, static_cast<int64_t>(H) * W * C);
    }
  ), DALI_FAIL(make_string("erase_boxes: unsupported type ", images.type())));  // NOLINT
  tp.RunAll();
}

template <>
void PasteBoxes<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::CPUBackend>(0);
  const auto &boxes = ws.Input<::dali::CPUBackend>(1);
  const auto &partners = ws.Input<::dali::CPUBackend>(2);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  out.SetLayout(images.GetLayout());
  const auto &shape = images.shape();
  const int n = shape.num_samples();
  std::vector<int> src(n);
  if (shapes_.indexed) {
    src = ReadRowIndex("paste_boxes", "partner_index", ws.Input<::dali::CPUBackend>(3),
                       partners.num_samples());
  } else {
    for (int i = 0; i < n; i++) src[i] = i;
  }
  auto &tp = ws.GetThreadPool();
  TYPE_SWITCH(images.type(), ::dali::type2id, T, OCCLUSION_IMAGE_TYPES, (
    for (int i = 0; i < n; i++) {
      int H, W, C;
      Dims(shape, i, shapes_.chw, H, W, C);
      // a row without partner keeps its pixels: no boxes to apply
      int K = src[i] < 0 ? 0 : static_cast<int>(boxes.shape()[i][0]);
      const T *partner = src[i] < 0 ? nullptr : partners.tensor<T>(src[i]);
      tp.AddWork([&, i, H, W, C, K, partner](int) {
        ApplyBoxesSample<T>(images.tensor<T>(i), out.mutable_tensor<T>(i), partner, nullptr,
                            shapes_.chw, H, W, C, boxes.tensor<int32_t>(i), K);
      }, static_cast<int64_t>(H) * W * C);
    }
  ), DALI_FAIL(make_string("paste_boxes: unsupported type ", images.type())));  // NOLINT
  tp.RunAll();
}

// --------------------------------------------------------------------------------------------
// box_search (CPU)
// --------------------------------------------------------------------------------------------
namespace {

/// Transposes an 8 x 8 block held as eight 8-lane vectors (v[i][j] <- v[j][i]): unpack pairs,
/// then pairs of pairs, then halves.
template <typename V>
inline void Transpose8(V (&v)[8]) {
  using Lane = std::conditional_t<sizeof(v[0][0]) == 8, int64_t, int32_t>;  // shuffle index type
  typedef Lane I __attribute__((vector_size(sizeof(V))));
  V t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(v[i], v[i + 1], I{0, 8, 1, 9, 4, 12, 5, 13});
    t[i + 1] = __builtin_shuffle(v[i], v[i + 1], I{2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int i = 0; i < 8; i += 4) {
    for (int j = 0; j < 2; j++) {
      u[i + 2 * j] = __builtin_shuffle(t[i + j], t[i + j + 2], I{0, 1, 8, 9, 4, 5, 12, 13});
      u[i + 2 * j + 1] = __builtin_shuffle(t[i + j], t[i + j + 2], I{2, 3, 10, 11, 6, 7, 14, 15});
    }
  }
  for (int k = 0; k < 4; k++) {
    v[k] = __builtin_shuffle(u[k], u[k + 4], I{0, 1, 2, 3, 8, 9, 10, 11});
    v[k + 4] = __builtin_shuffle(u[k], u[k + 4], I{4, 5, 6, 7, 12, 13, 14, 15});
  }
}

/// (H+1) x (W+1) float64 summed-area table: row running sums, then column running sums, each a
/// sequential chain, the order box_search.cuh's kernel keeps so that every box sum is the same.
/// Eight rows at a time: their running sums side by side (the same additions in the same order
/// per row, eight independent dependency chains instead of one), then their column sums while
/// the rows are still in cache -- one pass over the table, which is never cleared as a whole.
/// The running sums go through 8 x 8 blocks transposed in registers (Transpose8), so a column of
/// the eight rows is one vector: loads and stores stay contiguous.
OCC_MULTIVERSION
void Integral(const float *__restrict__ sal, int H, int W, std::vector<double> &table) {
  constexpr int R = 8;
  const int S = W + 1;
  table.resize(static_cast<size_t>(H + 1) * S);
  double *__restrict__ ii = table.data();
  std::fill(ii, ii + S, 0.0);
  for (int y = 0; y < H; y += R) {
    const int rows = std::min(R, H - y);
    const float *s0 = sal + static_cast<int64_t>(y) * W;
    double *o = ii + static_cast<size_t>(y + 1) * S;
    if (rows == R) {
      D8 acc = {};
      int x = 0;
      for (; x + R <= W; x += R) {
        F8 in[R];
        for (int r = 0; r < R; r++) std::memcpy(&in[r], s0 + static_cast<int64_t>(r) * W + x, sizeof(F8));
        Transpose8(in);  // in[k]: column x + k of the eight rows
        D8 sums[R];
        for (int k = 0; k < R; k++) sums[k] = acc += __builtin_convertvector(in[k], D8);
        Transpose8(sums);  // sums[r]: row r's running sums at columns x .. x + 7
        for (int r = 0; r < R; r++) std::memcpy(o + static_cast<size_t>(r) * S + x + 1, &sums[r], sizeof(D8));
      }
      for (; x < W; x++) {
        for (int r = 0; r < R; r++) {
          acc[r] += s0[static_cast<int64_t>(r) * W + x];
          o[static_cast<size_t>(r) * S + x + 1] = acc[r];
        }
      }
    } else {
      for (int r = 0; r < rows; r++) {
        double acc = 0.0;
        for (int x = 0; x < W; x++) {
          acc += s0[static_cast<int64_t>(r) * W + x];
          o[static_cast<size_t>(r) * S + x + 1] = acc;
        }
      }
    }
    for (int r = 0; r < rows; r++) {
      double *__restrict__ cur = o + static_cast<size_t>(r) * S;
      const double *__restrict__ prev = cur - S;
      cur[0] = 0.0;
      for (int x = 1; x <= W; x++) cur[x] += prev[x];
    }
  }
}

/// Index of the first maximum of the quantized map: the maximum in a pass that vectorises (an
/// integer reduction), then the first index that holds it.
OCC_MULTIVERSION
int64_t FirstQuantizedMax(const float *__restrict__ sal, int64_t n) {
  int best = 0;
  for (int64_t i = 0; i < n; i++) best = std::max(best, QuantizeU8(sal[i]));
  int64_t at = 0;
  while (at < n - 1 && QuantizeU8(sal[at]) != best) at++;
  return at;
}

/// SaliencyMix (Uddin et al. 2021, official `saliency_bbox`): first maximum of
/// (map * 255).astype(uint8) (or of the float map), box = clip(peak -+ cut // 2).
void PeakBox(const float *sal, int H, int W, const int32_t *cut, bool quantize, int32_t *box) {
  const int64_t n = static_cast<int64_t>(H) * W;
  int64_t at = 0;
  if (quantize) {
    at = FirstQuantizedMax(sal, n);
  } else {
    for (int64_t i = 1; i < n; i++)
      if (sal[i] > sal[at]) at = i;
  }
  CentredBox(static_cast<int>(at / W), static_cast<int>(at % W), cut[0] / 2, cut[1] / 2, H, W, box);
}

/// Fong & Vedaldi: first (row-major on the stride grid) S x S window of largest sum, its top-left
/// moved by a shift uniform over the in-image shifts within +-jitter (JitterShift); (-1, ...) if no
/// window fits.
/// Each grid row's window sums are computed into `row` (a loop that vectorises), then scanned.
OCC_MULTIVERSION
void MaxWindow(const std::vector<double> &table, int H, int W, int size, int stride,
               int jitter, const int32_t *draws, std::vector<double> &row, int32_t *box) {
  if (size > H || size > W) {
    std::fill(box, box + 4, -1);
    return;
  }
  const int S = W + 1;
  const int nx = (W - size) / stride + 1;
  row.resize(nx);
  double *__restrict__ sums = row.data();
  const double *__restrict__ ii = table.data();
  double best = BoxSum(ii, S, 0, 0, size, size);
  int by = 0, bx = 0;
  for (int y = 0; y + size <= H; y += stride) {
    const double *r0 = ii + static_cast<size_t>(y) * S;
    const double *r1 = ii + static_cast<size_t>(y + size) * S;
    // BoxSum written out per row so that the loop vectorises; same operation order
    for (int j = 0; j < nx; j++) {
      const int x = j * stride;
      sums[j] = r1[x + size] - r0[x + size] - r1[x] + r0[x];
    }
    // The row's first maximum, if it beats `best`: what a running strict > scan keeps (NaN never
    // wins), with the maximum as a vector reduction instead of a branch per window.
    D8 lanes = -std::numeric_limits<double>::infinity() + D8{};
    int j = 0;
    for (; j + 8 <= nx; j += 8) {
      D8 v;
      std::memcpy(&v, sums + j, sizeof(v));
      lanes = v > lanes ? v : lanes;
    }
    double row_max = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < 8; k++) row_max = lanes[k] > row_max ? lanes[k] : row_max;
    for (; j < nx; j++) row_max = sums[j] > row_max ? sums[j] : row_max;
    if (row_max > best) {
      best = row_max;
      by = y;
      bx = static_cast<int>(std::find(sums, sums + nx, row_max) - sums) * stride;
    }
  }
  const int y0 = by + JitterShift(by, H - size, jitter, draws[0]);
  const int x0 = bx + JitterShift(bx, W - size, jitter, draws[1]);
  box[0] = y0;
  box[1] = x0;
  box[2] = y0 + size;
  box[3] = x0 + size;
}

/// KeepAugment region scores (Gong et al. 2021, arXiv 2011.11778, Eq. 1: the *sum* of saliency over
/// the region): the sum over the clipped centred box of half-side `half` around each pixel
/// (CentredBox), into scores (H x W).
OCC_MULTIVERSION
void RegionScores(const double *__restrict__ ii, int H, int W, int half,
                  double *__restrict__ scores) {
  const int S = W + 1;
  for (int y = 0; y < H; y++) {
    int32_t rows[4];  // the rows of this line's boxes: CentredBox's y0 and y1
    CentredBox(y, 0, half, half, H, W, rows);
    const double *r0 = ii + static_cast<int64_t>(rows[0]) * S;
    const double *r1 = ii + static_cast<int64_t>(rows[2]) * S;
    double *out = scores + static_cast<int64_t>(y) * W;
    auto clipped = [&](int x) {
      int32_t box[4];
      CentredBox(y, x, half, half, H, W, box);
      out[x] = BoxSum(ii, S, box[0], box[1], box[2], box[3]);
    };
    // Columns whose box is clipped by a side, then the interior: there the box is
    // [x - half, x + half), contiguous reads that vectorise (BoxSum written out, same order).
    const int lo = std::min(half, W), hi = std::max(lo, W - half);
    for (int x = 0; x < lo; x++) clipped(x);
    const double *a0 = r0 - half, *a1 = r1 - half, *b0 = r0 + half, *b1 = r1 + half;
    for (int x = lo; x < hi; x++) out[x] = b1[x] - b0[x] - a1[x] + a0[x];
    for (int x = hi; x < W; x++) clipped(x);
  }
}

/// How many scores are below v and at most v: one branch-free pass that vectorises.
OCC_MULTIVERSION
void CountRank(const double *__restrict__ s, int64_t n, double v, int64_t &below,
               int64_t &at_most) {
  int64_t lt = 0, le = 0;
  for (int64_t i = 0; i < n; i++) {
    lt += s[i] < v;
    le += s[i] <= v;
  }
  below = lt;
  at_most = le;
}

/// v's nearest neighbours among the scores: the largest below it (-inf if none) and the smallest
/// above it (+inf if none).  Only needed when v is one of the two order statistics the quantile
/// lies between, so it stays a plain loop.
void Neighbours(const double *s, int64_t n, double v, double &prev, double &next) {
  prev = -std::numeric_limits<double>::infinity();
  next = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; i++) {
    const double x = s[i];
    if (x < v && x > prev) prev = x;
    if (x > v && x < next) next = x;
  }
}

/// Is v (one of the n scores) below (`below`) / above the tau-quantile of the scores, as
/// numpy.quantile(scores, tau) (linear method) computes it?  A counting pass instead of a
/// selection: the quantile lies between the order statistics a = s_(k) and b = s_(k+1), so a v
/// outside [a, b] decides at once; otherwise v is a or b, the other one is v's neighbour, and the
/// threshold is NumPy's two-sided lerp of the two, exactly.
bool PassesThreshold(const double *s, int64_t n, double tau, double v, bool below) {
  const double pos = static_cast<double>(n - 1) * tau;
  const int64_t k = std::min<int64_t>(static_cast<int64_t>(std::floor(pos)), n - 1);
  const int64_t k1 = std::min<int64_t>(k + 1, n - 1);
  const double gamma = pos - static_cast<double>(k);
  int64_t n_below, n_at_most;
  CountRank(s, n, v, n_below, n_at_most);
  if (k1 < n_below) return !below;   // b < v: the threshold is below v
  if (k >= n_at_most) return below;  // a > v: the threshold is above v
  double prev, next;
  Neighbours(s, n, v, prev, next);
  const double a = k >= n_below ? v : prev;    // else k == n_below - 1: v's lower neighbour
  const double b = k1 < n_at_most ? v : next;  // else k1 == n_at_most: v's upper neighbour
  const double diff = b - a;
  const double thr = gamma >= 0.5 ? b - diff * (1 - gamma) : a + diff * gamma;
  return below ? v < thr : v > thr;
}

/// KeepAugment (Gong et al. 2021, arXiv 2011.11778) selective cut / paste: region score = saliency
/// sum over the clipped box of half-side `half` around each pixel (Eq. 1),
/// threshold = tau-quantile of all of them; the first drawn centre below (cut) / above (paste)
/// it, else the lowest / highest-scoring one.  Tries stop at the first that passes, and equal
/// scores decide alike, so a typical map costs one or two counting passes.
void KeepBox(const std::vector<double> &ii, int H, int W, int half, double tau, bool below,
             const int32_t *tries, int T, SearchScratch &s, int32_t *box) {
  const int64_t n = static_cast<int64_t>(H) * W;
  s.scores.resize(n);
  RegionScores(ii.data(), H, W, half, s.scores.data());
  auto centre = [&](int t, int &cy, int &cx) {
    cy = std::clamp<int>(tries[2 * t], 0, H - 1);
    cx = std::clamp<int>(tries[2 * t + 1], 0, W - 1);
    return s.scores[static_cast<size_t>(cy) * W + cx];
  };
  int pick = -1, fb = 0, cy, cx;
  double fb_score = centre(0, cy, cx);
  s.tested.clear();
  for (int t = 0; t < T && pick < 0; t++) {
    double v = centre(t, cy, cx);
    if (below ? v < fb_score : v > fb_score) {
      fb_score = v;
      fb = t;
    }
    auto seen = std::find_if(s.tested.begin(), s.tested.end(),
                             [v](const std::pair<double, bool> &e) { return e.first == v; });
    bool passes = seen != s.tested.end() ? seen->second
                                         : PassesThreshold(s.scores.data(), n, tau, v, below);
    if (seen == s.tested.end()) s.tested.emplace_back(v, passes);
    if (passes) pick = t;
  }
  centre(pick < 0 ? fb : pick, cy, cx);
  CentredBox(cy, cx, half, half, H, W, box);
}

double ParseTau(const std::string &s) {
  char *end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  DALI_ENFORCE(!s.empty() && end == s.c_str() + s.size() && v >= 0 && v <= 1, make_string(
      "box_search: `tau` must be a decimal quantile level in [0, 1], got \"", s, "\"."));
  return v;
}

}  // namespace

BoxSearchArgs::BoxSearchArgs(const ::dali::OpSpec &spec)
    : size(spec.HasTensorArgument("size") ? 0 : spec.GetArgument<int>("size")),
      stride(spec.GetArgument<int>("stride")),
      jitter(spec.GetArgument<int>("jitter")),
      tau(ParseTau(spec.GetArgument<std::string>("tau"))),
      quantize(spec.GetArgument<bool>("quantize")),
      per_row_size(spec.HasTensorArgument("size")) {
  auto m = spec.GetArgument<std::string>("method");
  if (m == "peak") method = Method::kPeak;
  else if (m == "max_window") method = Method::kMaxWindow;
  else if (m == "keep_cut") method = Method::kKeepCut;
  else if (m == "keep_paste") method = Method::kKeepPaste;
  else
    DALI_FAIL(make_string("box_search: argument `method` must be \"peak\", \"max_window\", "
                          "\"keep_cut\" or \"keep_paste\", got \"", m, "\"."));
  DALI_ENFORCE(stride >= 1, make_string("box_search: `stride` must be >= 1, got ", stride, "."));
  DALI_ENFORCE(jitter >= 0, make_string("box_search: `jitter` must be >= 0, got ", jitter, "."));
  if (method != Method::kPeak && !per_row_size)
    DALI_ENFORCE(size >= (method == Method::kMaxWindow ? 1 : 2), make_string(
        "box_search: `size` must be >= ", method == Method::kMaxWindow ? 1 : 2, " for \"", m,
        "\", got ", size, "."));
}

int BoxSearchArgs::Size(const ::dali::OpSpec &spec, const ::dali::Workspace &ws, int i) const {
  if (!per_row_size) return size;
  // per row (KeepCutMix: the row's CutMix side, 0 or 1 when lam is near 1: an empty region)
  const int v = spec.GetArgument<int>("size", &ws, i);
  DALI_ENFORCE(v >= (method == Method::kMaxWindow ? 1 : 0), make_string(
      "box_search: `size` must be >= ", method == Method::kMaxWindow ? 1 : 0, ", got ", v,
      " for sample ", i, "."));
  return v;
}

template <typename Backend>
std::vector<int> SetupBoxSearch(const BoxSearchArgs &args, const ::dali::Workspace &ws,
                                std::vector<::dali::OutputDesc> &output_desc) {
  using Method = BoxSearchArgs::Method;
  const auto &sal = ws.Input<Backend>(0);
  const auto &draws = ws.Input<Backend>(1);
  const int n = sal.num_samples();
  DALI_ENFORCE(sal.type() == DALI_FLOAT && sal.shape().sample_dim() == 2, make_string(
      "box_search: input `saliency` must be (H, W) float32 maps, got ", sal.type(), " with ",
      sal.shape().sample_dim(), " dimensions."));
  DALI_ENFORCE(draws.type() == DALI_INT32 && draws.num_samples() == n, make_string(
      "box_search: input `draws` must be int32, one sample per map (", n, "), got ",
      draws.num_samples(), " samples of ", draws.type(), "."));
  for (int i = 0; i < n; i++) {
    auto d = draws.shape()[i];
    auto s = sal.shape()[i];
    DALI_ENFORCE(s[0] > 0 && s[1] > 0, make_string(
        "box_search: saliency map ", i, " is empty (shape ", s, ")."));
    if (args.keep())
      DALI_ENFORCE(d.sample_dim() == 2 && d[0] >= 1 && d[1] == 2, make_string(
          "box_search: `draws` for KeepAugment are (T, 2) candidate centres (cy, cx), T >= 1; "
          "sample ", i, " has shape ", d, "."));
    else
      DALI_ENFORCE(d.num_elements() == 2, make_string(
          "box_search: `draws` for \"", args.method == Method::kPeak ? "peak" : "max_window",
          "\" are 2 values per sample (", args.method == Method::kPeak ? "cut_h, cut_w" : "ry, rx",
          "); sample ", i, " has shape ", d, "."));
    if constexpr (std::is_same_v<Backend, ::dali::CPUBackend>) {
      if (args.method == Method::kMaxWindow && args.jitter > 0) {
        // The shift is lo + r % (hi - lo + 1): r must be a uniform draw in [0, 2^31 - 1).  (The
        // GPU operator cannot read device values in Setup; its kernel keeps any r in the image.)
        for (int k = 0; k < 2; k++) {
          const int32_t r = draws.template tensor<int32_t>(i)[k];
          DALI_ENFORCE(r >= 0 && r < std::numeric_limits<int32_t>::max(), make_string(
              "box_search: `draws` for \"max_window\" are (ry, rx) uniform in [0, 2**31 - 1); "
              "sample ", i, " holds ", r, "."));
        }
      }
    }
  }
  std::vector<int> map_index(n);
  if (ws.NumInput() > 2) {
    const auto &index = ws.Input<::dali::CPUBackend>(2);
    CheckRowIndex("box_search", "map_index", index, n);
    map_index = ReadRowIndex("box_search", "map_index", index, n);
  } else {
    for (int i = 0; i < n; i++) map_index[i] = i;
  }
  output_desc.resize(1);
  output_desc[0] = {::dali::uniform_list_shape(n, ::dali::TensorShape<2>(1, 4)), DALI_INT32};
  return map_index;
}

template std::vector<int> SetupBoxSearch<::dali::CPUBackend>(const BoxSearchArgs &,
    const ::dali::Workspace &, std::vector<::dali::OutputDesc> &);
template std::vector<int> SetupBoxSearch<::dali::GPUBackend>(const BoxSearchArgs &,
    const ::dali::Workspace &, std::vector<::dali::OutputDesc> &);

void BoxSearch::RunImpl(::dali::Workspace &ws) {
  const auto &sal = ws.Input<::dali::CPUBackend>(0);
  const auto &draws = ws.Input<::dali::CPUBackend>(1);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  auto &tp = ws.GetThreadPool();
  if (static_cast<int>(scratch_.size()) < tp.NumThreads()) scratch_.resize(tp.NumThreads());
  for (int i = 0; i < sal.num_samples(); i++) {
    const int m = map_index_[i];
    int32_t *box = out.mutable_tensor<int32_t>(i);
    if (m < 0) {  // row not occluded
      std::fill(box, box + 4, -1);
      continue;
    }
    int H = static_cast<int>(sal.shape()[m][0]), W = static_cast<int>(sal.shape()[m][1]);
    const int size = args_.Size(spec_, ws, i);
    tp.AddWork([&, i, m, H, W, box, size](int thread) {
      const float *map = sal.tensor<float>(m);
      const int32_t *d = draws.tensor<int32_t>(i);
      SearchScratch &s = scratch_[thread];
      if (args_.method == Method::kPeak) {
        PeakBox(map, H, W, d, args_.quantize, box);
        return;
      }
      Integral(map, H, W, s.integral);
      if (args_.method == Method::kMaxWindow)
        MaxWindow(s.integral, H, W, size, args_.stride, args_.jitter, d, s.scores, box);
      else
        KeepBox(s.integral, H, W, size / 2, args_.tau, args_.method == Method::kKeepCut, d,
                static_cast<int>(draws.shape()[i][0]), s, box);
    }, static_cast<int64_t>(H) * W);
  }
  tp.RunAll();
}

}  // namespace occlusion

DALI_REGISTER_OPERATOR(occlusion__EraseBoxes, ::occlusion::EraseBoxes<::dali::CPUBackend>,
                       ::dali::CPU);
DALI_REGISTER_OPERATOR(occlusion__PasteBoxes, ::occlusion::PasteBoxes<::dali::CPUBackend>,
                       ::dali::CPU);
DALI_REGISTER_OPERATOR(occlusion__BoxSearch, ::occlusion::BoxSearch, ::dali::CPU);

DALI_SCHEMA(occlusion__EraseBoxes)
    .DocStr(R"code(Fills each sample's boxes with a constant: Cutout (DeVries & Taylor 2017),
Hide-and-Seek (Singh & Lee 2017), Fong & Vedaldi occlusion.

The boxes are a regular input, so boxes searched inside the pipeline (on the GPU, from a
saliency map) can drive it.  Boxes are int32 ``(K, 4)`` per sample, ``(y0, x0, y1, x1)``
half-open in pixels, clipped to the image; empty boxes (e.g. ``-1`` padding) cover nothing.
Overlapping boxes are filled once (their union).)code")
    .NumInput(2)
    .InputDox(0, "images", "TensorList", "``CHW`` or ``HWC`` uint8 / float16 / float32 images.")
    .InputDox(1, "boxes", "TensorList", "int32 ``(K, 4)`` boxes per sample.")
    .NumOutput(1)
    .AddOptionalArg("fill", R"code(One value, or one per channel, in the images' units (after
normalisation 0 is the dataset mean, the Cutout reference's fill); integers in [0, 255] for uint8.)code",
                    std::vector<float>{0.f});

DALI_SCHEMA(occlusion__PasteBoxes)
    .DocStr(R"code(Pastes a partner's pixels into each sample's boxes, at the same location:
CutMix (Yun et al. 2019, Algorithm A1: ``input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1,
x0:x1]``), SaliencyMix, KeepAugment's selective-paste.

Without ``partner_index`` sample ``i`` takes ``partners[i]``; with it, ``partners[partner_index[i]]``,
so ``partners`` may be the images themselves (no ``permute_batch`` copy); ``-1`` leaves the sample
unchanged.  On the CPU an index outside ``[-1, len(partners))`` raises; the GPU kernel cannot raise
and treats it as ``-1``.  Boxes as in ``erase_boxes``; overlaps are pasted once.)code")
    .NumInput(3, 4)
    .InputDox(0, "images", "TensorList", "``CHW`` or ``HWC`` uint8 / float16 / float32 images.")
    .InputDox(1, "boxes", "TensorList", "int32 ``(K, 4)`` boxes per sample.")
    .InputDox(2, "partners", "TensorList", "Images to take the boxes' pixels from (same type).")
    .InputDox(3, "partner_index", "TensorList", "Optional int32 scalar per sample: the partner row.")
    .NumOutput(1);

DALI_SCHEMA(occlusion__BoxSearch)
    .DocStr(R"code(Searches a box in each saliency map.  CPU: one sample per pool thread; GPU: one
launch for the batch, one thread block per row, the CPU operator's boxes bit for bit.

``method="peak"``: SaliencyMix (Uddin et al. 2021, official ``saliency_bbox``): the first maximum
of ``(map * 255).astype(uint8)`` (``quantize=True``) or of the float map; ``draws`` = ``(cut_h,
cut_w)``; box = ``clip(peak -+ cut // 2)``.

``method="max_window"``: Fong & Vedaldi 2019 (arXiv 1910.10651): the first ``size x size`` window of
largest saliency sum on the ``stride`` grid (integral image), at ``(y0, x0)`` in an ``H x W`` map,
then jittered by a shift uniform over the integer shifts within ``+-jitter`` that keep it inside:
``draws`` = ``(ry, rx)`` int32 uniform in ``[0, 2**31 - 1)`` drawn on the host (read only when
``jitter > 0``), ``lo_y = max(-jitter, -y0)``, ``hi_y = min(jitter, H - size - y0)``,
``dy = lo_y + ry % (hi_y - lo_y + 1)`` (same for x); box ``(y0+dy, x0+dx, y0+dy+size, x0+dx+size)``.
A map smaller than the window gives ``(-1, -1, -1, -1)``.

``method="keep_cut" | "keep_paste"``: KeepAugment (Gong et al. 2021, arXiv 2011.11778): region
score = saliency *sum* over the box ``clip(c -+ size // 2)`` around each pixel ``c`` (Eq. 1),
threshold = the ``tau``-quantile of the scores of every pixel as centre (NumPy's linear method,
exactly); ``draws`` = ``(T, 2)`` candidate centres ``(cy, cx)``; the first one scoring below (cut) /
above (paste) the threshold, else the lowest / highest-scoring one (first among equal).

With ``map_index``, row ``i`` searches the map ``saliency[map_index[i]]`` with its own draws
(SaliencyMix: the partner's map, no ``permute_batch`` copy of the maps), and ``-1`` gives the
row the box ``(-1, -1, -1, -1)`` (not occluded).

Output: int32 ``(1, 4)`` per sample.)code")
    .NumInput(2, 3)
    .InputDox(0, "saliency", "TensorList", "``(H, W)`` float32 saliency maps.")
    .InputDox(1, "draws", "TensorList", "int32 random draws of the method (see above).")
    .InputDox(2, "map_index", "TensorList", "Optional int32 scalar per row: the map to search, -1: none (CPU input).")
    .InputDevice(2, ::dali::InputDevice::CPU)
    .NumOutput(1)
    .AddArg("method", "``peak``, ``max_window``, ``keep_cut`` or ``keep_paste``.", DALI_STRING)
    .AddOptionalArg("size", R"code(Window side (max_window) or region side (keep_*); per sample as an
argument input (KeepCutMix: the row's CutMix side, >= 0).)code", 56, true)
    .AddOptionalArg("stride", "Window stride (max_window).", 1)
    .AddOptionalArg("jitter", R"code(Jitter amplitude tau in pixels (max_window), >= 0; Fong & Vedaldi
use 16 at 224 px.  0 disables the jitter (the draws are then not read).)code", 16)
    .AddOptionalArg("tau", R"code(Quantile level in [0, 1] (keep_*), as a decimal string: DALI float
arguments are float32, and the level must be the float64 NumPy's quantile gets.)code",
                    std::string("0.6"))
    .AddOptionalArg("quantize", "Peak of the uint8-quantised map, as the reference (peak).", true);
