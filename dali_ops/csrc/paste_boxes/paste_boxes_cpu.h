// paste_boxes on the CPU, DALI-free: one sample on the calling thread, as row memcpy (the DALI
// operator, paste_boxes.cc, runs one sample per thread of its pool; tests/cpu_kernels builds this
// kernel alone against tests/oracles.py's clovaai slicing).
//
// CutMix (Yun et al. 2019, Algorithm A1; clovaai/CutMix-PyTorch train.py
// `input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1, x0:x1]`), SaliencyMix and KeepAugment's
// selective-paste: the pixels inside the boxes come from the partner at the same location.  Boxes
// are int32 (K, 4), (y0, x0, y1, x1) half-open in pixels, clipped to the image (common/boxes.h); an
// empty box (e.g. -1 padding) covers nothing, overlapping boxes are pasted once (their union).

#ifndef OCCLUSION_PASTE_BOXES_PASTE_BOXES_CPU_H_
#define OCCLUSION_PASTE_BOXES_PASTE_BOXES_CPU_H_

#include <cstdint>

namespace occlusion {
namespace kernels {

/// `out` = `in` (C x H x W when `chw`, else H x W x C elements of `elem_bytes` bytes: values are
/// only copied), then inside each of the K boxes the pixels of `partner` (same shape) at the same
/// place; a null `partner` leaves the copy as it is.
void PasteBoxesCpu(const void *in, void *out, const void *partner, int elem_bytes, bool chw, int H,
                   int W, int C, const int32_t *boxes, int K);

}  // namespace kernels
}  // namespace occlusion

#endif  // OCCLUSION_PASTE_BOXES_PASTE_BOXES_CPU_H_
