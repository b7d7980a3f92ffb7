// box_search on the CPU, DALI-free.  See box_search_cpu.h.

#include "box_search/box_search_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/boxes.h"
#include "common/multiversion.h"
#include "box_search/topk_cells.h"

namespace occlusion {
namespace kernels {

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
/// sequential chain, the order box_search_gpu.cuh's kernel keeps so that every box sum is the same.
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

/// Attentive CutMix (Walawalkar et al. 2020, arXiv 2003.13048): the g x g cells' scores, the top-k kept,
/// the boxes of the others (topk_cells.h); `s.scores` holds the scores then the kept flags.
void TopkCells(const float *map, int H, int W, const SearchParams &p, SearchScratch &s, int32_t *boxes) {
  const int n = p.grid * p.grid;
  s.scores.resize(2 * static_cast<size_t>(n));
  double *scores = s.scores.data(), *kept = scores + n;
  for (int c = 0; c < n; c++) scores[c] = CellScore(map, H, W, p.grid, c);
  for (int c = 0; c < n; c++) kept[c] = CellRank(scores, n, c) < p.top_k ? 1.0 : 0.0;
  const int ih = p.image_h > 0 ? p.image_h : H, iw = p.image_w > 0 ? p.image_w : W;
  int at = 0;
  for (int c = 0; c < n; c++)
    if (kept[c] == 0.0) CellBox(c, p.grid, ih, iw, boxes + 4 * at++);
}

}  // namespace

void BoxSearchCpu(const SearchParams &p, const float *map, int H, int W, const int32_t *draws,
                  int tries, SearchScratch &s, int32_t *box) {
  if (p.method == kSearchPeak) {
    PeakBox(map, H, W, draws, p.quantize != 0, box);
    return;
  }
  if (p.method == kSearchTopkCells) {
    TopkCells(map, H, W, p, s, box);
    return;
  }
  Integral(map, H, W, s.integral);
  if (p.method == kSearchMaxWindow)
    MaxWindow(s.integral, H, W, p.size, p.stride, p.jitter, draws, s.scores, box);
  else
    KeepBox(s.integral, H, W, p.size / 2, p.tau, p.method == kSearchKeepCut, draws, tries, s, box);
}

}  // namespace kernels
}  // namespace occlusion
