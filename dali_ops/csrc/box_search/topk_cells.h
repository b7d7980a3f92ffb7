// Attentive CutMix's cell rule (Walawalkar et al. 2020, arXiv 2003.13048; openmixup `attentivemix`:
// features.mean(1) -> topk(k) over the 7 x 7 cells -> the mask upsampled nearest, the top-k cells kept and
// every other cell pasted from the partner), DALI-free and host + device: the CPU kernel
// (box_search_cpu.cc) and the CUDA kernel (box_search_gpu.cuh) call these very functions, so both give
// the same boxes.
//
//   * cells: a g x g grid over n pixels has cells of n / g pixels from 0, the last one also covering the
//     remainder (kernels.areas.cell_edges; nearest upsampling when g divides n);
//   * score of a cell: the mean of the map over the cell's pixels (float64, summed row-major, then divided
//     by the pixel count); a map that is its own grid (h = w = g) scores each cell by its value;
//   * kept: the k cells of largest score, the lower row-major index first among equal scores (a stable
//     sort, as kernels' NumPy restatement); a NaN score ranks with -inf;
//   * boxes: the g * g - k cells *not* kept (the partner's), row-major, in the cell geometry of the image
//     the boxes are for (image_h x image_w pixels).
// Add / divide only: nothing here can be contracted into an FMA.

#ifndef OCCLUSION_BOX_SEARCH_TOPK_CELLS_H_
#define OCCLUSION_BOX_SEARCH_TOPK_CELLS_H_

#include <cmath>
#include <cstdint>

#include "common/host_dev.h"

namespace occlusion {
namespace kernels {

/// Edge i (0 <= i <= g) of a g-cell grid over n pixels (kernels.areas.cell_edges).
OCC_HOST_DEV inline int CellEdge(int i, int g, int n) { return i < g ? i * (n / g) : n; }

/// The score of cell c (row-major) of a g x g grid over the H x W map: its mean, -inf for NaN.
OCC_HOST_DEV inline double CellScore(const float *map, int H, int W, int g, int c) {
  const int i = c / g, j = c - (c / g) * g;
  const int y0 = CellEdge(i, g, H), y1 = CellEdge(i + 1, g, H);
  const int x0 = CellEdge(j, g, W), x1 = CellEdge(j + 1, g, W);
  double acc = 0.0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) acc += static_cast<double>(map[static_cast<int64_t>(y) * W + x]);
  const double v = acc / (static_cast<double>(y1 - y0) * static_cast<double>(x1 - x0));
  return v != v ? -HUGE_VAL : v;
}

/// How many of the n scores come before cell c: larger, or equal with a lower index.
OCC_HOST_DEV inline int CellRank(const double *scores, int n, int c) {
  int r = 0;
  for (int d = 0; d < n; d++) r += scores[d] > scores[c] || (scores[d] == scores[c] && d < c);
  return r;
}

/// The box (y0, x0, y1, x1) of cell c of a g x g grid over an image_h x image_w image.
OCC_HOST_DEV inline void CellBox(int c, int g, int image_h, int image_w, int32_t *box) {
  const int i = c / g, j = c - (c / g) * g;
  box[0] = CellEdge(i, g, image_h);
  box[1] = CellEdge(j, g, image_w);
  box[2] = CellEdge(i + 1, g, image_h);
  box[3] = CellEdge(j + 1, g, image_w);
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_BOX_SEARCH_TOPK_CELLS_H_
