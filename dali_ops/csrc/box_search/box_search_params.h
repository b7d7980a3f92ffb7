// box_search's parameters, DALI-free: what the DALI shell (box_search.cc) parses from the operator's
// arguments and hands to the CPU kernel (box_search_cpu.h) and the CUDA kernel (box_search_gpu.cuh),
// so the two kernels read one definition of the methods.

#ifndef OCCLUSION_BOX_SEARCH_BOX_SEARCH_PARAMS_H_
#define OCCLUSION_BOX_SEARCH_BOX_SEARCH_PARAMS_H_

#include "common/host_dev.h"

namespace occlusion {
namespace kernels {

enum SearchMethod : int {
  kSearchPeak = 0, kSearchMaxWindow = 1, kSearchKeepCut = 2, kSearchKeepPaste = 3, kSearchTopkCells = 4
};

struct SearchParams {
  int method = kSearchPeak;
  int size = 56;     // max_window: window side; keep_*: Cutout box side (half = size / 2)
  int stride = 1;    // max_window
  int jitter = 16;   // max_window
  double tau = 0.6;  // keep_*
  int quantize = 1;  // peak
  int grid = 7;      // topk_cells: cells per side
  int top_k = 6;     // topk_cells: cells kept
  int image_h = 0;   // topk_cells: the image the cell boxes are for; 0: the map's own H, W
  int image_w = 0;
};

/// Boxes one row gets: the g * g - k cells not kept (topk_cells), else one.
OCC_HOST_DEV inline int SearchBoxes(const SearchParams &p) {
  return p.method == kSearchTopkCells ? p.grid * p.grid - p.top_k : 1;
}

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_BOX_SEARCH_BOX_SEARCH_PARAMS_H_
