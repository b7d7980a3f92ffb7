// box_search on the CPU, DALI-free: the box of one saliency map, on the calling thread.  The DALI
// operator (box_search.cc) runs one map per thread of its pool; tests/cpu_kernels builds this kernel
// alone and checks it against the NumPy oracles of tests/oracles.py.
//
// The methods (their box rules in common/boxes.h, restated in NumPy by tests/oracles.py):
//   peak        SaliencyMix (Uddin et al. 2021, official `saliency_bbox`): the first maximum of
//               (map * 255).astype(uint8) (or of the float map), box = clip(peak -+ cut // 2);
//   max_window  Fong & Vedaldi (arXiv 1910.10651): the first S x S window of largest sum on the
//               stride grid, jittered uniformly over the in-image shifts within +-jitter;
//   keep_*      KeepAugment (Gong et al. 2021, arXiv 2011.11778): the first drawn centre whose
//               region scores below (cut) / above (paste) the tau-quantile of all regions;
//   topk_cells  Attentive CutMix (Walawalkar et al. 2020, arXiv 2003.13048): the cells of a g x g grid
//               outside the k of largest mean (topk_cells.h), the cells the partner pastes.
// Every floating-point value that decides a box is computed in the order box_search_gpu.cuh keeps,
// so both kernels give the same boxes.  Compile with -ffp-contract=off (CMakeLists.txt says why).

#ifndef OCCLUSION_BOX_SEARCH_BOX_SEARCH_CPU_H_
#define OCCLUSION_BOX_SEARCH_BOX_SEARCH_CPU_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "box_search/box_search_params.h"

namespace occlusion {
namespace kernels {

/// Working memory of BoxSearchCpu, one per thread (grown on demand, never shrunk).
struct SearchScratch {
  std::vector<double> integral;
  std::vector<double> scores;  // KeepAugment region scores, one grid row of max-window sums, or cells
  std::vector<std::pair<double, bool>> tested;  // KeepAugment: (score, passes) of the tries so far
};

/// The box (4 int32: y0, x0, y1, x1) of the H x W float32 `map` (H, W >= 1) by `p.method`, `p.size`
/// being this map's side; topk_cells writes SearchBoxes(p) boxes (H, W >= p.grid).  `draws`: peak
/// (cut_h, cut_w); max_window (ry, rx) uniform in [0, 2^31 - 1) (read only when p.jitter > 0); keep_*
/// `tries` x (cy, cx) candidate centres, tries >= 1; topk_cells none.  max_window on a map smaller
/// than the window gives (-1, -1, -1, -1).
void BoxSearchCpu(const SearchParams &p, const float *map, int H, int W, const int32_t *draws,
                  int tries, SearchScratch &scratch, int32_t *box);

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_BOX_SEARCH_BOX_SEARCH_CPU_H_
