// box_search on the GPU, DALI-free: one launch per batch, one thread block per output row, every
// step parallel across the block (as DALI separates dali/kernels from dali/operators, the operator
// in box_search.cu is a thin shell around LaunchBoxSearch; tests/gpu_check builds this header into
// a torch extension on a GPU machine without DALI).
//
// The rules are those of the CPU kernel (box_search_cpu.cc), and every floating-point value that
// decides a box is computed in the CPU kernel's order, so the boxes are identical:
//   * integral image: float64, row running sums then column running sums, each a sequential chain
//     per row / per column as on the CPU (a parallel prefix scan would round differently); the
//     rows (then the columns) of a map run in parallel across the block, the rows read through a
//     shared-memory tile so that global loads and stores stay coalesced;
//   * window sums / region sums: ((ii[y1][x1] - ii[y0][x1]) - ii[y1][x0]) + ii[y0][x0];
//   * SaliencyMix peak: block argmax (first maximum) of the uint8-quantised or the float map;
//   * Fong & Vedaldi (arXiv 1910.10651) max window: block argmax of the stride-grid window sums
//     (first maximum, NaN never wins, a NaN first window keeps the first window as the CPU's
//     strict `>` scan does), then the jitter uniform over the in-image shifts;
//   * KeepAugment (Gong et al. 2021, arXiv 2011.11778): region score = saliency sum over the box
//     clip(c -+ size/2) (Eq. 1) for every pixel; the CPU kernel decides "below / above the
//     tau-quantile" by counting, which is the same as comparing with numpy.quantile's linear lerp
//     of the order statistics a = s_(k), b = s_(k+1): v > b and v < a decide at once, otherwise
//     the lerp decides.  a and b come from an exact radix select over the scores' bit patterns
//     (11-bit digits, the first histogram built while the scores are written);
//     the lerp uses __dmul_rn / __dadd_rn / __dsub_rn so that no FMA contraction changes it;
//   * Attentive CutMix (Walawalkar et al. 2020, arXiv 2003.13048) top-k cells: the functions of
//     topk_cells.h, one thread per cell (score, rank, box), so every value is the CPU's.
//
// Entry point: LaunchBoxSearch(samples (device array), n, params, stream).  Each sample names its
// map (null: the row gets the box (-1, -1, -1, -1)), its draws and output box (device pointers) and
// a float64 scratch of BoxSearchScratchDoubles(params, H, W) values.

#ifndef OCCLUSION_BOX_SEARCH_BOX_SEARCH_GPU_CUH_
#define OCCLUSION_BOX_SEARCH_BOX_SEARCH_GPU_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "box_search/box_search_params.h"
#include "box_search/topk_cells.h"
#include "common/boxes.h"

namespace occlusion {
namespace kernels {

struct SearchSample {
  const float *map = nullptr;      // H x W row-major (device); null: box (-1, -1, -1, -1)
  const int32_t *draws = nullptr;  // peak: (cut_h, cut_w); max_window: (ry, rx); keep: T x (cy, cx)
  int32_t *box = nullptr;          // 4 * SearchBoxes(params) int32 (device)
  double *scratch = nullptr;       // BoxSearchScratchDoubles(params, H, W) float64 (device)
  int H = 0, W = 0;
  int tries = 1;                   // keep: T
  int size = -1;                   // this row's SearchParams::size (KeepCutMix's CutMix side); -1: p.size
};

/// float64 scratch values one sample needs: the (H+1) x (W+1) integral image, plus H x W region
/// scores for KeepAugment; none for the peak; the cells' scores and kept flags for topk_cells.
inline int64_t BoxSearchScratchDoubles(const SearchParams &p, int H, int W) {
  if (p.method == kSearchPeak) return 0;
  if (p.method == kSearchTopkCells) return 2 * static_cast<int64_t>(p.grid) * p.grid;
  const int64_t ii = static_cast<int64_t>(H + 1) * (W + 1);
  return p.method == kSearchMaxWindow ? ii : ii + static_cast<int64_t>(H) * W;
}

namespace detail {

constexpr int kThreads = 256;       // one block per row; the reductions below assume it
constexpr int kWarps = kThreads / 32;
constexpr int kTileCols = 16;       // integral row pass: kThreads rows x kTileCols columns in shared

struct Shared {
  double tile[kThreads * (kTileCols + 1)];  // +1: no bank conflicts on the per-row scan
  double red_v[kWarps];
  long long red_i[kWarps];
  unsigned long long red_k[kWarps];
  unsigned int hist[2048];  // radix select: 11-bit digits
  unsigned long long key;
  long long rank;
};

/// Block argmax: the largest v (NaN never wins), the smallest index among equal ones.  Every thread
/// gets the result.  (v, i) start as (-inf, sentinel) in threads that saw nothing.
__device__ __forceinline__ void ArgMaxCombine(double &v, long long &i, double ov, long long oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__device__ void BlockArgMax(Shared &sh, double &v, long long &i) {
  for (int off = 16; off > 0; off >>= 1)
    ArgMaxCombine(v, i, __shfl_down_sync(0xffffffffu, v, off), __shfl_down_sync(0xffffffffu, i, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) {
    sh.red_v[warp] = v;
    sh.red_i[warp] = i;
  }
  __syncthreads();
  v = sh.red_v[0];
  i = sh.red_i[0];
  for (int w = 1; w < kWarps; w++) ArgMaxCombine(v, i, sh.red_v[w], sh.red_i[w]);
}

__device__ long long BlockSum(Shared &sh, long long v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh.red_i[warp] = v;
  __syncthreads();
  long long s = 0;
  for (int w = 0; w < kWarps; w++) s += sh.red_i[w];
  return s;
}

__device__ unsigned long long BlockMin(Shared &sh, unsigned long long v) {
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned long long o = __shfl_down_sync(0xffffffffu, v, off);
    v = o < v ? o : v;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh.red_k[warp] = v;
  __syncthreads();
  unsigned long long m = sh.red_k[0];
  for (int w = 1; w < kWarps; w++) m = sh.red_k[w] < m ? sh.red_k[w] : m;
  return m;
}

/// A double's bit pattern as an unsigned key in the order of the values (-0 just below +0).
__device__ __forceinline__ unsigned long long OrderKey(double d) {
  const unsigned long long b = static_cast<unsigned long long>(__double_as_longlong(d));
  return (b >> 63) ? ~b : b | 0x8000000000000000ull;
}

__device__ __forceinline__ double KeyValue(unsigned long long k) {
  const unsigned long long b = (k >> 63) ? k & 0x7fffffffffffffffull : ~k;
  return __longlong_as_double(static_cast<long long>(b));
}

/// Radix select digits: 5 x 11 bits then 9 (six passes over the scores; 2048 bins in shared memory).
/// (functions, not constexpr arrays: a namespace-scope array is not usable in device code)
__host__ __device__ constexpr int DigitBits(int pass) { return pass < 5 ? 11 : 9; }
__host__ __device__ constexpr int DigitShift(int pass) { return pass < 5 ? 53 - 11 * pass : 0; }

/// The key of the k-th smallest (0-based) of s[0:n]: exact radix select on the value-ordered bit
/// patterns.  The caller has already built the first pass's histogram of the top 11 bits in sh.hist
/// (fused into the pass that writes the scores), so this reads the scores five more times.
__device__ unsigned long long SelectKey(Shared &sh, const double *s, int64_t n, long long k) {
  unsigned long long prefix = 0, mask = 0;
  if (threadIdx.x == 0) sh.rank = k;
  for (int pass = 0; pass < 6; pass++) {
    const int shift = DigitShift(pass), bins = 1 << DigitBits(pass);
    const unsigned long long digit_mask = static_cast<unsigned long long>(bins - 1);
    if (pass > 0) {
      for (int d = threadIdx.x; d < bins; d += blockDim.x) sh.hist[d] = 0;
      __syncthreads();
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const unsigned long long key = OrderKey(s[i]);
        if ((key & mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & digit_mask], 1u);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      long long r = sh.rank;
      int d = 0;
      for (; d < bins - 1 && r >= static_cast<long long>(sh.hist[d]); d++) r -= sh.hist[d];
      sh.rank = r;
      sh.key = static_cast<unsigned long long>(d);
    }
    __syncthreads();
    prefix |= sh.key << shift;
    mask |= digit_mask << shift;
    __syncthreads();  // sh.key and sh.hist are rewritten by the next pass
  }
  return prefix;
}

/// Integral image of `map` into ii ((H+1) x (W+1)), in the CPU kernel's order (see the top).
__device__ void BlockIntegral(Shared &sh, const float *map, int H, int W, double *ii) {
  const int S = W + 1;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int x = tid; x <= W; x += nt) ii[x] = 0.0;
  for (int y = tid; y <= H; y += nt) ii[static_cast<int64_t>(y) * S] = 0.0;
  constexpr int TS = kTileCols + 1;
  for (int y0 = 0; y0 < H; y0 += nt) {
    const int rows = H - y0 < nt ? H - y0 : nt;
    double acc = 0.0;  // running sum of row y0 + tid
    for (int x0 = 0; x0 < W; x0 += kTileCols) {
      const int cols = W - x0 < kTileCols ? W - x0 : kTileCols;
      __syncthreads();
      for (int i = tid; i < rows * cols; i += nt) {
        const int r = i / cols, c = i - r * cols;
        sh.tile[r * TS + c] = static_cast<double>(map[static_cast<int64_t>(y0 + r) * W + x0 + c]);
      }
      __syncthreads();
      if (tid < rows) {
        for (int c = 0; c < cols; c++) {
          acc += sh.tile[tid * TS + c];
          sh.tile[tid * TS + c] = acc;
        }
      }
      __syncthreads();
      for (int i = tid; i < rows * cols; i += nt) {
        const int r = i / cols, c = i - r * cols;
        ii[static_cast<int64_t>(y0 + r + 1) * S + x0 + c + 1] = sh.tile[r * TS + c];
      }
    }
  }
  __syncthreads();
  // column pass: ii[y][x] = ii[y - 1][x] + (row sum), one chain per column, adjacent threads on
  // adjacent columns (coalesced)
  for (int x = tid + 1; x <= W; x += nt) {
    double acc = ii[x];
    for (int y = 1; y <= H; y++) {
      const int64_t at = static_cast<int64_t>(y) * S + x;
      acc = ii[at] + acc;
      ii[at] = acc;
    }
  }
  __syncthreads();
}

__device__ void PeakBox(Shared &sh, const SearchSample &s, const SearchParams &p) {
  const int64_t n = static_cast<int64_t>(s.H) * s.W;
  double best = -__longlong_as_double(0x7ff0000000000000ll);  // -inf
  long long at = n;                                          // sentinel: nothing seen
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = s.map[i];
    // the CPU scans with a strict `>` from index 0 (first maximum); a NaN never wins
    const double key = p.quantize ? static_cast<double>(QuantizeU8(v)) : static_cast<double>(v);
    ArgMaxCombine(best, at, key, i);
  }
  BlockArgMax(sh, best, at);
  // float map: the CPU's `sal[i] > sal[at]` scan keeps index 0 when sal[0] is NaN
  if (at >= n || (!p.quantize && s.map[0] != s.map[0])) at = 0;
  if (threadIdx.x == 0) {
    const int py = static_cast<int>(at / s.W), px = static_cast<int>(at % s.W);
    CentredBox(py, px, s.draws[0] / 2, s.draws[1] / 2, s.H, s.W, s.box);
  }
}

__device__ void MaxWindow(Shared &sh, const SearchSample &s, const SearchParams &p) {
  const int H = s.H, W = s.W, size = p.size, stride = p.stride, S = W + 1;
  const double *ii = s.scratch;
  BlockIntegral(sh, s.map, H, W, s.scratch);
  const int ny = (H - size) / stride + 1, nx = (W - size) / stride + 1;
  const long long total = static_cast<long long>(ny) * nx;
  double best = -__longlong_as_double(0x7ff0000000000000ll);
  long long at = total;
  for (long long i = threadIdx.x; i < total; i += blockDim.x) {
    const int y = static_cast<int>(i / nx) * stride, x = static_cast<int>(i % nx) * stride;
    ArgMaxCombine(best, at, BoxSum(ii, S, y, x, y + size, x + size), i);
  }
  BlockArgMax(sh, best, at);
  const double first = BoxSum(ii, S, 0, 0, size, size);
  if (at >= total || first != first) at = 0;  // the CPU keeps a NaN first window
  if (threadIdx.x == 0) {
    const int by = static_cast<int>(at / nx) * stride, bx = static_cast<int>(at % nx) * stride;
    const int y0 = by + (p.jitter > 0 ? JitterShift(by, H - size, p.jitter, s.draws[0]) : 0);
    const int x0 = bx + (p.jitter > 0 ? JitterShift(bx, W - size, p.jitter, s.draws[1]) : 0);
    s.box[0] = y0;
    s.box[1] = x0;
    s.box[2] = y0 + size;
    s.box[3] = x0 + size;
  }
}

__device__ void KeepBox(Shared &sh, const SearchSample &s, const SearchParams &p) {
  const int H = s.H, W = s.W, S = W + 1, half = p.size / 2;
  const bool below = p.method == kSearchKeepCut;
  double *ii = s.scratch;
  double *scores = s.scratch + static_cast<int64_t>(H + 1) * S;
  BlockIntegral(sh, s.map, H, W, ii);
  const int64_t n = static_cast<int64_t>(H) * W;
  for (int d = threadIdx.x; d < (1 << DigitBits(0)); d += blockDim.x) sh.hist[d] = 0;
  __syncthreads();
  // the scores, and the radix select's first histogram (top 11 bits) in the same pass
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int y = static_cast<int>(i / W), x = static_cast<int>(i - static_cast<int64_t>(y) * W);
    int32_t r[4];  // the candidate region: the clipped box around (y, x)
    CentredBox(y, x, half, half, H, W, r);
    const double v = BoxSum(ii, S, r[0], r[1], r[2], r[3]);
    scores[i] = v;
    atomicAdd(&sh.hist[OrderKey(v) >> DigitShift(0)], 1u);
  }
  __syncthreads();
  // numpy.quantile(method="linear"): virtual index (n - 1) * tau, its floor k, gamma = index - k.
  // __dmul_rn / __dsub_rn: no contraction of the product into the subtraction (the CPU and NumPy
  // round each step).
  const double pos = __dmul_rn(static_cast<double>(n - 1), p.tau);
  long long k = static_cast<long long>(floor(pos));
  if (k > n - 1) k = n - 1;
  const long long k1 = k + 1 < n ? k + 1 : n - 1;
  const double gamma = __dsub_rn(pos, static_cast<double>(k));
  // The CPU's tries: the first that passes, else the lowest (cut) / highest (paste) score, first
  // among equal.  The first kFastTries tries are decided as the CPU decides them, by counting the
  // scores below / at most v (one pass each; a try passes with probability ~tau, so most maps end
  // here); a try whose v is one of the two order statistics around the quantile (the counts cannot
  // decide it) or a later try needs a and b themselves: radix select, then each try is O(1).
  constexpr int kFastTries = 2;
  int pick = -1, fb = 0, t = 0;
  double fb_score = 0.0;
  auto try_score = [&](int tt) {
    const int cy = ClampInt(s.draws[2 * tt], 0, H - 1), cx = ClampInt(s.draws[2 * tt + 1], 0, W - 1);
    return scores[static_cast<int64_t>(cy) * W + cx];
  };
  auto update_fallback = [&](int tt, double v) {  // idempotent for a try seen twice
    if (tt == 0 || (below ? v < fb_score : v > fb_score)) {
      fb_score = v;
      fb = tt;
    }
  };
  for (; t < s.tries && t < kFastTries && pick < 0; t++) {
    const double v = try_score(t);
    update_fallback(t, v);
    long long lt = 0, le = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      lt += scores[i] < v;
      le += scores[i] <= v;
    }
    lt = BlockSum(sh, lt);
    le = BlockSum(sh, le);
    if (k1 < lt) {          // s_(k1) < v: the quantile is below v
      if (!below) pick = t;
    } else if (k >= le) {   // s_(k) > v: the quantile is above v
      if (below) pick = t;
    } else {
      break;                // v is s_(k) or s_(k1): the lerp decides (below)
    }
  }
  if (pick < 0 && t < s.tries) {
    const unsigned long long ka = SelectKey(sh, scores, n, k);
    // b = s_(k1): a itself when more than k1 scores are <= a, else the smallest score above a
    long long at_most = 0;
    unsigned long long above = ~0ull;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const unsigned long long key = OrderKey(scores[i]);
      at_most += key <= ka;
      if (key > ka && key < above) above = key;
    }
    at_most = BlockSum(sh, at_most);
    above = BlockMin(sh, above);
    const double a = KeyValue(ka);
    const double b = at_most > k1 ? a : KeyValue(above);
    const double diff = __dsub_rn(b, a);
    const double thr = gamma >= 0.5 ? __dsub_rn(b, __dmul_rn(diff, __dsub_rn(1.0, gamma)))
                                    : __dadd_rn(a, __dmul_rn(diff, gamma));
    // v > b / v < a decide without the lerp exactly as the CPU's counts do
    for (; t < s.tries && pick < 0; t++) {
      const double v = try_score(t);
      update_fallback(t, v);
      bool passes;
      if (b < v) passes = !below;
      else if (a > v) passes = below;
      else passes = below ? v < thr : v > thr;
      if (passes) pick = t;
    }
  }
  if (threadIdx.x != 0) return;
  const int chosen = pick < 0 ? fb : pick;
  CentredBox(ClampInt(s.draws[2 * chosen], 0, H - 1), ClampInt(s.draws[2 * chosen + 1], 0, W - 1), half, half,
             H, W, s.box);
}

/// topk_cells.h's rule, one thread per cell: scores, then the kept flags, then the boxes of the cells
/// not kept (each at its rank among them); scratch holds the scores then the flags.
__device__ void TopkCells(const SearchSample &s, const SearchParams &p) {
  const int g = p.grid, n = g * g;
  double *scores = s.scratch, *kept = s.scratch + n;
  for (int c = threadIdx.x; c < n; c += blockDim.x) scores[c] = CellScore(s.map, s.H, s.W, g, c);
  __syncthreads();
  for (int c = threadIdx.x; c < n; c += blockDim.x) kept[c] = CellRank(scores, n, c) < p.top_k ? 1.0 : 0.0;
  __syncthreads();
  const int ih = p.image_h > 0 ? p.image_h : s.H, iw = p.image_w > 0 ? p.image_w : s.W;
  for (int c = threadIdx.x; c < n; c += blockDim.x) {
    if (kept[c] != 0.0) continue;
    int at = 0;
    for (int d = 0; d < c; d++) at += kept[d] == 0.0;
    CellBox(c, g, ih, iw, s.box + 4 * at);
  }
}

__global__ void __launch_bounds__(kThreads) BoxSearchKernel(const SearchSample *samples,
                                                            SearchParams p) {
  __shared__ Shared sh;
  const SearchSample s = samples[blockIdx.x];
  if (s.size >= 0) p.size = s.size;
  const bool no_box = s.map == nullptr || s.H <= 0 || s.W <= 0 ||
                      (p.method == kSearchMaxWindow && (p.size > s.H || p.size > s.W));
  if (no_box) {  // row not occluded, or no window fits
    for (int i = threadIdx.x; i < 4 * SearchBoxes(p); i += blockDim.x) s.box[i] = -1;
    return;
  }
  if (p.method == kSearchTopkCells) TopkCells(s, p);
  else if (p.method == kSearchPeak) PeakBox(sh, s, p);
  else if (p.method == kSearchMaxWindow) MaxWindow(sh, s, p);
  else KeepBox(sh, s, p);
}

}  // namespace detail

#ifndef OCC_KERNEL_EMULATION  // tests/cuda_emulation runs the kernel on the host, without <<<>>>
/// One launch for the batch: block i searches samples[i] (a device array of n descriptors).
inline cudaError_t LaunchBoxSearch(const SearchSample *samples, int n, const SearchParams &params,
                                   cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  detail::BoxSearchKernel<<<n, detail::kThreads, 0, stream>>>(samples, params);
  return cudaGetLastError();
}
#endif

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_BOX_SEARCH_BOX_SEARCH_GPU_CUH_
